"""``lvp serve`` warms itself while idle (issue 13): what a first case would pay, paid between jobs.

* the warm-up steps leave the worker with what they are for: the late modules and pydicom/highdicom
  imported, highdicom's DICOM-standard tables parsed, the network run once (checked in a fresh
  interpreter, where none of it was there before);
* a job sent before "ready" runs before any warm-up step (a warm-up never holds a waiting job
  back); once idle the worker takes every step, in order, and still answers the next job and the
  end of stdin;
* ``--warm before-ready`` takes the steps before "ready", ``--no-warm-dicom`` leaves the DICOM
  steps out, ``--warm off`` takes none;
* the Slicer module's runner starts its worker with ``--no-warm-dicom`` (its jobs are NIfTI
  copies), and an older ``lvp serve`` that refuses the option is remembered as "no worker": its
  cases run one process each.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180.0  # a shared 2-core machine under load
WARM_LINE = "lvp serve: warmed "
pytestmark = [
    pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX here"),
    pytest.mark.skipif(not (REPO / "models" / "models.json").is_file(), reason="no bundled model in models/"),
]


def _serve(*options: str) -> subprocess.Popen:
    """An ``lvp serve`` child whose stderr is merged into stdout: one stream, in the order written."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO / "LumbarVNetPro"))
    return subprocess.Popen([sys.executable, "-m", "lvp", "serve", "--device", "cpu", *options],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)


def _lines_until(proc: subprocess.Popen, predicate) -> list[str]:
    lines = []
    for line in iter(proc.stdout.readline, ""):
        lines.append(line.rstrip("\n"))
        if predicate(lines[-1]):
            return lines
    raise AssertionError("lvp serve ended early:\n" + "\n".join(lines[-40:]))


def _event(line: str) -> dict:
    try:
        data = json.loads(line)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _warmed(lines: list[str]) -> list[str]:
    """The names of the warm-up steps among ``lines``, in order."""
    return [line.split(WARM_LINE)[1].rsplit(" in ", 1)[0] for line in lines if line.startswith(WARM_LINE)]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_warm_steps_import_the_late_modules_parse_highdicom_tables_and_run_the_network():
    script = textwrap.dedent("""
        import sys
        from lvp.commands.serve import Worker, warm_steps
        late = ("jinja2", "lvp.io.result_folder", "lvp.io.label_files", "pydicom", "highdicom.seg", "highdicom.sr",
                "lvp.io.dicom_seg", "lvp.io.dicom_sr")
        worker = Worker()
        worker.preload(None, "cpu")
        assert not [m for m in late if m in sys.modules], [m for m in late if m in sys.modules]
        from highdicom import _standard_utils as standard  # only to look at its caches
        assert standard.get_module_attribute_map.cache_info().currsize == 0
        segmenter = worker.segmenter(None, "cpu")
        runs = []
        logits = segmenter.logits
        segmenter.logits = lambda x, **kw: runs.append(x.shape) or logits(x, **kw)
        names = []
        for name, step in warm_steps(worker, None, "cpu"):
            step()
            names.append(name)
        assert names == ["imports", "network", "dicom imports", "dicom tables"], names
        assert not [m for m in late if m not in sys.modules], [m for m in late if m not in sys.modules]
        assert standard.get_module_attribute_map.cache_info().currsize == 1
        assert standard.get_iod_module_map.cache_info().currsize == 1
        assert runs == [(1, 1, *segmenter.divisor)], runs  # one run, on the smallest input the network takes
        assert [n for n, _ in warm_steps(worker, None, "cpu", dicom=False)] == ["imports", "network"]
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "LumbarVNetPro"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_a_job_sent_before_ready_runs_before_any_warm_step_then_the_idle_worker_warms(sample_case, tmp_path):
    proc = _serve()
    try:
        # The Slicer module's way: the job is written at once, before the worker is ready.
        proc.stdin.write(json.dumps({"job": 1, "args": [str(sample_case), "-o", str(tmp_path / "one"), "--quiet"]})
                         + "\n")
        proc.stdin.flush()
        lines = _lines_until(proc, lambda line: _event(line).get("event") == "job_done")
        assert _event(lines[-1]).get("exit_code") == 0, lines
        assert [_event(line).get("event") for line in lines if _event(line)][:2] == ["ready", "job"]
        assert not [line for line in lines if line.startswith(WARM_LINE)], lines  # nothing ran ahead of it
        lines = _lines_until(proc, lambda line: line.startswith(WARM_LINE + "dicom tables"))
        assert _warmed(lines) == ["imports", "network", "dicom imports", "dicom tables"], lines
        assert not [line for line in lines if "skipped" in line], lines
        # Warm, it still answers: another job, then the end of its input.
        proc.stdin.write(json.dumps({"job": 2, "args": [str(sample_case), "-o", str(tmp_path / "two"), "--quiet"]})
                         + "\n")
        proc.stdin.flush()
        lines = _lines_until(proc, lambda line: _event(line).get("event") == "job_done")
        assert _event(lines[-1]) == {"event": "job_done", "job": 2, "exit_code": 0}
        assert (tmp_path / "two" / "report.json").is_file()
        proc.stdin.close()
        assert proc.wait(TIMEOUT_S) == 0
    finally:
        _stop(proc)


@pytest.mark.parametrize(("options", "before", "after"), [
    (("--warm", "before-ready", "--no-warm-dicom"), ["imports", "network"], []),
    (("--warm", "off"), [], []),
    (("--no-warm-dicom",), [], ["imports", "network"]),
])
def test_warm_options(options, before, after):
    proc = _serve(*options)
    try:
        lines = _lines_until(proc, lambda line: _event(line).get("event") == "ready")
        assert _warmed(lines) == before
        if after:  # idle: the steps follow
            assert _warmed(_lines_until(proc, lambda line: line.startswith(WARM_LINE + after[-1]))) == after
        proc.stdin.write(json.dumps({"exit": True}) + "\n")
        proc.stdin.flush()
        rest = proc.stdout.read()
        assert proc.wait(TIMEOUT_S) == 0 and WARM_LINE not in rest, rest
    finally:
        _stop(proc)


def test_the_module_runner_asks_for_no_dicom_warm_up_and_remembers_an_older_serve(tmp_path, caplog):
    sys.path.insert(0, str(REPO / "LumbarVNetPro"))
    from LumbarVNetProLib.process import RunningProcess, infer_command
    from LumbarVNetProLib.worker import WorkerJob, WorkerRunner

    assert "--no-warm-dicom" in WorkerRunner().workerCommand(sys.executable, None, "cpu")
    # An older core: `lvp serve` there has no --no-warm-dicom option (argparse refuses it).
    old = tmp_path / "old-core"
    shutil.copytree(REPO / "LumbarVNetPro" / "lvp", old / "lvp", ignore=shutil.ignore_patterns("__pycache__"))
    serve = old / "lvp" / "commands" / "serve.py"
    serve.write_text(serve.read_text().replace('"--no-warm-dicom"', '"--no-such-option-here"'))
    env = {"PYTHONPATH": str(old)}
    sample = REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
    runner = WorkerRunner()

    def command(name: str) -> list[str]:
        return infer_command(sample, tmp_path / name, "cpu", REPO / "models", python=sys.executable)

    try:
        with caplog.at_level(logging.INFO, logger="LumbarVNetProLib.worker"):
            job = runner.start(command("one"), env=env)
            assert isinstance(job, WorkerJob)
            assert job.wait(timeout_s=TIMEOUT_S) == 0, job.error_message()
            assert isinstance(job.delegate, RunningProcess) and (tmp_path / "one" / "report.json").is_file()
            assert "no warm worker (lvp serve); every case runs in its own process" in caplog.text
            second = runner.start(command("two"), env=env)
            assert isinstance(second, RunningProcess) and second.wait(timeout_s=TIMEOUT_S) == 0
            assert caplog.text.count("started the warm worker") == 1 and runner.workerPids == []
    finally:
        runner.shutdown()
