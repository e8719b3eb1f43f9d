#!/usr/bin/env bash
# Install the Debian tools the tests use when they are missing (CI runs as root on Debian):
#   dciodvfy  (dicom3tools)        validates the DICOM SEG and SR that lvp infer writes
#   Orthanc   (orthanc, orthanc-dicomweb)  the real DICOMweb server of the DICOMweb tests
#   chromium                       headless screenshots of report.html
# Each tool is checked first, so a machine that has them installs nothing; apt's own services
# are not started (the tests start their own throwaway Orthanc).
set -euo pipefail
log() { echo "install-debian-tools: $*" >&2; }

missing=()
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
if ! command -v Orthanc >/dev/null 2>&1 && [ ! -x /usr/sbin/Orthanc ]; then missing+=(orthanc); fi
ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1 || missing+=(orthanc-dicomweb)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != "0" ]; then
    log "not root: cannot install ${missing[*]}; the tests needing them skip outside CI"
    exit 0
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
