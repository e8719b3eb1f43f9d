"""The child-process runner on real child python processes (no mocks)."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest
from slicer_helpers import MODULE_DIR, process_alive  # noqa: F401 - MODULE_DIR: the module folder on sys.path

from LumbarVNetProLib.process import ProcessRunner, infer_command, parse_progress, readable_error

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX here")


def test_progress_and_exit_code(tmp_path):
    script = textwrap.dedent(
        """
        import json, sys
        for stage, p in (("read", 0.1), ("network", 0.6), ("write", 1.0)):
            print(json.dumps({"stage": stage, "progress": p}))
        print("a plain log line")
        print("lvp infer: error: input has 2 dimensions; a 3-D image is needed", file=sys.stderr)
        sys.exit(2)
        """
    )
    seen = []
    running = ProcessRunner().start([sys.executable, "-c", script])
    code = running.wait(progress=lambda stage, p: seen.append((stage, p)), timeout_s=30)
    assert code == 2
    assert seen == [("read", 0.1), ("network", 0.6), ("write", 1.0)]
    assert running.error_message() == "input has 2 dimensions; a 3-D image is needed"


def test_traceback_becomes_its_last_line():
    running = ProcessRunner().start([sys.executable, "-c", "raise RuntimeError('CUDA out of memory')"])
    assert running.wait(timeout_s=30) == 1
    assert running.error_message() == "RuntimeError: CUDA out of memory"


def test_cancel_kills_child_and_grandchild(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = textwrap.dedent(
        f"""
        import subprocess, sys, time
        g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pid_file)!r}, "w").write(str(g.pid))
        print('{{"stage": "network", "progress": 0.5}}', flush=True)
        time.sleep(300)
        """
    )
    running = ProcessRunner().start([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert process_alive(running.pid) and process_alive(grandchild)
    started = time.monotonic()
    running.cancel(grace_s=2.0)
    assert time.monotonic() - started < 10
    assert running.poll() is not None
    deadline = time.monotonic() + 5
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(grandchild)
    assert running.error_message() == "cancelled"


def test_parse_progress_ignores_other_lines():
    assert parse_progress('{"stage": "network", "progress": 0.6}').progress == 0.6
    assert parse_progress('{"stage": "x", "progress": 7}').progress == 1.0
    assert parse_progress("INFO: reading") is None
    assert parse_progress('{"no": "stage"}') is None
    assert parse_progress("{broken") is None


def test_readable_error_fallbacks():
    assert readable_error("", -9) == "the process was ended by signal 9"
    assert readable_error("", 3) == "the process failed with exit code 3"


def test_infer_command(tmp_path):
    args = infer_command(tmp_path / "in.nrrd", tmp_path / "out", "cuda", tmp_path / "model", python="py")
    assert args[:4] == ["py", "-m", "lvp", "infer"]
    assert args[args.index("--device") + 1] == "cuda" and "--progress-json" in args
    assert args[args.index("--model") + 1] == str(tmp_path / "model")
    with pytest.raises(ValueError):
        infer_command(tmp_path / "in.nrrd", tmp_path / "out", "gpu")
