#!/usr/bin/env bash
# Ensure Debian's headless-capable Chromium is at /usr/bin/chromium (for tests/e2e); print its
# path on stdout. Installs with apt-get only when it is missing (needs root, or sudo without a
# password).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [[ -x "$CHROMIUM" ]]; then
  echo "$CHROMIUM"
  exit 0
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[install-chromium] need root or sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "[install-chromium] installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2
echo "$CHROMIUM"
