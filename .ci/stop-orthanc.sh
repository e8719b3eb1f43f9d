#!/usr/bin/env bash
# Stop the throwaway Orthanc that .ci/start-orthanc.sh started in BASE and remove BASE.
#
# Usage: .ci/stop-orthanc.sh BASE
# Succeeds when nothing runs there (a start that never happened or already stopped), so .ci/run
# can register it before starting the server.
set -uo pipefail
BASE=${1:?usage: stop-orthanc.sh BASE}
[ -d "$BASE" ] || exit 0
if [ -f "$BASE/orthanc.pid" ]; then
    pid=$(cat "$BASE/orthanc.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
fi
rm -rf "$BASE"
