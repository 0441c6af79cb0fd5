#!/usr/bin/env bash
# Stop the cluster started by test/postgres/start-postgres.sh [DIR]; with --purge also delete DIR.
set -euo pipefail
PURGE=0
if [ "${1:-}" = --purge ]; then PURGE=1; shift; fi
DIR="${1:-${FEDSYNTH_PG_DIR:-/tmp/fedsynth-pg}}"
[ -d "$DIR/data" ] || { echo "stop-postgres: no cluster in $DIR" >&2; exit 0; }
BIN="${PG_BIN:-$( (command -v pg_config >/dev/null && pg_config --bindir) || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}"
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
else
  "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
fi
if [ "$PURGE" = 1 ]; then rm -rf "$DIR"; fi
