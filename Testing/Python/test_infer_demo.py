"""``lvp demo``: the bundled sample is found and the summary names levels, grades and files."""

from __future__ import annotations

import pytest

from lvp.commands.demo import sample_path, summary_lines


def test_sample_is_found(sample_case, monkeypatch):
    monkeypatch.delenv("LVP_SAMPLE", raising=False)
    assert sample_path() == sample_case.resolve()


def test_summary_of_a_pipeline_report(sample_case, tmp_path):
    from lvp.pipeline import MaskSegmenter, run_inference

    report = run_inference(sample_case, tmp_path, segmenter=MaskSegmenter(
        sample_case.with_name("spider_sample_labels.nii.gz")))
    text = "\n".join(summary_lines(report, tmp_path))
    assert "COMPLETE" in text
    for lv in report["levels"]:
        assert lv["level"] in text
    assert str(tmp_path / "report.html") in text
    assert f"{report['timings_s']['total']:.2f} s" in text


def test_demo_end_to_end_with_the_model(tmp_path, capsys):
    from lvp import segmenter as seg
    from lvp.errors import ModelError

    try:
        seg.NetworkSegmenter(device="cpu")
    except ModelError as err:
        pytest.skip(f"no trained model here: {err}")
    from lvp.cli import main

    code = main(["demo", "-o", str(tmp_path / "demo"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code in (0, 3)
    assert (tmp_path / "demo" / "report.json").is_file() and "report.html" in out


def test_summary_names_grades_in_words_and_lists_what_was_withheld(tmp_path):
    report = {
        "input": {"path": "x.nii.gz"}, "model": {"name": "m", "version": "1"}, "status": "complete",
        "structures": [], "warnings": [], "timings_s": {"total": 0.5},
        "levels": [
            {"level": "L4-L5", "status": "found", "grades": {
                "pfirrmann": {"grade": 4, "name": "IV", "confidence": 0.61, "confidence_kind": "calibrated"},
                "canal_stenosis": {"grade": None, "status": "not assessable", "reason": "needs an axial series"},
            }},
            {"level": "L5-S", "status": "not found", "reason": "no disc segmented here", "grades": {}},
        ],
    }
    text = "\n".join(summary_lines(report, tmp_path))
    assert "Pfirrmann disc degeneration: IV (0.61, calibrated)" in text
    assert "not assessable: Central canal stenosis" in text
    assert "not found: no disc segmented here" in text
    assert "canal_stenosis" not in text and "pfirrmann" not in text  # no internal keys
