#!/usr/bin/env bash
# Start a throwaway Orthanc (with its DICOMweb plugin) for the DICOMweb tests and print its URL.
#
# Usage (from .ci/run):   orthanc_env=$(LVP_ORTHANC_BASE=DIR bash .ci/start-orthanc.sh); eval "$orthanc_env"
# stdout carries only `export LVP_TEST_ORTHANC_URL=...` (and the user/password of this throwaway
# server) so it can be eval'd; progress goes to stderr. The server keeps everything (storage,
# index, configuration, log, pid) in $LVP_ORTHANC_BASE (default: a new temp dir), listens on
# 127.0.0.1 only (remote access off) on free ports, and requires HTTP basic authentication with a
# random password. `.ci/stop-orthanc.sh BASE` stops it and removes BASE (.ci/run does so on exit);
# a start that fails removes what it made.
set -euo pipefail

log() { echo "start-orthanc: $*" >&2; }

ORTHANC=$(command -v Orthanc || echo /usr/sbin/Orthanc)
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
if [ ! -x "$ORTHANC" ] || [ ! -f "$PLUGIN" ]; then
    bash "$(dirname "$0")/install-debian-tools.sh"
fi
[ -x "$ORTHANC" ] && [ -f "$PLUGIN" ] || { log "Orthanc or its DICOMweb plugin is missing"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
HTTP_PORT=$(free_port)
DICOM_PORT=$(free_port)
if [ -n "${LVP_ORTHANC_BASE:-}" ]; then BASE=$LVP_ORTHANC_BASE; mkdir -p "$BASE"; else BASE=$(mktemp -d /tmp/lvp-orthanc.XXXXXX); fi
started=0
on_exit() { [ "$started" = 1 ] || bash "$(dirname "$0")/stop-orthanc.sh" "$BASE"; }
trap on_exit EXIT
mkdir -p "$BASE/db"
USER_NAME=lvp
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')

cat > "$BASE/orthanc.json" <<JSON
{
  "Name": "LVP-CI",
  "StorageDirectory": "$BASE/db",
  "IndexDirectory": "$BASE/db",
  "HttpPort": $HTTP_PORT,
  "DicomPort": $DICOM_PORT,
  "DicomAet": "LVPCI",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": {"$USER_NAME": "$PASSWORD"},
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Host": "127.0.0.1:$HTTP_PORT", "Ssl": false},
  "StableAge": 1
}
JSON
chmod 600 "$BASE/orthanc.json"

log "Orthanc on 127.0.0.1:$HTTP_PORT (storage $BASE/db)"
"$ORTHANC" "$BASE/orthanc.json" > "$BASE/orthanc.log" 2>&1 &
echo $! > "$BASE/orthanc.pid"

# Ready when the REST API answers with authentication; give up after 60 s.
for _ in $(seq 1 120); do
    if python3 - "$HTTP_PORT" "$USER_NAME" "$PASSWORD" <<'PY' 2>/dev/null
import base64, sys, urllib.request
port, user, password = sys.argv[1:4]
req = urllib.request.Request(f"http://127.0.0.1:{port}/dicom-web/studies")
req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
urllib.request.urlopen(req, timeout=2).read()
PY
    then
        started=1
        echo "export LVP_TEST_ORTHANC_URL=http://127.0.0.1:$HTTP_PORT/dicom-web"
        echo "export LVP_TEST_ORTHANC_USER=$USER_NAME"
        echo "export LVP_TEST_ORTHANC_PASSWORD=$PASSWORD"
        echo "export LVP_TEST_ORTHANC_BASE=$BASE"
        echo "# stop and remove with: .ci/stop-orthanc.sh $BASE"
        exit 0
    fi
    if ! kill -0 "$(cat "$BASE/orthanc.pid")" 2>/dev/null; then
        log "Orthanc exited; its log:"; tail -n 20 "$BASE/orthanc.log" >&2; exit 1
    fi
    sleep 0.5
done
log "Orthanc did not answer within 60 s; its log:"; tail -n 20 "$BASE/orthanc.log" >&2
exit 1
