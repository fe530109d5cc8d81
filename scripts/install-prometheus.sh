#!/usr/bin/env bash
# Ensure `promtool` and the `prometheus` server are on PATH (Debian's `prometheus` package has
# both); print promtool's path on stdout. Installs with apt-get when promtool is missing
# (needs root, or sudo without a password). The package's service is never started.
set -euo pipefail

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" install-prometheus prometheus
fi
command -v promtool
