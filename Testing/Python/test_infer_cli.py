"""``lvp infer`` command: inputs, batches, progress lines, exit codes, SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lvp.cli import main
from lvp.commands.infer import EXIT_FAILED, EXIT_SIGTERM, expand_inputs, output_dirs, run
from lvp.report.schema import validate_report

POST = ("lvp.labelling", "lvp.measure", "lvp.grading", "lvp.planes")


def _need_post_processing():
    for mod in POST:
        pytest.importorskip(mod)


def _args(inputs, out, **kw) -> argparse.Namespace:
    base = dict(inputs=[str(i) for i in inputs], output=str(out), axial=None, device="cpu", model=None,
                semantic=None, no_html=False, progress_json=True)
    base.update(kw)
    return argparse.Namespace(**base)


def _links(sample_case: Path, folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"case{i:02d}.nii.gz"
        p.symlink_to(sample_case)
        paths.append(p)
    return paths


def test_expand_inputs_and_output_folders(tmp_path):
    (tmp_path / "a_t2.nii.gz").write_bytes(b"")
    (tmp_path / "a_labels.nii.gz").write_bytes(b"")  # a mask beside the image is not a case
    (tmp_path / "b.mha").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    cases = expand_inputs([tmp_path])
    assert [c.name for c in cases] == ["a_t2.nii.gz", "b.mha"]
    studies = tmp_path / "studies"
    for name in ("s1", "s2"):
        (studies / name).mkdir(parents=True)
    assert [c.name for c in expand_inputs([studies])] == ["s1", "s2"]
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    (dicom / "IM0001").write_bytes(b"")
    assert expand_inputs([dicom]) == [dicom]
    out = tmp_path / "out"
    assert output_dirs([Path("x/a.nii.gz")], out) == [out]
    dirs = output_dirs([Path("x/a.nii.gz"), Path("y/a.nii.gz"), Path("z/b.nrrd")], out)
    assert dirs == [out / "a", out / "a_2", out / "b"]


def test_semantic_takes_one_input(tmp_path, capsys):
    code = main(["infer", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "-o", str(tmp_path),
                 "--semantic", "m.nii.gz"])
    assert code == 2
    assert "single input" in capsys.readouterr().err


def test_missing_input_is_one_line_and_exit_2(tmp_path, sample_case, capsys):
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    code = main(["infer", str(tmp_path / "nothing.nii.gz"), "-o", str(tmp_path / "o"), "--semantic", str(mask)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_FAILED
    assert len(err) == 1 and err[0].startswith("lvp infer: error:") and "does not exist" in err[0]


def test_batch_goes_on_after_a_failure_and_reports_it(tmp_path, sample_case, capsys):
    _need_post_processing()
    from lvp.pipeline import MaskSegmenter

    good = _links(sample_case, tmp_path / "in", 2)
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "out"
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    code = run(_args([good[0], broken, good[1]], out), segmenter=MaskSegmenter(mask))
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert code == EXIT_FAILED
    cases = [ln for ln in lines if ln["event"] == "case"]
    assert [c["status"] for c in cases] == ["complete", "failed", "complete"]
    assert "broken.nii.gz" in cases[1]["input"]
    # Stage lines carry the stage and the case's progress, rising within each case.
    stages = [ln for ln in lines if ln["event"] == "stage"]
    assert {"read", "network", "labelling", "write", "done"} <= {s["stage"] for s in stages}
    assert all(0.0 <= s["progress"] <= 1.0 and 0.0 <= s["overall"] <= 1.0 for s in stages)
    overall = [s["overall"] for s in stages]
    assert overall == sorted(overall)
    assert lines[-1] == {"event": "done", "complete": 2, "partial": 0, "failed": 1, "exit_code": EXIT_FAILED}
    for name in ("case00", "case01"):
        validate_report(json.loads((out / name / "report.json").read_text()))
    assert not (out / "broken").exists() or not (out / "broken" / "report.json").exists()
    assert "broken.nii.gz" in captured.err and "1 of 3 cases failed" in captured.err


def test_sigterm_stops_cleanly(tmp_path, sample_case, repo_root):
    _need_post_processing()
    inputs = _links(sample_case, tmp_path / "in", 40)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import argparse, sys
        from lvp.commands.infer import run
        from lvp.pipeline import MaskSegmenter
        args = argparse.Namespace(inputs={[str(p) for p in inputs]!r}, output={str(out)!r}, axial=None,
                                  device="cpu", model=None, semantic=None, no_html=False, progress_json=True)
        sys.exit(run(args, segmenter=MaskSegmenter({str(sample_case.with_name('spider_sample_labels.nii.gz'))!r})))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "case":
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=60)
    lines += [json.loads(x) for x in rest.splitlines()]
    assert proc.returncode == EXIT_SIGTERM, err
    assert lines[-1] == {"event": "cancelled"}
    assert "stopped" in err and "Traceback" not in err
    done = [ln for ln in lines if ln["event"] == "case"]
    assert 1 <= len(done) < 40
    # No temporary file is left anywhere and every finished case has a valid report.
    assert not list(out.rglob(".tmp-*"))
    for case in done:
        validate_report(json.loads((Path(case["output"]) / "report.json").read_text()))
