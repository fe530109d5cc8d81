#!/usr/bin/env bash
# Ensure Debian's headless-capable Chromium is at /usr/bin/chromium (for tests/e2e); print its
# path on stdout. Installs with apt-get only when it is missing (needs root, or sudo without a
# password).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [[ ! -x "$CHROMIUM" ]]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" install-chromium chromium fonts-liberation
fi
echo "$CHROMIUM"
