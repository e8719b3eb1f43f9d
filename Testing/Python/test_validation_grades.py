import json

import numpy as np
import pytest
import yaml

from lvp.cli import main
from lvp.labels import CANAL, CANAL_LABEL, DISC, VERTEBRA
from lvp.validation import grades as G
from lvp.validation.cases import tss_to_classes


def synthetic_rows(n_patients=12, seed=0):
    """Rows like collect_features': 6 discs per patient, grades driven by the model inputs."""
    rng = np.random.default_rng(seed)
    levels = ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S"]
    rows = []
    for p in range(n_patients):
        for i, lv in enumerate(levels[::-1]):
            sig = float(np.exp(rng.normal(-1.8, 0.5)))
            h = float(rng.normal(8.0, 1.5))
            disp = float(abs(rng.normal(2.0, 1.0)))
            ap = float(rng.normal(13.0, 2.0))
            pf = int(np.clip(np.round(3 - 2.5 * (np.log(sig) + 1.8) + rng.normal(0, 0.5)), 1, 5))
            rows.append(
                {
                    "case": f"spider{p}",
                    "ivd": i + 1,
                    "level": lv,
                    "segmentation": "reference",
                    "measurements": {
                        "disc_signal_ratio": sig,
                        "disc_height_middle_mm": h,
                        "posterior_displacement_mm": disp,
                        "herniation_base_width_mm": 10.0,
                        "canal_ap_diameter_mm": ap,
                    },
                    "ref": {
                        "herniation": int(disp > 3.2 or (p == 0 and i == 0)),
                        "bulging": int(sig < 0.16),
                        "narrowing": int(h < 7.0),
                        "pfirrmann": pf,
                    },
                }
            )
    return rows


def test_patient_folds_partition_the_patients():
    cases = [f"spider{i}" for i in range(31) for _ in range(7)]
    folds = G.patient_folds(cases, 5)
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(set(cases)) and len(flat) == len(set(flat)) == 31
    assert {len(f) for f in folds} <= {6, 7}
    assert G.patient_folds(cases, 5) == folds  # reproducible


def test_cross_validation_never_trains_on_a_test_patient(monkeypatch):
    rows = synthetic_rows()
    seen = []
    fit = G.fit_calibration

    def spy(train_rows):
        seen.append({r["case"] for r in train_rows})
        return fit(train_rows)

    monkeypatch.setattr(G, "fit_calibration", spy)
    graded, folds = G.cross_validate(rows)
    assert len(seen) == len(folds) == G.N_FOLDS
    for train_cases, fold in zip(seen, folds):
        assert not train_cases & set(fold["test"])
        assert train_cases == set(fold["train"])
    # Every disc graded once, by the fold that held its patient out.
    assert sorted((g["case"], g["ivd"]) for g in graded) == sorted((r["case"], r["ivd"]) for r in rows)
    fold_of = {c: j for j, f in enumerate(folds) for c in f["test"]}
    assert all(g["fold"] == fold_of[g["case"]] for g in graded)


def test_fitted_models_follow_the_data_and_are_applied():
    rows = synthetic_rows(20)
    cal = G.fit_calibration(rows)
    m = cal["models"]
    assert m["narrowing"]["coef"][0] < 0  # lower height -> narrowing
    assert m["bulging"]["coef"][0] < 0 and m["pfirrmann"]["coef"][0] < 0  # darker disc -> bulge, higher grade
    assert m["herniation"]["coef"][0] > 0  # more displacement -> herniation
    assert np.all(np.diff(m["pfirrmann"]["cutpoints"]) > 0)
    graded, _ = G.cross_validate(rows)
    s = G.summarise(graded, n_boot=50)
    assert s["narrowing_auc"]["value"] > 0.8 and s["pfirrmann_quadratic_kappa"]["value"] > 0.5
    lo, hi = s["bulging_auc"]["ci95_patient_bootstrap"]
    assert lo <= s["bulging_auc"]["value"] <= hi
    # Rows without measurements are kept and not assessable.
    missing = dict(rows[0], measurements={}, level=None)
    assert G.predict_rows([missing], cal)[0]["pfirrmann_grade"] is None


def test_validation_cases_are_the_networks(repo_root):
    cfg = yaml.safe_load((repo_root / "configs" / "train_lvp_vnet.yaml").read_text())
    assert tuple(cfg["validation"]) == G.VALIDATION_CASES


def test_totalspineseg_values_become_network_classes():
    a = np.array([0, 2, 31, 45, 50, 91, 100, 1])
    assert tss_to_classes(a).tolist() == [0, CANAL, VERTEBRA, VERTEBRA, VERTEBRA, DISC, DISC, 0]
    assert CANAL_LABEL == 2


@pytest.mark.shared_data
def test_grade_validation_on_real_cases(shared_data, tmp_path):
    out = tmp_path / "grades.json"
    cal = tmp_path / "cal.json"
    result = G.validate_grades(shared_data, out, limit=6, write_calibration=cal, n_boot=20)
    rows = result["rows"]["features"]
    assert len(rows) >= 30 and {r["ref"]["pfirrmann"] for r in rows} <= {1, 2, 3, 4, 5}
    cv = result["rows"]["cross_validation"]
    assert sorted((r["case"], r["ivd"]) for r in cv) == sorted((r["case"], r["ivd"]) for r in rows)
    assert all(r["pfirrmann_grade"] is None or 1 <= r["pfirrmann_grade"] <= 5 for r in cv)
    s = result["cross_validation"]["summary"]
    assert s["n_patients"] == 6 and "reference masks" in result["input_segmentation"]
    auc = s["pfirrmann_ge4_auc"]
    assert 0.0 <= auc["value"] <= 1.0 and auc["ci95_delong"][0] <= auc["value"] <= auc["ci95_delong"][1]
    written = json.loads(cal.read_text())
    assert written["schema"] == "lvp-grading-calibration" and "pfirrmann_quadratic_kappa" in written["cross_validation"]
    assert json.loads(out.read_text())["validation_split"]["summary"]["n_patients"] >= 1


@pytest.mark.shared_data
def test_validate_planes_command(shared_data, tmp_path, capsys):
    out = tmp_path / "planes.json"
    assert main(["validate", "planes", "--data", str(shared_data), "--limit", "1", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_discs"] >= 5 and result["angle_deg"]["median"] < 10
    assert "reference masks" in result["input_segmentation"]


def test_one_patient_bootstrap_behind_the_calibration_and_the_grade_cis():
    # lvp.validation.bootstrap: resamples whole patients; calibration._ci and grades._boot use it,
    # so the same statistic gets the same interval from either.
    from lvp.validation import calibration as C
    from lvp.validation.bootstrap import patient_bootstrap

    rows = synthetic_rows()
    cases = [r["case"] for r in rows]
    sizes = []
    patient_bootstrap(cases, lambda take: sizes.append(sorted(cases[i] for i in take)) or 0.0, 20, seed=3)
    per_case = {c: cases.count(c) for c in set(cases)}
    for drawn in sizes:  # every drawn patient brings all of its rows
        assert all(drawn.count(c) % per_case[c] == 0 for c in set(drawn))
        assert len(drawn) == len(rows)  # as many patients as there are (each with 6 discs here)
    y = np.array([r["ref"]["bulging"] for r in rows], float)
    p = np.full(y.size, 0.5)
    cal_ci = C._ci(p, y, cases, lambda _p, yy: float(yy.mean()), 200, seed=1)
    _, lo, hi = G._boot(rows, lambda rs: float(np.mean([r["ref"]["bulging"] for r in rs])), 200, seed=1)
    assert cal_ci == [round(lo, 3), round(hi, 3)] and lo < y.mean() < hi
