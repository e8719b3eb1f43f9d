"""A result folder always holds one run's result, whole (issue 16 item 2).

Real child ``lvp infer`` processes are killed (SIGKILL, SIGTERM) while they write, two run into
one folder at once, and a rerun with ``--no-html`` follows a run with it. Two "patients" tell the
runs apart: the bundled sample (A) and the same sample cropped by 16 voxels (B), each with its
reference mask standing in for the network (``--semantic``), so every output file shows whose it is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from lvp.errors import OutputError
from lvp.io import result_folder as rf
from lvp.io.result_folder import ResultFolder, check_output_dir


@pytest.fixture(scope="module")
def patients(sample_case, tmp_path_factory) -> dict:
    """name -> (image, mask, ITK size of its grid)."""
    folder = tmp_path_factory.mktemp("patients")
    img = sitk.ReadImage(str(sample_case))
    mask = sitk.ReadImage(str(sample_case.with_name("spider_sample_labels.nii.gz")))
    out = {}
    for name, crop in (("patient_a", 0), ("patient_b", 16)):
        i, m = (img, mask) if not crop else (img[: img.GetSize()[0] - crop], mask[: img.GetSize()[0] - crop])
        paths = folder / f"{name}.nii.gz", folder / f"{name}_mask.nii.gz"
        sitk.WriteImage(i, str(paths[0]))
        sitk.WriteImage(m, str(paths[1]))
        out[name] = (paths[0], paths[1], i.GetSize())
    return out


def _cmd(patient: tuple, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lvp", "infer", str(patient[0]), "--semantic", str(patient[1]), "-o", str(out),
            "--progress-json", *extra]


def _run(patient: tuple, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(patient, out, *extra), capture_output=True, text=True, timeout=300)


def whole_result_of(out: Path, patients: dict) -> str:
    """The patient whose complete result ``out`` holds; fails on a mixture or a missing file."""
    report = json.loads((out / "report.json").read_text())
    name = Path(report["input"]["path"]).name.removesuffix(".nii.gz")
    listed = {v for v in report["outputs"].values() if v}
    assert {p.name for p in out.iterdir()} == listed | {"report.json"}, "files of another run or missing files"
    size = patients[name][2]
    for key in ("segmentation", "segmentation_seg_nrrd"):
        assert sitk.ReadImage(str(out / report["outputs"][key])).GetSize()[:3] == size, f"{key} of another run"
    if report["outputs"]["report_html"]:
        assert str(patients[name][0]) in (out / "report.html").read_text(), "report.html of another run"
    return name


def _stale(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def _kill_at(cmd: list[str], stage: str, sig: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "stage" and event.get("stage") == stage:
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=120)
    return proc, err


@pytest.mark.parametrize("stage", ["write", "figure"])
def test_sigkill_while_writing_leaves_the_previous_result_whole(patients, tmp_path, stage):
    out = tmp_path / "out"
    assert _run(patients["patient_a"], out).returncode == 0
    assert whole_result_of(out, patients) == "patient_a"
    proc, err = _kill_at(_cmd(patients["patient_b"], out), stage, signal.SIGKILL)
    # Killed while writing B: the folder is A whole (or B whole if the kill came after the swap).
    assert whole_result_of(out, patients) in ("patient_a", "patient_b"), err
    if proc.returncode == -signal.SIGKILL and whole_result_of(out, patients) == "patient_a":
        assert _stale(out), "the killed run's staging folder is what the next run must clean"
    # The next run into the folder cleans the dead run's temporaries and replaces A whole.
    done = _run(patients["patient_b"], out)
    assert done.returncode == 0, done.stderr
    assert whole_result_of(out, patients) == "patient_b"
    assert _stale(out) == []


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_while_writing_removes_its_temporaries(patients, tmp_path, sig, code):
    out = tmp_path / "out"
    assert _run(patients["patient_a"], out).returncode == 0
    proc, err = _kill_at(_cmd(patients["patient_b"], out), "figure", sig)
    assert proc.returncode in (code, 0), err
    assert "Traceback" not in err
    assert whole_result_of(out, patients) == ("patient_a" if proc.returncode == code else "patient_b")
    assert _stale(out) == []


def test_an_input_inside_its_output_folder_is_refused_and_kept(patients, tmp_path):
    out = tmp_path / "out"
    assert _run(patients["patient_a"], out).returncode == 0
    inside = out / "patient_b.nii.gz"  # the next run would replace the folder and lose its input
    inside.write_bytes(patients["patient_b"][0].read_bytes())
    done = _run((inside, patients["patient_b"][1]), out)
    assert done.returncode == 2 and "lies inside the output folder" in done.stderr
    assert inside.is_file()


def test_rerun_without_html_keeps_no_earlier_report_html(patients, tmp_path):
    out = tmp_path / "out"
    assert _run(patients["patient_a"], out).returncode == 0
    assert (out / "report.html").is_file()
    done = _run(patients["patient_b"], out, "--no-html")
    assert done.returncode == 0, done.stderr
    assert not (out / "report.html").exists()
    assert whole_result_of(out, patients) == "patient_b"


def test_a_run_into_a_locked_folder_fails_at_once_and_writes_nothing(patients, tmp_path):
    out = tmp_path / "out"
    assert _run(patients["patient_a"], out).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with ResultFolder(out):  # this process holds the lock, as a running lvp infer does
        blocked = _run(patients["patient_b"], out)
    assert blocked.returncode == 2
    assert "is being written by another lvp run" in blocked.stderr and f"pid {os.getpid()}" in blocked.stderr
    assert "Traceback" not in blocked.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_second_run_while_the_first_is_reading_fails_and_the_first_completes(patients, tmp_path):
    """Two real lvp infer processes, the first held (SIGSTOP) right after it started reading."""
    out = tmp_path / "out"
    first = subprocess.Popen(_cmd(patients["patient_a"], out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert first.stdout is not None
    for line in first.stdout:
        if json.loads(line).get("stage") == "read":
            first.send_signal(signal.SIGSTOP)
            break
    try:
        second = _run(patients["patient_b"], out)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert second.returncode == 2 and "is being written by another lvp run" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert first.returncode == 0, err
    assert whole_result_of(out, patients) == "patient_a"
    assert _stale(out) == []


def test_two_concurrent_runs_into_one_folder_leave_one_whole_result(patients, tmp_path):
    out = tmp_path / "out"
    procs = {name: subprocess.Popen(_cmd(patients[name], out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name in ("patient_a", "patient_b")}
    codes = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        codes[name] = proc.returncode
        assert proc.returncode == 0 or (proc.returncode == 2 and "being written by another lvp run" in err), err
    winner = whole_result_of(out, patients)
    assert codes[winner] == 0
    assert _stale(out) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = _dead_pid()
    stale = [tmp_path / f".tmp-{dead}-out-0a1b2c3d", tmp_path / f".old-{dead}-out-0a1b2c3d"]
    for p in stale:
        p.mkdir()
        (p / "report.json").write_text("{}")
    (tmp_path / f".tmp-{dead}-out-0a1b2c3d-x").mkdir()  # not this folder's name pattern
    live = tmp_path / f".tmp-{os.getppid()}-out-11111111"  # a living process (pytest's parent)
    live.mkdir()
    other = tmp_path / f".tmp-{dead}-other-22222222"  # another folder's temporary: not ours to judge
    other.mkdir()
    out.mkdir()
    with ResultFolder(out) as folder:
        assert folder.staging.parent == tmp_path and folder.staging.is_dir()
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists() and not folder.staging.exists()


def test_a_crash_between_the_two_renames_is_repaired_by_the_next_run(tmp_path):
    """Without an atomic exchange the previous result is moved aside first: it comes back."""
    dead = _dead_pid()
    out = tmp_path / "out"
    aside = tmp_path / f".old-{dead}-out-abcdef01"
    aside.mkdir()
    (aside / "report.json").write_text('{"schema": "lvp-report", "who": "previous"}')
    staging = tmp_path / f".tmp-{dead}-out-abcdef01"
    staging.mkdir()
    (staging / "segmentation.nii.gz").write_text("half of a new run")
    with ResultFolder(out):
        assert json.loads((out / "report.json").read_text())["who"] == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert _stale(out) == []


def test_swap_without_atomic_exchange_replaces_the_folder_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(rf, "_exchange", lambda a, b: False)  # as on macOS / Windows
    out = tmp_path / "out"
    for run, names in enumerate((["report.json", "report.html"], ["report.json"])):
        with ResultFolder(out) as folder:
            for name in names:
                (folder.staging / name).write_text(json.dumps({"schema": "lvp-report", "run": run}))
            folder.commit()
        assert sorted(p.name for p in out.iterdir()) == sorted(names)
        assert json.loads((out / "report.json").read_text())["run"] == run
    assert _stale(out) == []


def test_leaving_without_commit_keeps_the_previous_result(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"schema": "lvp-report"}')
    with pytest.raises(RuntimeError):
        with ResultFolder(out) as folder:
            (folder.staging / "report.json").write_text("new")
            raise RuntimeError("a stage failed hard")
    assert (out / "report.json").read_text() == '{"schema": "lvp-report"}'
    assert _stale(out) == []


def test_output_paths_that_cannot_take_a_result_are_refused(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(a_file)
    with pytest.raises(OutputError, match="file.txt is a file"):
        check_output_dir(a_file / "sub")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("precious")
    with pytest.raises(OutputError, match=r"holds files that are not an LVP result \(thesis.docx\)"):
        check_output_dir(mine)
    with pytest.raises(OutputError, match="lies inside the output folder"):
        check_output_dir(mine, [mine / "input.nii.gz"])
    with pytest.raises(OutputError, match="is the current folder or holds it"):
        check_output_dir(Path.cwd().parent)
    if Path("/proc/self").is_dir():  # a read-only location even for root
        with pytest.raises(OutputError, match="cannot be written"):
            check_output_dir("/proc/lvp-out")
    if os.geteuid() != 0:  # root writes everywhere: a mode-0555 folder only stops other users
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(OutputError, match="cannot be written"):
            check_output_dir(ro / "out")


def test_a_symlinked_result_folder_keeps_its_link(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    for run in range(2):
        with ResultFolder(link) as folder:
            (folder.staging / "report.json").write_text(json.dumps({"schema": "lvp-report", "run": run}))
            folder.commit()
    assert link.is_symlink() and json.loads((link / "report.json").read_text())["run"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["link", "real"]


def test_sigterm_right_after_the_staging_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM is raised as an exception; landing just after the staging mkdir, it must not strand the folder."""
    target = tmp_path / "out"
    real_mkdir = Path.mkdir

    def mkdir_then_interrupted(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name.startswith(rf.TEMP_PREFIX):
            raise KeyboardInterrupt  # what the SIGTERM handler of lvp infer raises (a subclass)

    monkeypatch.setattr(Path, "mkdir", mkdir_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with ResultFolder(target):
            pass
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(rf.TEMP_PREFIX)]
    with ResultFolder(target) as folder:  # the lock was released too
        (folder.staging / "report.json").write_text("{}")
        folder.commit()
    assert (target / "report.json").is_file()
