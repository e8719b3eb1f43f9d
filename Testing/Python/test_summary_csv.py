"""summary.csv of a batch: formula-safe cells, one row per level, no temporaries left by killed runs."""

from __future__ import annotations

import csv
import subprocess
import sys

from lvp.report.summary_csv import escape_cell, summary_rows, write_summary_csv


def test_text_cells_starting_with_a_formula_character_are_quoted():
    for text in ("=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"):
        assert escape_cell(text) == "'" + text
    assert escape_cell("L4-L5") == "L4-L5" and escape_cell("") == "" and escape_cell(None) == ""
    assert escape_cell(-1.5) == -1.5 and escape_cell(3) == 3  # numbers stay numbers
    assert escape_cell(True) == "yes" and escape_cell(False) == "no"


def _report(levels):
    return {"levels": levels, "warnings": [{"code": "w1", "message": "m"}],
            "numbering": {"confident": False, "reasons": ["r"]}}


def test_rows_per_level_and_a_row_for_a_case_without_levels(tmp_path):
    level = {"level": "L4-L5", "status": "found", "confidence": 0.9,
             "grades": {"canal_stenosis": {"grade": 2, "name": "moderate", "confidence": 0.7}},
             "measurements": {"canal_ap_diameter_mm": {"value": 9.1, "unit": "mm"}}}
    missing = {"level": "L5-S", "status": "not found", "confidence": None, "grades": {}, "measurements": {}}
    results = [{"input": "a.nii.gz", "output": "out/=evil", "status": "complete", "report": _report([level, missing])},
               {"input": "b.nii.gz", "output": "out/b", "status": "failed", "error": "-refused"}]
    header, rows = summary_rows(results)
    assert header[:5] == ["case", "status", "level", "level_status", "level_confidence"]
    assert len(rows) == 3 and rows[1]["level_status"] == "not found" and rows[2].get("level") is None
    path = write_summary_csv(results, tmp_path / "summary.csv")
    read = list(csv.DictReader(path.open(encoding="utf-8")))
    assert read[0]["case"] == "'=evil" and read[0]["canal_stenosis"] == "moderate"
    assert read[0]["canal_stenosis_grade"] == "2" and read[0]["canal_stenosis_probability"] == "0.7"
    assert read[0]["canal_ap_diameter_mm"] == "9.1" and read[0]["numbering_confident"] == "no"
    assert read[0]["warnings"] == "w1" and read[2]["error"] == "'-refused"


def test_temporaries_of_killed_runs_are_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = tmp_path / f".tmp-{proc.pid}-summary.csv"
    dead.write_text("half")
    write_summary_csv([], tmp_path / "summary.csv")
    assert not dead.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv"]
