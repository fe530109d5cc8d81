#!/usr/bin/env bash
# Ensure a pinned SeaweedFS `weed` binary (Apache-2.0; the S3-compatible object store of the
# no-shared-disk tests) is available; print its path on stdout. Uses .venv/tools/bin/weed if
# present, else downloads the pinned module from the Go module proxy and builds it there
# (`go install pkg@version` refuses it: its go.mod has replace directives; its tags are not
# semver, so the pin is the proxy's pseudo-version of a commit). The build takes several
# minutes on 2 cores; the binary is cached in .venv/tools/bin.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEED_VERSION="${TIDEMILL_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
GOBIN_DIR="$ROOT/.venv/tools/bin"

if [[ -x "$GOBIN_DIR/weed" ]]; then
  echo "$GOBIN_DIR/weed"
  exit 0
fi
GO="$(command -v go || echo /usr/local/go/bin/go)"
if [[ ! -x "$GO" ]]; then
  echo "[install-seaweedfs] weed missing and no Go toolchain found" >&2
  exit 1
fi
mkdir -p "$GOBIN_DIR"
echo "[install-seaweedfs] building SeaweedFS weed $WEED_VERSION with $("$GO" version) (several minutes)" >&2
SRC="$("$GO" mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$SRC" ]] || { echo "[install-seaweedfs] module download failed" >&2; exit 1; }
(cd "$SRC" && "$GO" build -p 2 -ldflags="-s -w" -o "$GOBIN_DIR/weed.tmp" ./weed) >&2
mv "$GOBIN_DIR/weed.tmp" "$GOBIN_DIR/weed"
echo "$GOBIN_DIR/weed"
