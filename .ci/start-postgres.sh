#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the reading-database tests and print the URL.
#
# Usage (from .ci/run):   eval "$(.ci/start-postgres.sh)"
# stdout carries only the `export LVP_TEST_POSTGRES_URL=...` line (and the PGDATA/stop hints as
# comments) so it can be eval'd; progress goes to stderr. Works on a fresh Debian 12 machine as
# root: initdb refuses to run as root, so the cluster is created and run as the `postgres` user.
# The cluster lives in $LVP_PG_BASE (default: a new temp dir), listens on 127.0.0.1 only, on a
# free port, trusts local connections (throwaway CI data only). `.ci/stop-postgres.sh BASE` stops
# it and removes BASE (.ci/run does so on exit); a start that fails removes what it made.
set -euo pipefail

log() { echo "start-postgres: $*" >&2; }

pg_bin_dir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

if ! BIN=$(pg_bin_dir); then
    log "PostgreSQL not found; installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # The package's own cluster is not used; policy-rc.d keeps it from starting at install time.
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN=$(pg_bin_dir) || { log "initdb still missing after install"; exit 1; }
fi

RUN_AS=()
if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash postgres
    if command -v runuser >/dev/null 2>&1; then RUN_AS=(runuser -u postgres --); else RUN_AS=(su postgres -s /bin/sh -c); fi
fi
as_pg() {
    if [ ${#RUN_AS[@]} -eq 0 ]; then "$@"
    elif [ "${RUN_AS[0]}" = "runuser" ]; then "${RUN_AS[@]}" "$@"
    else "${RUN_AS[@]}" "$(printf '%q ' "$@")"; fi
}

# A free TCP port on 127.0.0.1 (ask the kernel for one, then release it).
PORT=${LVP_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}
if [ -n "${LVP_PG_BASE:-}" ]; then BASE=$LVP_PG_BASE; mkdir -p "$BASE"; else BASE=$(mktemp -d /tmp/lvp-pg.XXXXXX); fi
chmod 755 "$BASE"
# A start that fails half-way (initdb, pg_ctl, createdb) leaves no server and no folder behind.
started=0
on_exit() { [ "$started" = 1 ] || bash "$(dirname "$0")/stop-postgres.sh" "$BASE"; }
trap on_exit EXIT
PGDATA="$BASE/data"
mkdir -p "$PGDATA" "$BASE/socket"
[ "$(id -u)" = "0" ] && chown -R postgres:postgres "$BASE"

log "initdb in $PGDATA"
as_pg "$BIN/initdb" -D "$PGDATA" -U lvp --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2 2>&1 \
    || as_pg "$BIN/initdb" -D "$PGDATA" -U lvp --auth=trust --encoding=UTF8 --no-locale >&2
# 50 concurrent readers plus the test's own connections need more than the default 100 slots.
as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$BASE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE/socket -c max_connections=200 -c fsync=off" start >&2
as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U lvp lvp_test >&2
log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data $PGDATA)"

started=1
echo "export LVP_TEST_POSTGRES_URL=postgresql+psycopg://lvp@127.0.0.1:$PORT/lvp_test"
echo "export LVP_TEST_POSTGRES_PGDATA=$PGDATA"
echo "export LVP_TEST_POSTGRES_BASE=$BASE"
echo "# stop and remove with: .ci/stop-postgres.sh $BASE"
