#!/usr/bin/env bash
# Copy the monitoring sources the Helm chart embeds into charts/tidemill/files/ (Helm's
# .Files.Get cannot read outside the chart). Run after editing monitoring/; a test checks the
# copies are identical. Usage: scripts/sync-chart-files.sh [--check]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/charts/tidemill/files"
SOURCES=(monitoring/grafana/tidemill-dashboard.json monitoring/alerts/tidemill-rules.yaml)

status=0
for src in "${SOURCES[@]}"; do
  dst="$DEST/$(basename "$src")"
  if [[ "${1:-}" == "--check" ]]; then
    cmp -s "$ROOT/$src" "$dst" || { echo "out of date: $dst (run $0)" >&2; status=1; }
  else
    install -D -m 0644 "$ROOT/$src" "$dst"
    echo "synced $src -> ${dst#"$ROOT/"}"
  fi
done
exit "$status"
