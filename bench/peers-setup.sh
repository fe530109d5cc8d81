#!/usr/bin/env bash
# The environment of the M4 benchmark's peers (statsforecast, mlforecast): .venv/bench-peers,
# beside Tidemill's own (numba and llvmlite stay out of Tidemill's locks). Prints its python.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
UV="$ROOT/.venv/tools/bin/uv"
ENV="$ROOT/.venv/bench-peers"
[[ -x "$UV" ]] || bash "$ROOT/scripts/setup.sh" orchestrator >&2
if [[ ! -x "$ENV/bin/python" ]]; then
  "$UV" venv --quiet --python 3.11 "$ENV"
fi
"$UV" pip install --quiet --python "$ENV/bin/python" --compile-bytecode \
  -r "$ROOT/bench/peers-requirements.txt" >&2
echo "$ENV/bin/python"
