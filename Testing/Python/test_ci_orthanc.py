"""``.ci/run`` starts a throwaway Orthanc (DICOMweb) and leaves nothing of it behind, pass or fail.

Runs the real ``.ci/run`` with a short command instead of the test suite: inside, Orthanc answers
DICOMweb requests with the exported credentials and refuses them without; after the exit its
process and folder are gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not (shutil.which("Orthanc") or os.path.exists("/usr/sbin/Orthanc"))
    or not os.path.exists("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    reason="Orthanc or its DICOMweb plugin is not installed",
)

REPO = Path(__file__).resolve().parents[2]

PROBE = (
    'echo "$LVP_TEST_ORTHANC_BASE $(cat "$LVP_TEST_ORTHANC_BASE/orthanc.pid") $LVP_TEST_ORTHANC_PASSWORD" > "$1"; '
    f"{sys.executable} -c \"import os, requests; u = os.environ['LVP_TEST_ORTHANC_URL'] + '/studies'; "
    "auth = (os.environ['LVP_TEST_ORTHANC_USER'], os.environ['LVP_TEST_ORTHANC_PASSWORD']); "
    "print('with', requests.get(u, auth=auth, timeout=10).status_code, "
    "'without', requests.get(u, timeout=10).status_code)\"; "
)


def _ci_run(record: Path, status: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LVP_TEST_")}
    return subprocess.run(["bash", ".ci/run", "bash", "-c", PROBE + f"exit {status}", "probe", str(record)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Orthanc" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")


@pytest.mark.parametrize("status", [0, 1])
def test_orthanc_runs_inside_ci_and_is_gone_after(tmp_path, status):
    record = tmp_path / "record"
    run = _ci_run(record, status)
    assert run.returncode == status, run.stderr[-2000:]
    assert "with 200 without 401" in run.stdout, run.stdout + run.stderr[-2000:]
    base, pid, password = record.read_text().split()
    assert not Path(base).exists()
    assert not _alive(int(pid))
    assert len(password) >= 16 and password not in run.stdout + run.stderr  # a random secret, never printed
