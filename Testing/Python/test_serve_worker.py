"""``lvp serve``, the warm worker (issue 13): a real child process, two jobs, a cancel.

* two jobs in one worker write what a direct :func:`lvp.pipeline.run_inference` writes (same
  label map, same report.json apart from timings and creation time), with ``lvp infer
  --progress-json``'s lines between a ``job`` and a ``job_done`` line;
* a bad job is answered with an error and the worker goes on; a failed case's ``job_done`` names
  its error;
* cancel = SIGTERM to the worker's process group mid-case: the worker exits 143, the case's
  output folder does not exist (nothing half-written), and a new worker runs the next job.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180.0  # a shared 2-core machine under load; a case takes about 1 s when quiet


class Worker:
    """An ``lvp serve`` child with its stdout lines in a queue."""

    def __init__(self, *options: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO / "LumbarVNetPro"))
        self.proc = subprocess.Popen([sys.executable, "-m", "lvp", "serve", *options], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(iter(self.proc.stderr.readline, "")), daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.put(json.loads(line))

    def next(self) -> dict:
        try:
            return self.lines.get(timeout=TIMEOUT_S)
        except queue.Empty:
            tail = "".join(self.stderr)[-2000:]
            raise AssertionError(f"no line from lvp serve in {TIMEOUT_S} s; stderr: {tail}") from None

    def until(self, **match) -> list[dict]:
        seen = []
        while True:
            line = self.next()
            seen.append(line)
            if all(line.get(k) == v for k, v in match.items()):
                return seen

    def send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture()
def worker():
    w = Worker()
    yield w
    w.stop()


def _labels(folder: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "segmentation.nii.gz")))


def _report(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    report.pop("timings_s")
    report.pop("created")
    return report


def test_two_jobs_equal_the_direct_path_and_a_cancel_leaves_nothing(worker, sample_case, tmp_path):
    ready = worker.next()
    assert ready["event"] == "ready" and ready["pid"] == worker.proc.pid
    out = tmp_path / "out"
    for job in (1, 2):
        worker.send({"job": job, "args": [str(sample_case), "-o", str(out / f"case{job}")]})
        lines = worker.until(event="job_done")
        assert lines[0] == {"event": "job", "job": job}
        assert lines[-1] == {"event": "job_done", "job": job, "exit_code": 0}
        stages = [ln["stage"] for ln in lines if ln.get("event") == "stage"]
        assert stages[:3] == ["load_model", "read", "network"] and stages[-1] == "done"
        assert [ln["status"] for ln in lines if ln.get("event") == "case"] == ["complete"]

    from lvp.pipeline import make_segmenter, run_inference

    run_inference(sample_case, out / "direct", segmenter=make_segmenter(None, "auto"))
    for job in (1, 2):
        assert np.array_equal(_labels(out / f"case{job}"), _labels(out / "direct"))
        assert _report(out / f"case{job}") == _report(out / "direct")

    # A bad job is answered and the worker stays.
    worker.send({"job": "bad", "args": [str(sample_case), "-o", str(out / "x"), "--no-such-option"]})
    done = worker.until(event="job_done")[-1]
    assert done["job"] == "bad" and done["exit_code"] == 2 and "no-such-option" in done["error"]
    assert worker.proc.poll() is None
    # A case the core refuses: job_done names its error (a client reading stderr on its own thread
    # cannot tell which job wrote a line), and the worker stays.
    worker.send({"job": "missing", "args": [str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "missing")]})
    done = worker.until(event="job_done")[-1]
    assert done["job"] == "missing" and done["exit_code"] == 2 and "missing.nii.gz" in done["error"]
    assert "does not exist" in done["error"] and worker.proc.poll() is None

    # Cancel mid-case: SIGTERM to the worker's group, as the Slicer module cancels a child.
    worker.send({"job": 3, "args": [str(sample_case), "-o", str(out / "case3")]})
    worker.until(event="stage", stage="read")
    os.killpg(worker.proc.pid, signal.SIGTERM)
    assert worker.proc.wait(TIMEOUT_S) == 143
    assert not (out / "case3").exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["case1", "case2", "direct"]

    # The next job goes to a new worker; end of stdin ends it cleanly.
    fresh = Worker()
    try:
        assert fresh.next()["event"] == "ready"
        fresh.send({"job": 4, "args": [str(sample_case), "-o", str(out / "case3"), "--no-html"]})
        assert fresh.until(event="job_done")[-1]["exit_code"] == 0
        assert np.array_equal(_labels(out / "case3"), _labels(out / "direct"))
        fresh.proc.stdin.close()
        t0 = time.monotonic()
        assert fresh.proc.wait(TIMEOUT_S) == 0 and time.monotonic() - t0 < TIMEOUT_S
    finally:
        fresh.stop()


def test_warm_up_case_prints_nothing_before_ready(sample_case, tmp_path):
    """--warm-up runs a case before "ready"; its progress lines do not reach the protocol."""
    w = Worker("--warm-up", str(sample_case))
    try:
        assert w.next()["event"] == "ready"
        w.send({"job": "x", "args": [str(sample_case), "-o", str(tmp_path / "case"), "--no-html"]})
        assert w.next() == {"event": "job", "job": "x"}
        assert w.until(event="job_done")[-1]["exit_code"] == 0
        w.send({"exit": True})
        assert w.proc.wait(TIMEOUT_S) == 0
    finally:
        w.stop()
    assert not list(tmp_path.glob("lvp-warm-up-*"))


def test_a_dicomweb_job_takes_the_model_the_worker_holds(tmp_path, monkeypatch):
    """A DICOMweb job's fetched series is segmented with the worker's loaded model, not a new copy per job.

    The server is unreachable, so the job fails with the clear error ``lvp infer`` gives; by then it
    has asked the worker's cache for its model (only --labels / --semantic jobs do not).
    """
    import socket

    from lvp.commands.serve import Worker as InProcessWorker
    from lvp.errors import LVPError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LVP_DICOMWEB_USER", "reader")
    monkeypatch.setenv("LVP_DICOMWEB_PASSWORD", "secret-pw-42")
    worker = InProcessWorker()
    assert worker.segmenters == {}
    with pytest.raises(LVPError, match="cannot be reached"):
        worker.run_job([f"dicomweb+http://127.0.0.1:{port}/dicom-web", "--study", "1.2.3",
                        "-o", str(tmp_path / "o"), "--device", "cpu"])
    assert list(worker.segmenters) == [(None, "cpu")]
    assert not (tmp_path / "o").exists()
