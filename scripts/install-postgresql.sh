#!/usr/bin/env bash
# Ensure Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) exist; print their
# directory on stdout. Installs the `postgresql` package with apt-get when they are missing
# (needs root, or sudo without a password). The package's service is never started: tests
# start their own server in a temporary directory.
set -euo pipefail

find_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if find_bin; then
  exit 0
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[install-postgresql] need root or sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "[install-postgresql] installing Debian's postgresql package" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101 keeps the package's post-install from starting a system service.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 0755 "$POLICY"
  CREATED_POLICY=1
fi
trap 'if [[ "$CREATED_POLICY" == 1 ]]; then $SUDO rm -f "$POLICY"; fi' EXIT
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
find_bin
