#!/usr/bin/env bash
# Ensure a pinned helm v3 binary is available; print its path on stdout.
# Uses `helm` from PATH if present, else .venv/tools/bin/helm, else builds it with
# `go install` (Go module proxy) into .venv/tools/bin. Building takes a few minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_VERSION="${TIDEMILL_HELM_VERSION:-v3.21.4}"
GOBIN_DIR="$ROOT/.venv/tools/bin"

if command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
if [[ -x "$GOBIN_DIR/helm" ]]; then
  echo "$GOBIN_DIR/helm"
  exit 0
fi
GO="$(command -v go || echo /usr/local/go/bin/go)"
if [[ ! -x "$GO" ]]; then
  echo "[install-helm] helm missing and no Go toolchain found" >&2
  exit 1
fi
mkdir -p "$GOBIN_DIR"
echo "[install-helm] building helm $HELM_VERSION with $("$GO" version) (a few minutes)" >&2
GOBIN="$GOBIN_DIR" "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$GOBIN_DIR/helm"
