"""``.ci/run`` stops every server it starts and removes its folder on exit, pass, fail or SIGTERM.

Runs the real ``.ci/run`` with a short command instead of the test suite: it starts the real
throwaway PostgreSQL server (``.ci/start-postgres.sh``), the command checks the server answers,
and after the exit no process and no folder of that server is left. Run twice in a row, as CI does.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="PostgreSQL server binaries not installed"
)

# Inside .ci/run: record where the server lives, check it answers, then exit with the given status.
PROBE = (
    'echo "$LVP_TEST_POSTGRES_BASE" > "$1"; '
    f'{sys.executable} -c "import os, sqlalchemy as sa; '
    "e = sa.create_engine(os.environ['LVP_TEST_POSTGRES_URL']); "
    "print('answers', e.connect().execute(sa.text('select 1')).scalar())\"; "
)


def _processes_under(folder: str) -> list[str]:
    """Command lines of live processes that mention ``folder`` (a postmaster names its data dir)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if folder in text and "pytest" not in text:
            found.append(text)
    return found


def _gone(folder: str, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if not os.path.exists(folder) and not _processes_under(folder):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("run", [1, 2])
@pytest.mark.parametrize("status", [0, 3])
def test_ci_run_leaves_no_server_and_no_folder(repo_root, tmp_path, status, run):
    where = tmp_path / "base.txt"
    cmd = [str(repo_root / ".ci" / "run"), "bash", "-c", PROBE + f"exit {status}", "probe", str(where)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == status, out.stderr[-2000:]
    assert "answers 1" in out.stdout
    base = where.read_text().strip()
    assert base.startswith("/") and "lvp-ci." in base
    assert _gone(base), _processes_under(base)
    assert not os.path.exists(os.path.dirname(base))  # the run's private folder too


def test_ci_run_cleans_up_when_terminated(repo_root, tmp_path):
    where = tmp_path / "base.txt"
    cmd = [str(repo_root / ".ci" / "run"), "bash", "-c", PROBE + "sleep 120", "probe", str(where)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        end = time.monotonic() + 120
        while not (where.is_file() and where.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.2)
        base = where.read_text().strip()
        assert os.path.isdir(base)
        time.sleep(1.0)  # the probe's query has run; the command now sleeps
        os.killpg(proc.pid, signal.SIGTERM)  # what a CI runner's cancel does to the job
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143
    assert _gone(base), _processes_under(base)
