# Sourced by .ci/run: a private folder for the servers CI starts, and their clean-up on exit.
#
#   source .ci/servers.sh            # creates $LVP_CI_TMP and installs the EXIT trap
#   ci_on_exit cmd arg...            # run `cmd arg...` when .ci/run exits, pass or fail
#
# Clean-ups run last-registered first (stop a server, then remove the folder it lived in), each
# once, whatever the exit: success, a failing test, `set -e`, Ctrl-C or SIGTERM. Register a
# server's stop *before* starting it, so a start that dies half-way is cleaned up too; a stop
# command must therefore succeed when nothing was started. A new server (e.g. Orthanc) needs
# only a start script that keeps its files under "$LVP_CI_TMP/<name>" and a stop script.

LVP_CI_CLEANUPS=()

ci_on_exit() {
    LVP_CI_CLEANUPS+=("$(printf '%q ' "$@")")
}

ci_cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    for (( i=${#LVP_CI_CLEANUPS[@]}-1; i>=0; i-- )); do
        eval "${LVP_CI_CLEANUPS[$i]}" || echo "ci: clean-up failed: ${LVP_CI_CLEANUPS[$i]}" >&2
    done
    LVP_CI_CLEANUPS=()
    exit "$status"
}

trap ci_cleanup EXIT
# A signal exits (with the conventional status), which runs the EXIT trap once.
trap 'exit 130' INT
trap 'exit 143' TERM

LVP_CI_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lvp-ci.XXXXXX")
chmod 755 "$LVP_CI_TMP"  # servers run as their own users (postgres) inside it
ci_on_exit rm -rf "$LVP_CI_TMP"
export LVP_CI_TMP
