#!/usr/bin/env bash
# Ensure `promtool` and the `prometheus` server are on PATH (Debian's `prometheus` package has
# both); print promtool's path on stdout. Installs with apt-get when promtool is missing
# (needs root, or sudo without a password). The package's service is never started.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[install-prometheus] need root or sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "[install-prometheus] installing Debian's prometheus package (promtool + server)" >&2
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
$SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
command -v promtool
