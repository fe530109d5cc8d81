#!/usr/bin/env bash
# Build every Tidemill image with podman from the same Dockerfiles a user builds with Docker.
# No container registry is reachable here, so the public bases the Dockerfiles name
# (python:3.11-slim-bookworm, apache/airflow:3.3.2-python3.11) are replaced by stand-ins made
# from Debian bookworm with debootstrap (same users, paths, virtualenv and entrypoint) and passed
# in as the Dockerfiles' base build arguments. Packages come from PyPI (uv inside the build, from
# the repository's locks, with the host's uv cache mounted as a build volume) and from the Debian
# mirror apt uses on this host.
#
#   scripts/images.sh build [NAME...]   stand-in bases (once), then the images (default: all four)
#   scripts/images.sh sizes             size of each built image
#   scripts/images.sh clean             remove the images, stand-ins and build cache this made
#   scripts/images.sh podman ARGS...    podman with the settings this script uses (runc, cgroupfs)
#
# Images are tagged localhost/tidemill/<name>:local. Rebuilds reuse podman's layer cache; each
# build prints its time, size and the disk the image store uses. Needs root (or sudo) for apt,
# debootstrap and podman.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IMAGES=(predictor control-api mlflow airflow)
STATE="${TIDEMILL_IMAGES_STATE:-/var/tmp/tidemill-images}"
TAG="${TIDEMILL_IMAGE_TAG:-local}"
PY_BASE="localhost/tidemill-stand-in/python:3.11-slim-bookworm"
AIRFLOW_BASE="localhost/tidemill-stand-in/airflow:3.3.2-python3.11"
STORAGE_INITIALIZER="localhost/tidemill-stand-in/storage-initializer:v0.21.0"
UV_VERSION="0.13.9"
log() { echo "[images] $*" >&2; }

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo -n"

ensure_tools() {
  local missing=()
  for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    bash "$ROOT/scripts/apt-install.sh" images podman runc debootstrap
  fi
  $SUDO mkdir -p "$STATE"
  # Containers here cannot raise their rlimits above the host's: no default ulimits.
  printf '[containers]\ndefault_ulimits = []\n' | $SUDO tee "$STATE/containers.conf" >/dev/null
}

pm() {
  CONTAINERS_CONF="$STATE/containers.conf" $SUDO podman --runtime runc --cgroup-manager=cgroupfs \
    "$@"
}

# The Debian mirror apt uses on this host (deb822 or one-line sources), for debootstrap and
# for the apt sources inside the stand-in.
debian_mirror() {
  local uri
  uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.list | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 || true)"
  echo "${TIDEMILL_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}" | tr -d ' '
}

# The recipe of a stand-in is hashed into its label: a changed recipe rebuilds it.
recipe_hash() { sed -n "/^$1() {/,/^}/p" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16; }

have_image() {  # have_image IMAGE HASH
  [[ "$(pm image inspect --format '{{index .Labels "tidemill.recipe"}}' "$1" 2>/dev/null)" == "$2" ]]
}

# python:3.11-slim-bookworm stand-in: Debian's Python 3.11 as `python`/`pip` in /usr/local/bin,
# pip allowed to install (no EXTERNALLY-MANAGED, like the official image), docs and man pages
# left out as in debian:bookworm-slim, apt sources on the same mirror. It trusts the CAs this
# host added (/usr/local/share/ca-certificates: a TLS-inspecting proxy in front of PyPI here) and
# points SSL_CERT_FILE at the system store so uv and pip use it.
python_stand_in() {
  local hash="$1" mirror rootfs
  mirror="$(debian_mirror)"
  rootfs="$STATE/rootfs"
  $SUDO rm -rf "$rootfs"
  log "debootstrap bookworm (minbase + python3) from $mirror"
  $SUDO mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    | $SUDO tee "$rootfs/etc/dpkg/dpkg.cfg.d/slim" >/dev/null
  $SUDO debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
    || { tail -20 "$STATE/debootstrap.log" >&2; exit 1; }
  $SUDO rm -f "$rootfs/usr/lib/python3.11/EXTERNALLY-MANAGED" "$rootfs/etc/apt/sources.list"
  $SUDO ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    $SUDO cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    $SUDO chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  $SUDO ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: %s\n\nTypes: deb\nURIs: %s-security\nSuites: bookworm-security\nComponents: main\nSigned-By: %s\n' \
    "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg "${mirror%/}" \
    /usr/share/keyrings/debian-archive-keyring.gpg \
    | $SUDO tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null
  $SUDO rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
    "$rootfs"/dev/* "$rootfs"/run/* "$rootfs"/tmp/*
  $SUDO tar -C "$rootfs" --numeric-owner -c . | pm import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL tidemill.recipe=$hash" \
    --change 'CMD ["python3"]' - "$PY_BASE" >/dev/null
  $SUDO rm -rf "$rootfs"
}

# apache/airflow:3.3.2-python3.11 stand-in: user airflow (uid 50000, group root) owning
# AIRFLOW_HOME=/opt/airflow and the virtualenv /home/airflow/.local (VIRTUAL_ENV, first on PATH),
# uv, and dumb-init running /entrypoint (`bash`/`python` as given, anything else an airflow
# subcommand). Airflow itself is not preinstalled: the image installs it from the lock.
airflow_stand_in() {
  local hash="$1"
  pm build --ulimit nofile=20000:20000 --network host --label "tidemill.recipe=$hash" \
    -t "$AIRFLOW_BASE" -f - "$STATE" <<EOF
FROM $PY_BASE
RUN apt-get update && apt-get install -y --no-install-recommends dumb-init \\
    && rm -rf /var/lib/apt/lists/* \\
    && pip install --no-cache-dir --disable-pip-version-check uv==$UV_VERSION \\
    && useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow --shell /bin/bash airflow \\
    && mkdir -p /opt/airflow && chown airflow:0 /opt/airflow && chmod 0775 /opt/airflow \\
    && python -m venv --without-pip /home/airflow/.local && chown -R airflow:0 /home/airflow \\
    && printf '%s\\n' '#!/bin/bash' 'set -e' 'case "\${1:-}" in' \\
      '  "") exec airflow --help ;;' '  bash|python|sh) exec "\$@" ;;' \\
      '  airflow) shift; exec airflow "\$@" ;;' '  *) exec airflow "\$@" ;;' 'esac' > /entrypoint \\
    && chmod 0755 /entrypoint
ENV AIRFLOW_HOME=/opt/airflow AIRFLOW_USER_HOME_DIR=/home/airflow \\
    VIRTUAL_ENV=/home/airflow/.local \\
    PATH=/home/airflow/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 50000
WORKDIR /opt/airflow
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]
CMD []
EOF
}

# kserve/storage-initializer:v0.21.0 stand-in, for tests/images only (in a cluster KServe runs its
# own image as the InferenceService's init container): kserve-storage from
# tests/images/storage_initializer/requirements.txt (the kserve version locks/serving.txt pins)
# and the image's entrypoint, `initializer-entrypoint SRC_URI DEST_PATH`
# (kserve_storage.Storage.download), as uid 1000.
storage_initializer_stand_in() {
  local hash="$1" context="$STATE/storage-initializer"
  $SUDO mkdir -p "$context"
  $SUDO cp "$ROOT/tests/images/storage_initializer/requirements.txt" "$context/"
  pm build --ulimit nofile=20000:20000 --network host --volume "$(uv_cache):/var/cache/uv" \
    --label "tidemill.recipe=$hash" -t "$STORAGE_INITIALIZER" -f - "$context" <<EOF
FROM $PY_BASE
COPY requirements.txt /storage-initializer/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --target /tmp/uv uv==$UV_VERSION \\
    && python -m venv --without-pip /opt/venv \\
    && /tmp/uv/bin/uv pip sync --python /opt/venv/bin/python --cache-dir /var/cache/uv \\
      --link-mode copy --compile-bytecode /storage-initializer/requirements.txt \\
    && rm -rf /tmp/uv && mkdir -p /storage-initializer/scripts \\
    && printf '%s\\n' '#!/opt/venv/bin/python' 'import logging, sys' \\
      'from kserve_storage import Storage' 'logging.basicConfig(level=logging.INFO)' \\
      'if len(sys.argv) != 3:' '    sys.exit("Usage: initializer-entrypoint src_uri dest_path")' \\
      'Storage.download(sys.argv[1], sys.argv[2])' \\
      > /storage-initializer/scripts/initializer-entrypoint \\
    && chmod 0755 /storage-initializer/scripts/initializer-entrypoint
USER 1000
ENTRYPOINT ["/storage-initializer/scripts/initializer-entrypoint"]
EOF
  $SUDO rm -rf "$context"
}

stand_ins() {
  local h
  h="$(recipe_hash python_stand_in)"
  if ! have_image "$PY_BASE" "$h"; then
    local t0=$SECONDS
    python_stand_in "$h"
    log "stand-in $PY_BASE made in $((SECONDS - t0)) s"
  fi
  h="$(recipe_hash airflow_stand_in)$(recipe_hash python_stand_in)"
  if ! have_image "$AIRFLOW_BASE" "$h"; then
    local t0=$SECONDS
    airflow_stand_in "$h"
    log "stand-in $AIRFLOW_BASE made in $((SECONDS - t0)) s"
  fi
  h="$(recipe_hash storage_initializer_stand_in)$(recipe_hash python_stand_in)$(sha256sum \
    tests/images/storage_initializer/requirements.txt | cut -c1-16)"
  if ! have_image "$STORAGE_INITIALIZER" "$h"; then
    local t0=$SECONDS
    storage_initializer_stand_in "$h"
    log "stand-in $STORAGE_INITIALIZER made in $((SECONDS - t0)) s"
  fi
}

image_size_mb() { pm image inspect --format '{{.Size}}' "$1" | awk '{printf "%d", $1 / 1e6}'; }

# The host's uv cache (the one scripts/setup.sh fills), mounted into the builds.
uv_cache() {
  local dir
  dir="${TIDEMILL_IMAGES_UV_CACHE:-$("$ROOT/.venv/tools/bin/uv" cache dir 2>/dev/null \
    || echo "$HOME/.cache/uv")}"
  $SUDO mkdir -p "$dir"
  echo "$dir"
}

build_image() {
  local name="$1" old t0 uv_cache
  uv_cache="$(uv_cache)"
  old="$(pm image inspect --format '{{.Id}}' "localhost/tidemill/$name:$TAG" 2>/dev/null || true)"
  t0=$SECONDS
  log "building localhost/tidemill/$name:$TAG from docker/$name/Dockerfile"
  # The host's uv cache replaces the Dockerfiles' uv cache mount (RUN --mount=type=cache).
  pm build --ulimit nofile=20000:20000 --network host --layers \
    --volume "$uv_cache:/var/cache/uv" \
    --build-arg "$(grep -q '^ARG AIRFLOW_IMAGE=' "docker/$name/Dockerfile" \
      && echo "AIRFLOW_IMAGE=$AIRFLOW_BASE" || echo "PYTHON_IMAGE=$PY_BASE")" \
    -f "docker/$name/Dockerfile" -t "localhost/tidemill/$name:$TAG" . \
    >"$STATE/build-$name.log" 2>&1 || { tail -40 "$STATE/build-$name.log" >&2; exit 1; }
  local new; new="$(pm image inspect --format '{{.Id}}' "localhost/tidemill/$name:$TAG")"
  # The image this build replaced, now untagged: remove it unless it is still a layer parent.
  if [[ -n "$old" && "$old" != "$new" ]]; then pm rmi "$old" >/dev/null 2>&1 || true; fi
  log "$name: $((SECONDS - t0)) s, $(image_size_mb "localhost/tidemill/$name:$TAG") MB"
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" \
    "$(image_size_mb "localhost/tidemill/$name:$TAG")" >>"$STATE/build-times.tsv"
}

disk_used() {
  log "image store: $($SUDO du -sh "$(pm info --format '{{.Store.GraphRoot}}')" | cut -f1)" \
    "($(pm info --format '{{.Store.GraphRoot}}')); $(pm images --filter reference='localhost/tidemill*/*' \
    --noheading | wc -l) Tidemill images"
}

cmd="${1:-build}"; shift || true
case "$cmd" in
  build)
    ensure_tools
    names=("$@"); ((${#names[@]})) || names=("${IMAGES[@]}")
    t0=$SECONDS
    stand_ins
    for name in "${names[@]}"; do build_image "$name"; done
    $SUDO rm -rf "$STATE/rootfs"
    log "built ${names[*]} in $((SECONDS - t0)) s"
    disk_used
    ;;
  sizes)
    for name in "${IMAGES[@]}"; do
      echo "$name $(image_size_mb "localhost/tidemill/$name:$TAG") MB"
    done
    ;;
  clean)
    ensure_tools
    for name in "${IMAGES[@]}"; do pm rmi -f "localhost/tidemill/$name:$TAG" >/dev/null 2>&1 || true; done
    pm rmi -f "$STORAGE_INITIALIZER" "$AIRFLOW_BASE" "$PY_BASE" >/dev/null 2>&1 || true
    pm image prune -f >/dev/null
    $SUDO rm -rf "$STATE"
    log "removed the Tidemill images, stand-ins and their layer cache"
    ;;
  podman)
    ensure_tools >/dev/null
    pm "$@"
    ;;
  *)
    echo "usage: scripts/images.sh build [NAME...] | sizes | clean | podman ARGS..." >&2
    exit 2
    ;;
esac
