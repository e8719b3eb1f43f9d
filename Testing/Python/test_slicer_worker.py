"""The module's warm worker (issue 13): ``lvp serve`` reused between cases, with the real child.

Through the panel on Slicer 5.12.3's own base classes (slicer_app.py) and the bundled model: two
runs use one worker process and both results load; Cancel mid-case ends the worker's process
group and leaves no result folder, the next run gets a new worker; an input the core refuses
shows its error and the worker stays; the module's cleanup (Slicer unloading it, as when the
application closes) leaves no process. Through the logic: a dead worker, a changed model folder
or device gets a new worker; a pip install (the panel's job) ends it. Through the runner: a
worker whose parent is killed ends by itself (its stdin closes); an older core without ``lvp
serve`` falls back to one process per case.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_app import make_widget, wait_idle
from slicer_helpers import MODULE_DIR, REPO_ROOT, SAMPLE_DIR, process_alive

pytest_plugins = ("slicer_helpers", "slicer_app")
pytestmark = [
    pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX here"),
    pytest.mark.skipif(not (REPO_ROOT / "models" / "models.json").is_file(), reason="no bundled model in models/"),
]

SAMPLE = SAMPLE_DIR / "spider_sample_t2.nii.gz"
TIMEOUT_S = 180.0  # a shared 2-core machine under load; a case takes about 0.5 s when quiet


def _group_gone(pgid: int) -> bool:
    """No live process left in the process group ``pgid`` (the worker and anything it started)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return False
    return True


def _until(condition, what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.01)


@pytest.fixture()
def widget(slicer_app):
    import LumbarVNetPro

    panel = make_widget(LumbarVNetPro)
    panel.logic.case.python = sys.executable  # the test's Python runs the core (PythonSlicer in Slicer)
    yield panel
    panel.cleanup()


def _start(widget, volume, out: Path) -> None:
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    widget.ui.deviceComboBox.setCurrentIndex(widget.ui.deviceComboBox.findData("cpu"))
    widget.ui.outputFolderPathLineEdit.currentPath = str(out)
    widget.ui.applyButton.click()


def _run(slicer, widget, volume, out: Path) -> list[tuple[str, int]]:
    """Run analysis until the panel is idle; returns the (status text, progress %) it showed."""
    _start(widget, volume, out)
    shown = []
    deadline = time.monotonic() + TIMEOUT_S
    while widget.workplace.running or widget.pollTimer.isActive():
        slicer.app.processEvents()
        shown.append((widget.ui.statusLabel.text, widget.ui.progressBar.value))
        assert time.monotonic() < deadline, "the panel's job did not finish in time"
        time.sleep(0.01)
    return shown


def test_panel_reuses_one_worker_cancel_ends_it_a_bad_input_keeps_it_cleanup_ends_it(
    widget, slicer_app, tmp_path, caplog
):
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.process import STAGE_LABELS
    from LumbarVNetProLib.worker import WorkerJob, WorkerRunner

    slicer = slicer_app
    runner = widget.logic.case.runner
    assert isinstance(runner, WorkerRunner) and runner.workerPids == []  # lazy: nothing before the first Run
    first, second = slicer.util.loadVolume(str(SAMPLE)), slicer.util.loadVolume(str(SAMPLE))

    # Two runs, one worker: both results are loaded, each under its own volume.
    shown = _run(slicer, widget, first, tmp_path / "first")
    # The progress lines inside the worker's job frame reach the panel as a one-case child's did.
    assert {text for text, _ in shown} & set(STAGE_LABELS.values()) and max(p for _, p in shown) > 0
    pid = runner.worker.pid
    _run(slicer, widget, second, tmp_path / "second")
    assert runner.worker.pid == pid and runner.workerPids == [pid] and process_alive(pid)
    assert widget.ui.statusLabel.text == "Done."
    segmentations = [slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetItemAsObject(i) for i in range(2)]
    assert sorted(s.GetAttribute(lvpscene.VOLUME_ATTRIBUTE) for s in segmentations) == sorted(
        [first.GetID(), second.GetID()]
    )
    for name in ("first", "second"):
        assert lvpscene.load_report(tmp_path / name)["status"] == "complete"
    assert widget.workplace.rows

    # Cancel mid-case: the worker's whole process group ends, the case leaves no folder.
    _start(widget, first, tmp_path / "cancelled")
    job = widget.workplace.job.running
    assert isinstance(job, WorkerJob) and job.pid == pid
    _until(lambda: job.started, "the worker began the case")
    widget.ui.cancelButton.click()
    wait_idle(slicer, widget, TIMEOUT_S)
    assert widget.ui.statusLabel.text == "Cancelled."
    assert not process_alive(pid) and _group_gone(pid)
    assert not (tmp_path / "cancelled").exists()

    # The next run starts a new worker and its result loads.
    _run(slicer, widget, second, tmp_path / "after")
    assert widget.ui.statusLabel.text == "Done." and lvpscene.load_report(tmp_path / "after")["status"] == "complete"
    newPid = runner.worker.pid
    assert newPid != pid and runner.workerPids == [newPid]

    # An input the core refuses (a 3-slice axial stack): its error is shown, the worker stays.
    tiny = tmp_path / "axial.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 16, 16), np.int16)), str(tiny))
    with caplog.at_level(logging.ERROR):
        _run(slicer, widget, slicer.util.loadVolume(str(tiny)), tmp_path / "bad")
    assert widget.ui.statusLabel.text == "Failed."
    assert "Analysis failed" in caplog.text and "axial acquisition" in caplog.text
    assert runner.worker.pid == newPid and process_alive(newPid)

    # Slicer unloads the module (also when the application closes): cleanup ends the worker.
    slicer.app.moduleManager().moduleAboutToBeUnloaded.emit("LumbarVNetPro")
    assert not process_alive(newPid) and _group_gone(newPid) and runner.workerPids == []


def test_a_dead_worker_or_a_changed_device_or_model_folder_gets_a_new_worker(slicer_app, tmp_path):
    import LumbarVNetPro

    slicer = slicer_app
    volume = slicer.util.loadVolume(str(SAMPLE))
    module_logic = LumbarVNetPro.LumbarVNetProLogic(python=sys.executable)  # a script's use of the module
    logic = module_logic.case
    try:
        logic.process(volume, tmp_path / "first", device="cpu")
        killed = logic.runner.worker.pid
        # The worker dies between cases (a crash, the OOM killer) after the next job was sent to it
        # (stopped first, so it still counts as running): the job runs on a new worker.
        os.kill(killed, signal.SIGSTOP)
        job = logic.startInference(volume, tmp_path / "cpu", "cpu")
        os.kill(killed, signal.SIGKILL)
        assert job.running.wait(timeout_s=TIMEOUT_S) == 0
        assert logic.finishInference(job)["status"] == "complete"
        cpu = logic.runner.worker.pid
        assert job.running.delegate is not None and job.running.pid == cpu != killed
        # Dead and seen dead: the next run starts a new worker at once.
        os.kill(cpu, signal.SIGKILL)
        _until(lambda: not process_alive(cpu), "the killed worker ends")
        logic.process(volume, tmp_path / "cpu2", device="cpu")
        assert logic.runner.worker.pid not in (cpu, killed)
        cpu = logic.runner.worker.pid
        logic.process(volume, tmp_path / "auto", device="auto")  # another device setting
        auto = logic.runner.worker.pid
        assert auto != cpu
        _until(lambda: not process_alive(cpu), "the replaced worker exits (its stdin is closed)")
        model = tmp_path / "model"
        shutil.copytree(REPO_ROOT / "models", model)
        nodes = logic.process(volume, tmp_path / "folder", device="auto", modelDir=model)  # another model folder
        assert nodes.segmentation is not None and logic.runner.worker.pid != auto
        _until(lambda: not process_alive(auto), "the replaced worker exits")
        folder = logic.runner.worker.pid
        # The same folder whose files were replaced (a newer model installed there): a new worker too.
        onnx = next(model.glob("*.onnx"))
        os.utime(onnx, ns=(onnx.stat().st_atime_ns, onnx.stat().st_mtime_ns + 10**9))
        module_logic.process(volume, tmp_path / "replaced", device="auto", modelDir=model)
        assert logic.runner.worker.pid != folder
    finally:
        module_logic.shutdown()
    assert logic.runner.workerPids == []


def test_worker_ends_when_the_application_is_killed(tmp_path):
    """Slicer crashing (SIGKILL here): the worker sees its stdin close and exits by itself."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from LumbarVNetProLib.process import infer_command
        from LumbarVNetProLib.worker import WorkerRunner

        runner = WorkerRunner()
        args = infer_command({str(SAMPLE)!r}, {str(tmp_path / "case")!r}, "cpu", {str(REPO_ROOT / "models")!r},
                             python=sys.executable)
        job = runner.start(args, env={{"PYTHONPATH": {str(MODULE_DIR)!r}}})
        code = job.wait(timeout_s=300)
        print(job.pid, code, flush=True)
        time.sleep(600)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(MODULE_DIR))
    app = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                           start_new_session=True)
    try:
        pid, code = map(int, app.stdout.readline().split())
        assert code == 0 and process_alive(pid) and (tmp_path / "case" / "report.json").is_file()
        os.kill(app.pid, signal.SIGKILL)
        app.wait(30)
        _until(lambda: not process_alive(pid), "the orphaned worker exits", 60)
        assert _group_gone(pid)
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)


def test_a_core_without_lvp_serve_falls_back_to_one_process_per_case(tmp_path, caplog):
    """An older core (its ``lvp`` has no ``serve`` command): the case still runs, and the log says how."""
    from LumbarVNetProLib.process import RunningProcess, infer_command
    from LumbarVNetProLib.worker import WorkerJob, WorkerRunner

    old = tmp_path / "old-core"
    shutil.copytree(MODULE_DIR / "lvp", old / "lvp", ignore=shutil.ignore_patterns("serve.py", "__pycache__"))
    env = {"PYTHONPATH": str(old)}
    runner = WorkerRunner()
    try:
        with caplog.at_level(logging.INFO, logger="LumbarVNetProLib.worker"):
            args = infer_command(SAMPLE, tmp_path / "one", "cpu", REPO_ROOT / "models", python=sys.executable)
            job = runner.start(args, env=env)
            assert isinstance(job, WorkerJob)  # tried first
            assert job.wait(timeout_s=TIMEOUT_S) == 0, job.error_message()
            assert isinstance(job.delegate, RunningProcess) and job.pid != job.worker.pid
            assert "no warm worker (lvp serve); every case runs in its own process" in caplog.text
            assert (tmp_path / "one" / "report.json").is_file()
            started = caplog.text.count("started the warm worker")
            # Remembered: the next case goes straight to its own process, no worker is tried again.
            args = infer_command(SAMPLE, tmp_path / "two", "cpu", REPO_ROOT / "models", python=sys.executable)
            second = runner.start(args, env=env)
            assert isinstance(second, RunningProcess) and second.wait(timeout_s=TIMEOUT_S) == 0
            assert caplog.text.count("started the warm worker") == started and runner.workerPids == []
    finally:
        runner.shutdown()


def test_shutdown_of_an_idle_worker_is_a_clean_exit_and_of_a_busy_one_a_kill(tmp_path):
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.process import infer_command
    from LumbarVNetProLib.worker import WorkerRunner

    runner = WorkerRunner()
    args = infer_command(SAMPLE, tmp_path / "idle", "cpu", REPO_ROOT / "models", python=sys.executable)
    job = runner.start(args, env=CaseLogic.childEnv())
    assert job.wait(timeout_s=TIMEOUT_S) == 0
    worker = runner.worker
    runner.shutdown(grace_s=TIMEOUT_S)
    assert worker.popen.returncode == 0 and _group_gone(worker.pid)  # stdin closed: it left by itself
    # Busy: the grace runs out, the process group is killed, the case leaves no folder.
    args = infer_command(SAMPLE, tmp_path / "busy", "cpu", REPO_ROOT / "models", python=sys.executable)
    job = runner.start(args, env=CaseLogic.childEnv())
    _until(lambda: job.started, "the worker began the case")
    worker = runner.worker
    runner.shutdown(grace_s=0.05)
    assert worker.popen.returncode != 0 and _group_gone(worker.pid)
    assert job.poll() not in (None, 0) and not (tmp_path / "busy").exists()


def test_a_package_install_ends_the_warm_worker(slicer_app, tmp_path):
    """pip may change packages the worker has imported: the next run starts a worker that sees them."""
    from LumbarVNetProLib import install
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.parameters import Settings
    from LumbarVNetProLib.workflow import DONE, FAILED, Workplace

    slicer = slicer_app
    volume = slicer.util.loadVolume(str(SAMPLE))
    place = Workplace(CaseLogic(slicer.mrmlScene, python=sys.executable))
    try:
        place.startRun(Settings(inputVolume=volume, outputFolder=tmp_path / "run", device="cpu"))
        place.job.running.wait(timeout_s=TIMEOUT_S)
        assert place.poll().state == DONE
        pid = place.logic.runner.worker.pid
        # A real pip, offline with an empty wheel folder: it fails at once, having possibly changed nothing.
        running, missing, work = install.start_install(place.logic.runner, ["no-such-package-lvp==1.0"],
                                                       sys.executable, wheels=tmp_path / "wheels")
        assert running.pid != pid  # pip is its own child, not a worker job
        place.startInstall(running, missing, work)
        running.wait(timeout_s=TIMEOUT_S)
        assert place.poll().state == FAILED
        assert not process_alive(pid) and place.logic.runner.workerPids == []
        # The next run starts a new worker.
        place.startRun(Settings(inputVolume=volume, outputFolder=tmp_path / "again", device="cpu"))
        place.job.running.wait(timeout_s=TIMEOUT_S)
        assert place.poll().state == DONE and place.logic.runner.worker.pid != pid
    finally:
        place.close()
    assert place.logic.runner.workerPids == []
