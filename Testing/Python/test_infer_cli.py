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
from lvp.commands.infer import (
    EXIT_COMPLETE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    EXIT_SIGTERM,
    expand_inputs,
    output_dirs,
    report_notes,
    run,
)
from lvp.errors import InputError
from lvp.report.schema import validate_report


def _args(inputs, out, **kw) -> argparse.Namespace:
    base = dict(inputs=[str(i) for i in inputs], output=str(out), axial=None, device="cpu", model=None,
                semantic=None, no_html=False, progress_json=True, quiet=False)
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


# ---- issue 16 item 5: mixed input folders, unusable output paths ------------------------------


def _nifti_and_dicom_folder(sample_case, folder: Path) -> Path:
    import SimpleITK as sitk
    from dicom_writer import write_series

    folder.mkdir(parents=True)
    (folder / "sag_t2.nii.gz").symlink_to(sample_case)
    write_series(sitk.ReadImage(str(sample_case)), folder / "dicom_sag")
    return folder


def test_folder_with_image_files_and_a_dicom_subfolder_is_refused_naming_both(tmp_path, sample_case, capsys):
    folder = _nifti_and_dicom_folder(sample_case, tmp_path / "study")
    with pytest.raises(InputError, match=r"sag_t2.nii.gz.*dicom_sag/"):
        expand_inputs([folder])
    code = main(["infer", str(folder), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == EXIT_FAILED and "sag_t2.nii.gz" in err and "dicom_sag/" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    # Named explicitly, both are cases; an earlier result folder beside the images is never an input.
    assert expand_inputs([folder / "sag_t2.nii.gz", folder / "dicom_sag"]) == [folder / "sag_t2.nii.gz",
                                                                                folder / "dicom_sag"]
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.nii.gz").symlink_to(sample_case)
    (tmp_path / "images" / "results").mkdir()
    (tmp_path / "images" / "results" / "report.json").write_text("{}")
    assert expand_inputs([tmp_path / "images"]) == [tmp_path / "images" / "a.nii.gz"]


@pytest.mark.parametrize("kind", ["file", "under_a_file", "foreign_folder", "read_only"])
def test_unusable_output_is_refused_before_the_run(tmp_path, sample_case, capsys, kind):
    target = {"file": tmp_path / "out.txt", "under_a_file": tmp_path / "out.txt" / "case",
              "foreign_folder": tmp_path / "docs", "read_only": Path("/proc/lvp-out")}[kind]
    if kind == "read_only" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    (tmp_path / "out.txt").write_text("not a folder")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    # No --semantic: were the output checked after the run, the model would be loaded first.
    code = main(["infer", str(sample_case), "-o", str(target), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_FAILED
    assert len(err) == 1 and err[0].startswith("lvp infer: error: the output"), err
    assert {"file": "is a file, not a folder", "under_a_file": "out.txt is a file",
            "foreign_folder": "not an LVP result (notes.txt)", "read_only": "cannot be written"}[kind] in err[0]
    assert "Errno" not in err[0]
    assert (tmp_path / "docs" / "notes.txt").read_text() == "mine"


# ---- issue 14 command line: warnings and numbering, summary.csv, --quiet, exit codes ----------


def test_single_case_prints_its_warnings_and_numbering(tmp_path, sample_case, capsys):
    from lvp.pipeline import MaskSegmenter

    out = tmp_path / "out"
    code = run(_args([sample_case], out, progress_json=False), segmenter=MaskSegmenter(
        sample_case.with_name("spider_sample_labels.nii.gz")))
    text = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    found = [lv["level"] for lv in report["levels"] if lv.get("status") != "not found"]
    missing = [lv["level"] for lv in report["levels"] if lv.get("status") == "not found"]
    shown = ", ".join(found) + (f"; not found: {', '.join(missing)}" if missing else "")
    assert code == EXIT_COMPLETE and f"complete ({shown})" in text
    assert report["warnings"], "the sample's labelling warns (no sacrum in the slab)"
    for w in report["warnings"]:
        assert f"warning: {w['code']}: {w['message']}" in text
    numbering = report.get("numbering")
    if numbering:  # the labelling's numbering check (report schema 1.1)
        assert ("numbering: confident" if numbering["confident"] else "numbering: NOT CONFIDENT") in text
        for reason in numbering["reasons"]:
            assert f"  - {reason}" in text


def test_report_notes_state_the_numbering():
    assert report_notes({"confident": True, "reasons": []}, []) == ["numbering: confident"]
    lines = report_notes({"confident": False, "reasons": ["no sacrum", "6 lumbar vertebrae"]},
                         [{"code": "c", "message": "m"}])
    assert lines == ["numbering: NOT CONFIDENT, check the level names:", "  - no sacrum", "  - 6 lumbar vertebrae",
                     "warning: c: m"]
    assert report_notes(None, []) == []


def test_batch_writes_summary_csv_one_row_per_level_injection_safe(tmp_path, sample_case, capsys):
    import csv

    from lvp.pipeline import MaskSegmenter

    (tmp_path / "in").mkdir()
    evil = tmp_path / "in" / "=HYPERLINK(1).nii.gz"
    evil.symlink_to(sample_case)
    plain = tmp_path / "in" / "plain.nii.gz"
    plain.symlink_to(sample_case)
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    out = tmp_path / "out"
    code = run(_args([evil, plain, broken], out, progress_json=False), segmenter=MaskSegmenter(
        sample_case.with_name("spider_sample_labels.nii.gz")))
    assert code == EXIT_FAILED
    rows = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
    report = json.loads((out / "plain" / "report.json").read_text())
    levels = report["levels"]
    assert [r["case"] for r in rows] == ["'=HYPERLINK(1)"] * len(levels) + ["plain"] * len(levels) + ["broken"]
    assert rows[-1]["status"] == "failed" and rows[-1]["level"] == "" and rows[-1]["error"]
    for row, lv in zip(rows[len(levels):], levels):
        assert row["level"] == lv["level"] and row["status"] == "complete"
        for name, grade in lv["grades"].items():
            assert row[name] == (grade["name"] or "")
            prob = row[f"{name}_probability"]
            assert (prob == "") if grade["confidence"] is None else float(prob) == pytest.approx(grade["confidence"])
        for name, m in lv["measurements"].items():
            assert row[name] == ("" if m["value"] is None else str(m["value"]))
    # No text cell of the file starts with a formula character.
    for row in rows:
        for value in row.values():
            if value and value[0] in "=+-@":
                float(value)  # only a number may start with a sign
    capsys.readouterr()


def test_quiet_prints_nothing_but_errors(tmp_path, sample_case, capsys):
    from lvp.pipeline import MaskSegmenter

    inputs = _links(sample_case, tmp_path / "in", 2)
    code = run(_args(inputs, tmp_path / "out", progress_json=False, quiet=True), segmenter=MaskSegmenter(
        sample_case.with_name("spider_sample_labels.nii.gz")))
    captured = capsys.readouterr()
    assert code == EXIT_COMPLETE and captured.out == "" and captured.err == ""
    assert (tmp_path / "out" / "summary.csv").is_file()


def test_exit_codes_are_documented_in_help_and_readme_and_used(tmp_path, sample_case, capsys, monkeypatch,
                                                                repo_root):
    import re

    import lvp.pipeline as pipeline
    from lvp.pipeline import MaskSegmenter

    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    text = capsys.readouterr().out
    documented = {int(c) for c in re.findall(r"^  (\d+) ", text, flags=re.M)}
    assert documented == {EXIT_COMPLETE, EXIT_FAILED, EXIT_PARTIAL, EXIT_INTERRUPTED, EXIT_SIGTERM}
    readme = (repo_root / "README.md").read_text()
    for c in documented:
        assert f"| {c} |" in readme, c
    mask = MaskSegmenter(sample_case.with_name("spider_sample_labels.nii.gz"))
    assert run(_args([sample_case], tmp_path / "ok"), segmenter=mask) == EXIT_COMPLETE
    monkeypatch.setattr(pipeline, "_measure", lambda volume, lab: 1 / 0)  # a later stage failing
    assert run(_args([sample_case], tmp_path / "partial"), segmenter=mask) == EXIT_PARTIAL
    assert run(_args([tmp_path / "missing.nii.gz"], tmp_path / "failed"), segmenter=mask) == EXIT_FAILED
    capsys.readouterr()
