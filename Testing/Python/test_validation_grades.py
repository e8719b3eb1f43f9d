import json

import pytest

from lvp.cli import main
from lvp.validation.grades import collect, summarise


@pytest.mark.shared_data
def test_grade_rows_and_summary_on_real_cases(shared_data):
    rows = collect(shared_data, limit=4)
    assert len(rows) >= 20
    assert {r["ref_pfirrmann"] for r in rows} <= {1, 2, 3, 4, 5}
    assert all(1 <= r["pfirrmann_grade"] <= 5 and 0 <= r["score_herniation"] <= 1 for r in rows)
    s = summarise(rows)
    assert s["n_discs"] == len(rows)
    auc = s["pfirrmann_ge4_auc"]
    assert 0.0 <= auc["value"] <= 1.0 and auc["ci95"][0] <= auc["value"] <= auc["ci95"][1]


@pytest.mark.shared_data
def test_validate_planes_command(shared_data, tmp_path, capsys):
    out = tmp_path / "planes.json"
    assert main(["validate", "planes", "--data", str(shared_data), "--limit", "1", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_discs"] >= 5 and result["angle_deg"]["median"] < 10
    assert "reference masks" in result["input_segmentation"]
