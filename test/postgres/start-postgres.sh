#!/usr/bin/env bash
# Start (or reuse) a throw-away PostgreSQL cluster for the coordinator's database tests and print its URL.
#
#   FEDSYNTH_TEST_POSTGRES_URL=$(test/postgres/start-postgres.sh [DIR])
#
# DIR (default: $FEDSYNTH_PG_DIR or /tmp/fedsynth-pg) holds the cluster (DIR/data), its socket, log and port.
# Idempotent: a cluster that is already running in DIR is reused and its URL printed again. Only the URL goes to
# stdout (postgres://fedsynth:fedsynth@127.0.0.1:PORT/fedsynth); progress goes to stderr. Listens on 127.0.0.1
# only, on a free port. Works as root (the server runs as the `postgres` user via runuser) and as a normal user.
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql) and node (to pick a free port).
# Stop it with test/postgres/stop-postgres.sh [DIR].
set -euo pipefail

DIR="${1:-${FEDSYNTH_PG_DIR:-/tmp/fedsynth-pg}}"
DIR="$(mkdir -p "$DIR" && cd "$DIR" && pwd)"
DATA="$DIR/data"
SOCKET="$DIR/socket"
LOG="$DIR/postgres.log"
PORT_FILE="$DIR/port"

log() { echo "start-postgres: $*" >&2; }

find_bindir() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  log "PostgreSQL server binaries not found (install the 'postgresql' package or set PG_BIN)"
  exit 1
}
BIN="$(find_bindir)"

# initdb and postgres refuse to run as root: run them as `postgres` then.
if [ "$(id -u)" = 0 ]; then
  PG_USER=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  PG_USER="$(id -un)"
  as_pg() { "$@"; }
fi

mkdir -p "$SOCKET"
if [ "$(id -u)" = 0 ]; then chown -R postgres: "$DIR"; fi
chmod 700 "$DIR" "$SOCKET"
if [ "$(id -u)" = 0 ]; then
  # the postgres user must be able to reach DIR (e.g. under a root-owned, 0700 parent); say so clearly.
  if ! runuser -u postgres -- test -w "$DIR"; then
    log "the postgres user cannot write $DIR (check the parent directories' permissions)"
    exit 1
  fi
fi

url() { echo "postgres://fedsynth:fedsynth@127.0.0.1:$1/fedsynth"; }

if [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT="$(cat "$PORT_FILE")"
  log "reusing the running cluster in $DATA (port $PORT)"
  url "$PORT"
  exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
  log "initdb $DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U "$PG_USER" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
    cat "$DIR/initdb.log" >&2
    exit 1
  }
fi

PORT="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
echo "$PORT" >"$PORT_FILE"
log "starting postgres on 127.0.0.1:$PORT"
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
  -o "-p $PORT -k $SOCKET -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2 || {
  tail -n 40 "$LOG" >&2 || true
  exit 1
}

psql_pg() { as_pg "$BIN/psql" -h "$SOCKET" -p "$PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = 'fedsynth'")" != 1 ]; then
  psql_pg -c "CREATE ROLE fedsynth LOGIN PASSWORD 'fedsynth' CREATEDB"
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = 'fedsynth'")" != 1 ]; then
  psql_pg -c "CREATE DATABASE fedsynth OWNER fedsynth"
fi
url "$PORT"
