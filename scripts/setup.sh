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
export UV_LINK_MODE="${UV_LINK_MODE:-copy}"

if ! "$UV" --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  echo "[setup] installing uv $UV_VERSION into .venv/tools"
  "$PY" -m venv "$ROOT/.venv/tools"
  "$ROOT/.venv/tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

make_env() {
  local name="$1" env="$ROOT/.venv/$1" lock="$ROOT/locks/$1.txt" with_project="${2:-yes}" stamp
  stamp="$env/.tidemill-lock.sha256"
  local want; want="$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
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
