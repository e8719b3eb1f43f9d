"""Calibration figures (O/E, slope, reliability PNG), out-of-fold shrinkage and measurement error."""

from __future__ import annotations

import numpy as np
import pytest
from test_validation_grades import synthetic_rows

from lvp.validation import calibration as C
from lvp.validation import grades as G
from lvp.validation.grade_calibration import measurement_error


def _rows(p, y, n_patients=10):
    return [{"case": f"p{i % n_patients}", "p_bulging": float(pi), "ref_bulging": int(yi)} for i, (pi, yi) in
            enumerate(zip(p, y))]


def test_oe_and_slope_detect_miscalibration():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    good = C.calibration_table(_rows(p, y), n_boot=50)["bulging_label"]
    assert good["oe"] == pytest.approx(1.0, abs=0.05) and good["slope"] == pytest.approx(1.0, abs=0.15)
    assert good["oe_ci95"][0] <= good["oe"] <= good["oe_ci95"][1] and good["oe_ci95"][0] < good["oe_ci95"][1]
    # Overconfident: the same outcomes with logits doubled -> slope about 0.5; over-predicting -> O/E < 1.
    logit = np.log(p / (1 - p))
    over = C.calibration_table(_rows(1 / (1 + np.exp(-2 * logit)), y), n_boot=50)["bulging_label"]
    assert over["slope"] == pytest.approx(0.5, abs=0.1)
    high = C.calibration_table(_rows(np.clip(p * 1.6, 0, 0.99), y), n_boot=50)["bulging_label"]
    assert high["oe"] < 0.75


def test_slope_not_estimable_with_one_positive():
    rows = _rows([0.1, 0.2, 0.3, 0.9], [0, 0, 0, 1], n_patients=2)
    fig = C.calibration_table(rows, n_boot=20)["bulging_label"]
    assert fig["slope"] is None and fig["oe"] is not None


def test_reliability_png(tmp_path):
    rng = np.random.default_rng(2)
    p = rng.uniform(size=200)
    rows = _rows(p, (rng.uniform(size=200) < p).astype(int))
    path = C.reliability_png({"reference masks": rows}, tmp_path / "r.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bins = C.reliability_bins(p, (p > 0.5).astype(int))
    assert [b[0] for b in bins] == sorted(b[0] for b in bins) and sum(b[2] for b in bins) == 200


def test_out_of_fold_slope_shrinks_an_overfitted_model():
    rows = synthetic_rows(n_patients=12)
    slope = G.out_of_fold_slope(rows, "narrowing", G.MODEL_FEATURES["narrowing"])
    assert slope is not None and 0.2 < slope < 3.0
    cal = G.fit_calibration(rows)
    model = cal["models"]["narrowing"]
    assert 0.2 <= model["shrinkage"] <= 1.0
    assert "shrinkage" not in cal["models"]["herniation"]  # too few positives for a stable slope


def test_measurement_error_pairs_discs_by_case_and_level():
    ref = synthetic_rows(n_patients=4)
    pred = []
    for r in ref:
        q = {**r, "segmentation": "totalspineseg", "measurements": dict(r["measurements"])}
        q["measurements"]["canal_ap_diameter_mm"] += 1.0 if r["ivd"] % 2 else -1.0
        pred.append(q)
    cal = G.fit_calibration(ref, shrink=False)
    err = measurement_error(ref, pred, cal)
    assert err["measurement_sd"]["canal_ap_diameter_mm"] == pytest.approx(1.0, abs=0.05)
    assert err["measurement_sd"]["disc_height_middle_mm"] == pytest.approx(0.0, abs=1e-9)
    assert "dural_sac_area_mm2" not in err["measurement_sd"]  # never measured: no SD
    assert err["pairs"]["canal_ap_diameter_mm"]["n"] == len(ref)


def test_measurement_error_builds_each_discs_measurements_once(monkeypatch):
    # One LevelMeasurements per row of a pair, for every measurement and model input (it was one
    # per row, quantity and getter). The real function runs; the wrapper only counts.
    from lvp.validation import grade_calibration as GC

    ref = synthetic_rows(n_patients=3)
    pred = [{**r, "measurements": dict(r["measurements"])} for r in ref]
    pred[0]["level"] = None  # an unpaired disc is not built at all
    calls = []
    real = GC.level_measurements
    monkeypatch.setattr(GC, "level_measurements", lambda row: calls.append(row) or real(row))
    err = GC.measurement_error(ref, pred, G.fit_calibration(ref, shrink=False))
    assert err["pairs"]["disc_height_middle_mm"]["n"] == len(ref) - 1
    assert len(calls) == 2 * (len(ref) - 1)
