#!/usr/bin/env bash
# Install Debian packages with apt-get (as root, or through sudo without a password), without
# starting any service their post-install scripts would start (policy-rc.d 101).
#   scripts/apt-install.sh NAME PACKAGE...   NAME labels the log lines on stderr
set -euo pipefail
name="$1"; shift
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[$name] need root or sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "[$name] installing Debian's $* package(s)" >&2
export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 0755 "$POLICY"
  CREATED_POLICY=1
fi
trap 'if [[ "$CREATED_POLICY" == 1 ]]; then $SUDO rm -f "$POLICY"; fi' EXIT
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "$@" >&2
