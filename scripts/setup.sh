#!/usr/bin/env bash
# Create the locked environments (idempotent): .venv/orchestrator, .venv/serving and
# .venv/k8s-tools (checkov + hadolint for the chart/Dockerfile checks; no project install).
# Usage: scripts/setup.sh [orchestrator|serving|k8s-tools|all]   (default: all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${TIDEMILL_PYTHON:-$(command -v python3.11 || command -v python3)}"
UV_VERSION="0.13.9"
UV="$ROOT/.venv/tools/bin/uv"

if ! "$UV" --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  echo "[setup] installing uv $UV_VERSION into .venv/tools"
  "$PY" -m venv "$ROOT/.venv/tools"
  "$ROOT/.venv/tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# Hard links from uv's cache when it shares this filesystem (the environments then share the
# bytes of every common package with the cache and each other); full copies otherwise.
CACHE_DIR="$("$UV" cache dir)"
mkdir -p "$CACHE_DIR"
if [[ -z "${UV_LINK_MODE:-}" ]]; then
  if [[ "$(stat -c %d "$CACHE_DIR")" == "$(stat -c %d "$ROOT")" ]]; then
    export UV_LINK_MODE=hardlink
  else
    export UV_LINK_MODE=copy
  fi
fi

# MiB an environment adds to this filesystem: copied in full, or only bytecode and metadata
# next to hard links (plus the cache itself when it is cold, which the check cannot know).
declare -A COPY_MIB=([orchestrator]=3300 [serving]=2700 [k8s-tools]=400)
check_space() {
  local name="$1" need free
  need="${COPY_MIB[$name]}"
  [[ "$UV_LINK_MODE" == hardlink ]] && need=$((need / 4))
  free="$(df --output=avail -BM "$ROOT" | tail -1 | tr -dc 0-9)"
  if (( free < need )); then
    echo "[setup] .venv/$name needs about $need MiB on $(df --output=target "$ROOT" | tail -1)" \
      "(link mode $UV_LINK_MODE); only $free MiB are free. Free some space and rerun." >&2
    exit 1
  fi
}

make_env() {
  local name="$1" env="$ROOT/.venv/$1" lock="$ROOT/locks/$1.txt" with_project="${2:-yes}" stamp
  stamp="$env/.tidemill-lock.sha256"
  local want; want="$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  check_space "$name"
  echo "[setup] syncing .venv/$name from locks/$name.txt (first run takes a few minutes)"
  [[ -x "$env/bin/python" ]] || "$UV" venv --quiet --python "$PY" "$env"
  "$UV" pip sync --quiet --python "$env/bin/python" --compile-bytecode "$lock"
  if [[ "$with_project" == yes ]]; then
    "$UV" pip install --quiet --python "$env/bin/python" --compile-bytecode --no-deps -e "$ROOT"
  fi
  echo "$want" > "$stamp"
}

case "${1:-all}" in
  orchestrator) make_env orchestrator ;;
  serving) make_env serving ;;
  k8s-tools) make_env k8s-tools no ;;
  all) make_env orchestrator; make_env serving; make_env k8s-tools no ;;
  *) echo "usage: $0 [orchestrator|serving|k8s-tools|all]" >&2; exit 2 ;;
esac
