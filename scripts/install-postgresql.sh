#!/usr/bin/env bash
# Ensure Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) exist; print their
# directory on stdout. Installs the `postgresql` package with apt-get when they are missing
# (needs root, or sudo without a password). The package's service is never started: tests
# start their own server in a temporary directory.
set -euo pipefail

find_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if find_bin; then
  exit 0
fi
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" install-postgresql postgresql
find_bin
