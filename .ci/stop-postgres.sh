#!/usr/bin/env bash
# Stop the throwaway PostgreSQL server that .ci/start-postgres.sh started in BASE and remove BASE.
#
# Usage: .ci/stop-postgres.sh BASE      (BASE: the folder holding data/, socket/, server.log)
# Succeeds when nothing runs there (a start that never happened or already stopped), so .ci/run
# can register it before starting the server.
set -uo pipefail
BASE=${1:?usage: stop-postgres.sh BASE}
[ -d "$BASE" ] || exit 0
PGDATA="$BASE/data"
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -f "$PGDATA/postmaster.pid" ] && [ -n "$BIN" ]; then
    if [ "$(id -u)" = "0" ]; then
        runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >&2 || true
    else
        "$BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >&2 || true
    fi
    # pg_ctl gave up (or is missing): end the postmaster by its pid, which ends its children.
    if [ -f "$PGDATA/postmaster.pid" ]; then
        pid=$(head -n 1 "$PGDATA/postmaster.pid")
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    fi
fi
rm -rf "$BASE"
