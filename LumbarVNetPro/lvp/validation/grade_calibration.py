"""Refit the shipped grading calibration on the 24 training patients; check it on the 7 untouched ones.

``python -m lvp.validation.grade_calibration --data ../shared/data --pred PRED_DIR
--write-calibration lvp/grading_calibration.json --figures docs/figures -o result.json``

1. Measurements of every SPIDER disc from the reference masks (and, with ``--pred``, from the
   network's segmentations of the validation cases, ``lvp infer`` output folders).
2. Models fitted on the reference-mask discs of the patients **not** in
   :data:`lvp.validation.grades.VALIDATION_CASES` (24), each shrunk by its out-of-fold
   calibration slope among those 24 (:func:`lvp.validation.grades.fit_calibration`).
3. Measurement error: network minus reference, paired by disc, on the validation cases
   (:func:`measurement_error`); stored in the calibration and used to widen the probabilities.
4. On the 7 validation patients only: O/E and calibration slope per outcome with patient-bootstrap
   CIs, AUC / kappa, and reliability diagrams (PNG), for the reference masks and the network.

The validation patients are used for the measurement error SDs (a property of the network, which
never trained on them) and for nothing that is fitted to their grades.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

import numpy as np

from lvp.grading import calibration_feature
from lvp.validation.calibration import calibration_table, reliability_png
from lvp.validation.grades import (
    VALIDATION_CASES,
    collect_features,
    cross_validate,
    fit_calibration,
    level_measurements,
    predict_rows,
    summarise,
)

ERROR_MEASUREMENTS = ("posterior_displacement_mm", "canal_ap_diameter_mm", "disc_height_middle_mm",
                      "dural_sac_area_mm2")
ERROR_FEATURES = ("posterior_displacement_mm", "canal_ap_diameter_mm", "log_disc_signal_ratio", "height_vs_level")
MIN_PAIRS = 5


def measurement_error(ref_rows: list[dict], pred_rows: list[dict], cal: dict) -> dict:
    """Network-minus-reference differences per measurement and model input, paired by (case, disc).

    SD (what the grading uses), mean (bias) and 95 % limits of agreement; a quantity with fewer
    than :data:`MIN_PAIRS` pairs gets no SD.
    """
    pred = {(r["case"], r["ivd"]): r for r in pred_rows if r["level"]}
    # The (reference, network) measurements of each disc both name alike, built once for all quantities.
    paired = []
    for r in ref_rows:
        q = pred.get((r["case"], r["ivd"]))
        if q is not None and r["level"] and q["level"] == r["level"]:
            paired.append((level_measurements(r), level_measurements(q)))
    out: dict = {"measurement_sd": {}, "feature_sd": {}, "pairs": {}}
    for key, names, getter in (
        ("measurement_sd", ERROR_MEASUREMENTS, lambda m, n: m.value(n)),
        ("feature_sd", ERROR_FEATURES, lambda m, n: calibration_feature(m, n, cal)),
    ):
        for name in names:
            d = []
            for mr, mq in paired:
                a, b = getter(mr, name), getter(mq, name)
                if a is not None and b is not None:
                    d.append(b - a)
            if len(d) >= MIN_PAIRS:
                d = np.asarray(d, float)
                sd = float(d.std(ddof=1))
                out[key][name] = round(sd, 4)
                out["pairs"][name] = {"n": int(d.size), "mean": round(float(d.mean()), 4),
                                      "loa95": [round(float(d.mean() - 1.96 * sd), 3),
                                                round(float(d.mean() + 1.96 * sd), 3)]}
            else:
                out["pairs"][name] = {"n": len(d), "note": f"fewer than {MIN_PAIRS} pairs: no SD"}
    return out


def run(data: Path, pred_dir: Path | None, write_calibration: Path | None, figures: Path | None,
        n_boot: int = 1000) -> dict:
    """Fit on the 24, measure the error, evaluate on the 7; see the module docstring."""
    ref_rows = collect_features(data)
    val = set(VALIDATION_CASES)
    train = [r for r in ref_rows if r["case"] not in val]
    val_ref = [r for r in ref_rows if r["case"] in val]
    pred_rows = collect_features(data, pred_dir, cases=sorted(val)) if pred_dir else []
    cal = fit_calibration(train)
    if pred_rows:
        cal["measurement_error"] = measurement_error(val_ref, pred_rows, cal) | {
            "method": "network (lvp infer) minus reference-mask measurements, paired by disc, on the 7 validation "
            "patients the network never trained on; used to widen the probabilities (probit approximation)",
        }
    cv_rows, _ = cross_validate(train, k=5)
    graded = {"reference masks": predict_rows(val_ref, cal)}
    if pred_rows:
        graded["network"] = predict_rows(pred_rows, cal)
    result = {
        "created": _dt.date.today().isoformat(),
        "fitted_on": sorted({r["case"] for r in train}),
        "validated_on": sorted(val),
        "models": {k: {kk: v.get(kk) for kk in ("features", "shrinkage", "shrinkage_raw_slope", "n")}
                   for k, v in cal["models"].items()},
        "measurement_error": cal.get("measurement_error"),
        "cross_validation_24": summarise(cv_rows, n_boot),
        "validation": {name: {"calibration": calibration_table(rows, n_boot), "summary": summarise(rows, n_boot)}
                       for name, rows in graded.items()},
    }
    result["rows"] = graded
    if figures:
        result["figures"] = [str(reliability_png(
            graded, Path(figures) / "reliability_validation.png",
            "Reliability on the 7 SPIDER validation patients (models fitted on the other 24)"))]
    if write_calibration:
        n_pat = len({r["case"] for r in train})
        cal.update(
            fitted=_dt.date.today().isoformat(),
            data_short=f"SPIDER T2 SPACE grades ({n_pat} training patients, reference masks)",
            data=(f"{len(train)} radiologist-graded discs of the {n_pat} SPIDER T2 SPACE patients the network trained "
                  "on (shared data spider-t2-space/, van der Graaf et al. 2024, CC BY 4.0); measurements by LVP from "
                  "the reference masks; the 7 validation patients are never used for fitting"),
            regularisation="L2, C = 1 on standardised inputs; coefficients in raw units; linear predictor x "
            "out-of-fold calibration slope (shrinkage)",
            validation={name: v["calibration"] for name, v in result["validation"].items()},
            validation_patients=sorted(val),
        )
        Path(write_calibration).write_text(json.dumps(cal, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--pred", type=Path)
    ap.add_argument("--write-calibration", type=Path)
    ap.add_argument("--figures", type=Path)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("-o", "--out", type=Path)
    a = ap.parse_args(argv)
    result = run(a.data, a.pred, a.write_calibration, a.figures, a.n_boot)
    text = json.dumps(result, indent=1)
    if a.out:
        a.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
