"""Calibration and validation of LVP's grades against the SPIDER radiologists' per-disc grades.

Pipeline per case: segmentation → labelling → measurements (:func:`collect_features`, one row per
graded disc, joined by level name: SPIDER ``IVD label`` 1 = most caudal disc = L5-S, 2 = L4-L5, ...). The
segmentation is the SPIDER **reference mask** unless a folder of predicted segmentations is given
(see :func:`prediction_path`), so by default the figures measure the measurement and grading
models, not the network.

Models (:data:`MODEL_FEATURES`, fitted by :func:`fit_calibration`): logistic regressions for
herniation, bulging and narrowing and a proportional-odds model for Pfirrmann, each on two named
measurements (raw or derived, see :func:`lvp.grading.calibration_feature`), L2-regularised
(C = 1 on standardised inputs). The height norm per level is part of the fit.

Honest estimates:

* **Patient-level cross-validation** (:func:`cross_validate`): patients are split into 5 folds
  (:func:`patient_folds`); each fold's discs are graded by models fitted on the other folds'
  patients only, and the figures use these out-of-fold grades.
* **Fixed validation split** (:func:`split_validation`): the 7 SPIDER cases the network never
  trained on (:data:`VALIDATION_CASES`, from ``configs/train_lvp_vnet.yaml``), graded by models
  fitted on the other 24 patients.

With predicted segmentations, models are always fitted on the reference-mask measurements of the
training patients and applied to the predicted-segmentation measurements of the test patients.

Figures: AUC with a 95 % DeLong CI (discs as units) and a 95 % bootstrap CI resampling patients
(the discs of one patient are not independent; the wider of the two is the one to quote),
Cohen's kappa for binary grades and quadratic-weighted kappa for Pfirrmann with the patient
bootstrap CI.

Over 400 lines on purpose: feature collection, fitting and the honest estimates share the
same split and bootstrap definitions; split apart, a figure could be computed on a different split
than the models it reports.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from lvp.errors import InputError
from lvp.grading import PREDICTS, GradingRules, calibration_feature, grade_level
from lvp.labels import SPINE_DISCS_FROM_BOTTOM
from lvp.measure.types import LevelMeasurements
from lvp.validation.bootstrap import patient_bootstrap, rounded
from lvp.validation.cases import load_spider_case, spider_case_ids, tss_to_classes

N_BOOT = 1000
N_FOLDS = 5
FOLD_SEED = 20261126
# configs/train_lvp_vnet.yaml ``validation`` (a test checks that they agree).
VALIDATION_CASES = ("spider5", "spider22", "spider50", "spider78", "spider127", "spider185", "spider234")
TARGETS = {
    "herniation": "Disc herniation",
    "bulging": "Disc bulging",
    "narrowing": "Disc narrowing",
    "pfirrmann": "Pfirrman grade",
}
MODEL_FEATURES = {
    "herniation": ("posterior_displacement_mm",),
    "bulging": ("log_disc_signal_ratio", "posterior_displacement_mm"),
    "narrowing": ("height_vs_level", "log_disc_signal_ratio"),
    "pfirrmann": ("log_disc_signal_ratio", "height_vs_level"),
}
LEVEL_NORM_MEASUREMENT = "disc_height_middle_mm"
LEVEL_NORM_MIN_DISCS = 5
C_REG = 1.0


# ---------------------------------------------------------------- features


def prediction_path(pred_dir: Path, case: str) -> tuple[Path, str] | None:
    """A predicted segmentation of ``case``: ``<case>_pred.nii.gz`` (network classes 0..3) or
    ``<case>/segmentation.nii.gz`` (``lvp infer`` output, TotalSpineSeg values), else None.
    """
    classes = Path(pred_dir) / f"{case}_pred.nii.gz"
    if classes.is_file():
        return classes, "classes"
    tss = Path(pred_dir) / case / "segmentation.nii.gz"
    if tss.is_file():
        return tss, "totalspineseg"
    return None


def graded_level_name(ivd: int) -> str:
    """Level name of SPIDER's ``IVD label`` (1 = most caudal disc = L5-S, 2 = L4-L5, ...), as
    :mod:`lvp.labelling` names discs counted from the bottom.
    """
    if not 1 <= ivd <= len(SPINE_DISCS_FROM_BOTTOM):
        raise ValueError(f"IVD label {ivd} is no disc of a five-lumbar spine (1 = L5-S ... 17 = T1-T2)")
    return SPINE_DISCS_FROM_BOTTOM[ivd - 1]


def collect_features(
    data: Path, pred_dir: Path | None = None, limit: int | None = None, cases: list[str] | None = None
) -> list[dict]:
    """One row per graded disc: case, IVD number, level, every measurement and the reference grades.

    With ``pred_dir`` only the cases with a prediction are read. A graded disc with no matching
    segmented disc keeps ``level`` None and no measurements (it is then not assessable).
    """
    from lvp.labelling import label_levels
    from lvp.measure import measure_levels

    ids = cases or spider_case_ids(data)
    rows = []
    for case in ids[:limit]:
        labels_path, kind = None, "reference"
        if pred_dir is not None:
            found = prediction_path(pred_dir, case)
            if found is None:
                continue
            labels_path, kind = found
        sc = load_spider_case(data, case, labels_path)
        semantic = tss_to_classes(sc.labels) if kind == "totalspineseg" else sc.labels
        lab = label_levels(semantic, sc.image)
        levels = measure_levels(sc.image, lab)
        # Joined by level name (IVD label k = the k-th disc from the bottom, L5-S first), not by
        # the order of the segmented discs: a disc the segmentation missed (``missing_disc``)
        # must leave that grade unassessable, not shift every grade above it by one level.
        named = {d.name for d in lab.discs}
        for i, ref in enumerate(sc.grades):
            level = graded_level_name(i + 1)
            level = level if level in named else None
            m = levels.get(level) if level else None
            rows.append(
                {
                    "case": case,
                    "ivd": i + 1,
                    "level": level,
                    "segmentation": kind,
                    "measurements": {} if m is None else {k: round(v.value, 5) for k, v in m.items.items()},
                    # What the grading needs beyond the values (withholding rules, lvp.grading).
                    "cut_by_fov": bool(getattr(m, "cut_by_fov", False)),
                    "canal_visualised": getattr(m, "canal_visualised", None),
                    "section": dict(getattr(m, "section", {}) or {}),
                    "ref": {k: int(ref[col]) for k, col in TARGETS.items()},
                }
            )
    return rows


def level_measurements(row: dict) -> LevelMeasurements:
    """The row's measurements as a :class:`LevelMeasurements` (to grade with the shipped code)."""
    m = LevelMeasurements(row["level"] or "unknown", 0, np.zeros(3))
    for k, v in row["measurements"].items():
        m.add(k, v, "")
    m.cut_by_fov = bool(row.get("cut_by_fov", False))
    m.canal_visualised = row.get("canal_visualised")
    m.section = dict(row.get("section") or {})
    return m


# ---------------------------------------------------------------- fitting


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    return (x - mu) / sd, mu, sd


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = C_REG) -> tuple[float, list[float]]:
    """L2 logistic regression on standardised inputs; returns the raw-unit intercept and coefficients."""
    y = np.asarray(y, int)
    if len(set(y.tolist())) < 2:  # e.g. a small training fold without a positive disc: constant model
        prevalence = (y.sum() + 0.5) / (y.size + 1.0)
        return float(np.log(prevalence / (1 - prevalence))), [0.0] * np.shape(x)[1]
    xs, mu, sd = _standardise(np.asarray(x, float))
    clf = LogisticRegression(C=c).fit(xs, y)
    w = clf.coef_[0] / sd
    return float(clf.intercept_[0] - np.dot(w, mu)), [float(v) for v in w]


def fit_ordinal(x: np.ndarray, y: np.ndarray, n_classes: int = 5, first: int = 1, c: float = C_REG):
    """Proportional-odds model P(y >= k) = sigmoid(x.w - c_k), k = first+1..; L2 on standardised w.

    Returns the raw-unit coefficients and increasing cut-points.
    """
    xs, mu, sd = _standardise(np.asarray(x, float))
    yi = np.asarray(y, int) - first
    p = xs.shape[1]
    k = n_classes - 1

    def unpack(theta):
        w = theta[:p]
        cuts = theta[p] + np.concatenate([[0.0], np.cumsum(np.exp(theta[p + 1 :]))])
        return w, cuts

    def nll(theta):
        w, cuts = unpack(theta)
        eta = xs @ w
        at_least = 1.0 / (1.0 + np.exp(-(eta[:, None] - cuts[None, :])))  # (n, k)
        cum = np.hstack([np.ones((len(yi), 1)), at_least, np.zeros((len(yi), 1))])
        probs = cum[np.arange(len(yi)), yi] - cum[np.arange(len(yi)), yi + 1]
        return -np.sum(np.log(np.clip(probs, 1e-12, None))) + 0.5 * np.dot(w, w) / c

    start = np.concatenate([np.zeros(p), [-1.5], np.zeros(k - 1)])
    res = minimize(nll, start, method="L-BFGS-B")
    w, cuts = unpack(res.x)
    w_raw = w / sd
    return [float(v) for v in w_raw], [float(v) for v in cuts + np.dot(w_raw, mu)]


def _level_norms(rows: list[dict]) -> dict:
    by: dict[str, list[float]] = {}
    for r in rows:
        v = r["measurements"].get(LEVEL_NORM_MEASUREMENT)
        if v is not None and r["level"]:
            by.setdefault(r["level"], []).append(v)
    every = [v for vs in by.values() for v in vs]
    return {
        "measurement": LEVEL_NORM_MEASUREMENT,
        "by_level": {k: round(float(np.median(v)), 4) for k, v in by.items() if len(v) >= LEVEL_NORM_MIN_DISCS},
        "default": round(float(np.median(every)), 4) if every else None,
        "note": f"median per level over the calibration discs (levels with >= {LEVEL_NORM_MIN_DISCS} discs; "
        "otherwise the median of all discs)",
    }


def _design(rows: list[dict], features: tuple[str, ...], cal: dict) -> tuple[np.ndarray, list[int]]:
    xs, keep = [], []
    for i, r in enumerate(rows):
        if not r["level"]:
            continue
        m = level_measurements(r)
        vals = [calibration_feature(m, f, cal) for f in features]
        if all(v is not None for v in vals):
            xs.append(vals)
            keep.append(i)
    return np.asarray(xs, float).reshape(len(xs), len(features)), keep


def _fit_one(rows: list[dict], name: str, feats: tuple[str, ...], cal: dict) -> dict:
    x, keep = _design(rows, feats, cal)
    y = np.array([rows[i]["ref"][name] for i in keep])
    model = {"features": list(feats), "target": f"SPIDER '{TARGETS[name]}'", "n": len(keep)}
    if name == "pfirrmann":
        coef, cuts = fit_ordinal(x, y)
        model.update(kind="ordinal", coef=coef, cutpoints=cuts, classes=[1, 2, 3, 4, 5])
    else:
        b0, coef = fit_logistic(x, y)
        model.update(kind="logistic", intercept=b0, coef=coef, n_positive=int(y.sum()))
    return model


def _linear(model: dict, x: np.ndarray) -> np.ndarray:
    """Linear predictors: (n,) for a logistic model, (n, K) = eta - c_k for an ordinal one."""
    eta = x @ np.asarray(model["coef"], float)
    if model["kind"] == "ordinal":
        return eta[:, None] - np.asarray(model["cutpoints"], float)[None, :]
    return model["intercept"] + eta


def out_of_fold_slope(rows: list[dict], name: str, feats: tuple[str, ...], k: int = N_FOLDS) -> float | None:
    """Calibration slope of a model's out-of-fold linear predictor among ``rows`` (patients as folds).

    A slope below 1 means the fitted model is overconfident on new patients; the shipped model's
    linear predictor is multiplied by it (uniform shrinkage). For the ordinal model the K
    cumulative indicators (y >= II .. V) are stacked.
    """
    etas, ys = [], []
    for test in patient_folds([r["case"] for r in rows if r["level"]], k):
        ts = set(test)
        train = [r for r in rows if r["case"] not in ts]
        held = [r for r in rows if r["case"] in ts]
        cal = {"level_norms": _level_norms(train)}
        model = _fit_one(train, name, feats, cal)
        x, keep = _design(held, feats, cal)
        if not keep:
            continue
        y = np.array([held[i]["ref"][name] for i in keep])
        lin = _linear(model, x)
        if model["kind"] == "ordinal":
            etas.append(lin.ravel())
            ys.append((y[:, None] >= np.arange(2, 2 + lin.shape[1])[None, :]).astype(int).ravel())
        else:
            etas.append(lin)
            ys.append(y)
    if not etas:
        return None
    eta, y = np.concatenate(etas), np.concatenate(ys)
    if len(set(y.tolist())) < 2:
        return None
    clf = LogisticRegression(C=1e6).fit(eta[:, None], y)
    return float(clf.coef_[0][0])


def fit_calibration(rows: list[dict], shrink: bool = True) -> dict:
    """Fit every model on ``rows`` (from :func:`collect_features`); the calibration dict of lvp.grading.

    ``shrink``: multiply each model's linear predictor by its out-of-fold calibration slope among
    these rows (:func:`out_of_fold_slope`, clipped to 0.2-1; not for the herniation model, whose
    few positives give no stable slope).
    """
    cal: dict = {"schema": "lvp-grading-calibration", "version": 2, "level_norms": _level_norms(rows), "models": {}}
    for name, feats in MODEL_FEATURES.items():
        model = _fit_one(rows, name, feats, cal)
        if shrink and name != "herniation":
            slope = out_of_fold_slope(rows, name, feats)
            if slope is not None:
                model["shrinkage"] = round(float(np.clip(slope, 0.2, 1.0)), 4)
                model["shrinkage_raw_slope"] = round(slope, 4)
        cal["models"][name] = model
    return cal


# ---------------------------------------------------------------- grading and validation


def predict_rows(rows: list[dict], cal: dict | None) -> list[dict]:
    """Grade every row with :func:`lvp.grading.grade_level` (``cal`` None = uncalibrated rules).

    Scores and grades are None where the grade is not assessable. The SPIDER-label probabilities
    (``p_herniation``, ``p_bulging``) come from the herniation grade's ``predicted`` list, and
    their calls (``herniation_call``, ``bulging_call``) are P > 0.5. Rows measured on a predicted
    segmentation are graded with the measured measurement error, reference-mask rows without.
    """
    rules = GradingRules(calibration="")
    out = []
    for r in rows:
        base = {"case": r["case"], "ivd": r["ivd"], "level": r["level"], **{f"ref_{k}": v for k, v in r["ref"].items()}}
        if not r["level"] or not r["measurements"]:
            out.append(base | dict.fromkeys(_SCORES))
            continue
        error = r.get("segmentation", "reference") != "reference"
        g = grade_level(level_measurements(r), rules, cal if cal is not None else "", error=error)
        h, n, p = g["herniation"], g["narrowing"], g["pfirrmann"]
        pp = p.probabilities
        named = {q["name"]: q["value"] for q in h.predicted}
        p_h, p_b = named.get(PREDICTS["herniation"]), named.get(PREDICTS["bulging"])
        base.update(
            herniation_grade=h.grade,
            p_herniation=p_h,
            p_bulging=p_b,
            herniation_call=None if p_h is None else int(p_h > 0.5),
            bulging_call=None if p_b is None else int(p_b > 0.5),
            narrowing_grade=n.grade,
            p_narrowing=None if n.grade is None else n.probabilities[1],
            pfirrmann_grade=p.grade,
            p_pfirrmann_ge4=None if p.grade is None else pp[3] + pp[4],
            p_pfirrmann_ge2=None if p.grade is None else 1.0 - pp[0],
            p_pfirrmann_ge3=None if p.grade is None else pp[2] + pp[3] + pp[4],
            p_pfirrmann_ge5=None if p.grade is None else pp[4],
            pfirrmann_expected=None if p.grade is None else float(np.dot(pp, np.arange(1, 6))),
        )
        out.append(base)
    return out


_SCORES = (
    "herniation_grade",
    "p_herniation",
    "p_bulging",
    "herniation_call",
    "bulging_call",
    "narrowing_grade",
    "p_narrowing",
    "pfirrmann_grade",
    "p_pfirrmann_ge4",
    "p_pfirrmann_ge2",
    "p_pfirrmann_ge3",
    "p_pfirrmann_ge5",
    "pfirrmann_expected",
)


def patient_folds(cases: list[str], k: int = N_FOLDS, seed: int = FOLD_SEED) -> list[list[str]]:
    """Split patients (not discs) into ``k`` test folds of near-equal size, shuffled with ``seed``."""
    unique = sorted(set(cases))
    order = np.random.default_rng(seed).permutation(len(unique))
    k = max(1, min(k, len(unique)))
    return [sorted(unique[i] for i in order[j::k]) for j in range(k)]


def cross_validate(
    fit_rows: list[dict], eval_rows: list[dict] | None = None, k: int = N_FOLDS, seed: int = FOLD_SEED
) -> tuple[list[dict], list[dict]]:
    """Out-of-fold grades: each fold's patients graded by models fitted on the other patients only.

    ``eval_rows`` (default ``fit_rows``) are the rows graded, e.g. predicted-segmentation
    measurements, while the models are fitted on ``fit_rows``. Returns the graded rows (with
    their ``fold``) and the folds (test and train patients).
    """
    eval_rows = fit_rows if eval_rows is None else eval_rows
    folds = patient_folds([r["case"] for r in eval_rows], k, seed)
    graded, record = [], []
    for j, test in enumerate(folds):
        test_set = set(test)
        train = [r for r in fit_rows if r["case"] not in test_set]
        train_cases = sorted({r["case"] for r in train})
        if test_set & set(train_cases):
            raise AssertionError("a patient is in both the training and the test fold")
        cal = fit_calibration(train)
        graded += [dict(g, fold=j) for g in predict_rows([r for r in eval_rows if r["case"] in test_set], cal)]
        record.append({"test": test, "train": train_cases})
    return graded, record


def split_validation(fit_rows: list[dict], eval_rows: list[dict] | None = None) -> list[dict]:
    """Grades of the network's validation patients by models fitted on the other patients."""
    eval_rows = fit_rows if eval_rows is None else eval_rows
    val = set(VALIDATION_CASES)
    cal = fit_calibration([r for r in fit_rows if r["case"] not in val])
    return predict_rows([r for r in eval_rows if r["case"] in val], cal)


def _boot(rows: list[dict], stat, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Statistic on all rows and its 95 % CI from resampling patients."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            point = stat(rows)
    except ValueError:  # e.g. no positive case among these rows
        return float("nan"), float("nan"), float("nan")
    vals = patient_bootstrap([r["case"] for r in rows], lambda take: stat([rows[i] for i in take]), n_boot, seed)
    lo, hi = np.percentile(vals, [2.5, 97.5]) if vals else (np.nan, np.nan)
    return float(point), float(lo), float(hi)


def _auc_fig(rows: list[dict], ref: str, score: str, positive=lambda v: v, n_boot: int = N_BOOT) -> dict:
    from lvp.study.roc import auc_ci

    rs = [r for r in rows if r[score] is not None]
    y = np.array([int(positive(r[ref])) for r in rs])
    out: dict = {"n": len(rs), "n_positive": int(y.sum()), "n_patients": len({r["case"] for r in rs})}
    if y.size == 0 or y.all() or not y.any():
        return out | {"value": None, "ci95_delong": None, "ci95_patient_bootstrap": None}

    def stat(sample):
        t = [int(positive(r[ref])) for r in sample]
        if len(set(t)) < 2:
            raise ValueError("one class only")
        return roc_auc_score(t, [r[score] for r in sample])

    few = min(int(y.sum()), int((1 - y).sum())) < 2  # no variance estimate from a single unit
    if few:
        return out | {"value": rounded(roc_auc_score(y, [r[score] for r in rs])), "ci95_delong": None,
                      "ci95_patient_bootstrap": None}
    a = auc_ci(y, [r[score] for r in rs])
    v, lo, hi = _boot(rs, stat, n_boot)
    return out | {
        "value": rounded(a.auc),
        "ci95_delong": None if few else [rounded(a.ci_low), rounded(a.ci_high)],
        "ci95_patient_bootstrap": None if few else [rounded(lo), rounded(hi)],
    }


def _kappa_fig(rows: list[dict], ref: str, grade: str, pred, weights=None, labels=(0, 1), n_boot: int = N_BOOT):
    rs = [r for r in rows if r[grade] is not None]

    def stat(sample):
        return cohen_kappa_score(
            [r[ref] for r in sample], [pred(r[grade]) for r in sample], weights=weights, labels=list(labels)
        )

    v, lo, hi = _boot(rs, stat, n_boot) if rs else (np.nan, np.nan, np.nan)
    agree = float(np.mean([r[ref] == pred(r[grade]) for r in rs])) if rs else np.nan
    return {"n": len(rs), "value": rounded(v), "ci95_patient_bootstrap": [rounded(lo), rounded(hi)],
            "agreement": rounded(agree)}


def summarise(rows: list[dict], n_boot: int = N_BOOT) -> dict:
    """AUCs (DeLong and patient-bootstrap CIs) and kappas (patient-bootstrap CIs) of graded rows."""
    graded = [r for r in rows if r["pfirrmann_grade"] is not None or r["p_bulging"] is not None]
    return {
        "n_discs_graded_by_radiologists": len(rows),
        "n_discs_assessable": len(graded),
        "n_patients": len({r["case"] for r in rows}),
        "prevalence": {k: int(sum(r[f"ref_{k}"] for r in rows)) for k in ("herniation", "bulging", "narrowing")},
        "herniation_auc": _auc_fig(rows, "ref_herniation", "p_herniation", n_boot=n_boot),
        "herniation_kappa": _kappa_fig(rows, "ref_herniation", "herniation_call", int, n_boot=n_boot),
        "bulging_auc": _auc_fig(rows, "ref_bulging", "p_bulging", n_boot=n_boot),
        "bulging_kappa": _kappa_fig(rows, "ref_bulging", "bulging_call", int, n_boot=n_boot),
        "narrowing_auc": _auc_fig(rows, "ref_narrowing", "p_narrowing", n_boot=n_boot),
        "narrowing_kappa": _kappa_fig(rows, "ref_narrowing", "narrowing_grade", int, n_boot=n_boot),
        "pfirrmann_ge4_auc": _auc_fig(rows, "ref_pfirrmann", "p_pfirrmann_ge4", lambda v: v >= 4, n_boot=n_boot),
        "pfirrmann_ge4_kappa": _kappa_fig(
            [dict(r, ref_ge4=int(r["ref_pfirrmann"] >= 4)) for r in rows],
            "ref_ge4",
            "pfirrmann_grade",
            lambda g: int(g >= 4),
            n_boot=n_boot,
        ),
        "pfirrmann_quadratic_kappa": _kappa_fig(
            rows, "ref_pfirrmann", "pfirrmann_grade", int, "quadratic", (1, 2, 3, 4, 5), n_boot=n_boot
        ),
    }


def validate_grades(
    data: Path,
    out: Path | None = None,
    pred_dir: Path | None = None,
    limit: int | None = None,
    write_calibration: Path | None = None,
    n_boot: int = N_BOOT,
) -> dict:
    """Cross-validated and split-validated grade figures; JSON (summary and per-disc rows) to ``out``.

    ``write_calibration``: also fit the models on the reference-mask discs of the patients not in
    :data:`VALIDATION_CASES` and write the calibration file (with the cross-validated figures)
    there; the shipped file is written by :mod:`lvp.validation.grade_calibration`, which adds the
    measured network-vs-reference error and the validation figures.
    """
    data = Path(data)
    ref_rows = collect_features(data, limit=limit)
    if not ref_rows:
        raise InputError(f"no graded SPIDER case under {data}")
    eval_rows = ref_rows
    if pred_dir is not None:
        eval_rows = collect_features(data, Path(pred_dir), limit=limit)
        if not eval_rows:
            raise InputError(f"no <case>_pred.nii.gz or <case>/segmentation.nii.gz under {pred_dir}")
    cv_rows, folds = cross_validate(ref_rows, eval_rows)
    split_rows = split_validation(ref_rows, eval_rows)
    result = {
        "created": _dt.date.today().isoformat(),
        "input_segmentation": (
            f"predicted segmentations from {pred_dir} (models fitted on reference-mask measurements of the "
            "training patients)"
            if pred_dir
            else "reference masks (measures labelling, measurements and grading models, not the network)"
        ),
        "models": {k: list(v) for k, v in MODEL_FEATURES.items()},
        "cross_validation": {
            "method": f"{len(folds)}-fold, grouped by patient (seed {FOLD_SEED}); out-of-fold grades only",
            "summary": summarise(cv_rows, n_boot),
            "folds": folds,
        },
        "validation_split": {
            "method": "models fitted on the other patients; graded: the network's fixed validation cases "
            f"({', '.join(VALIDATION_CASES)})",
            "summary": summarise(split_rows, n_boot) if split_rows else None,
        },
        "uncalibrated_rules_in_sample": {
            "method": "the literature / a-priori rules (GradingRules with calibration ''), no fitting; Pfirrmann "
            "thresholds were set by eye on these same cases",
            "summary": summarise(predict_rows(eval_rows, None), n_boot),
        },
        "rows": {"features": eval_rows, "cross_validation": cv_rows, "validation_split": split_rows},
    }
    if write_calibration:
        # Never fitted on the network's validation patients: they are the untouched check (issue 15).
        # The shipped file also carries the measured measurement error: write it with
        # ``python -m lvp.validation.grade_calibration --pred`` (lvp.validation.grade_calibration).
        fit_rows = [r for r in ref_rows if r["case"] not in set(VALIDATION_CASES)] or ref_rows
        cal = fit_calibration(fit_rows)
        cal["validation_patients"] = sorted(set(VALIDATION_CASES))
        n_pat = len({r["case"] for r in fit_rows})
        cal.update(
            fitted=_dt.date.today().isoformat(),
            data_short=f"SPIDER T2 SPACE grades ({n_pat} training patients, reference masks)",
            data=(
                f"{len(fit_rows)} radiologist-graded discs of {n_pat} SPIDER T2 SPACE patients "
                "(shared data spider-t2-space/, van der Graaf et al. 2024, CC BY 4.0); measurements by LVP from "
                "the reference masks; discs joined to grades by level name "
                "(IVD label 1 = L5-S, counted from the bottom)"
            ),
            regularisation=f"L2, C = {C_REG} on standardised inputs; coefficients in raw units",
            cross_validation={
                "method": result["cross_validation"]["method"],
                **{
                    k: {kk: v[kk] for kk in ("value", "ci95_patient_bootstrap", "n") if kk in v}
                    for k, v in result["cross_validation"]["summary"].items()
                    if isinstance(v, dict) and "value" in v
                },
            },
        )
        Path(write_calibration).write_text(json.dumps(cal, indent=1) + "\n")
        result["calibration_written"] = str(write_calibration)
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result
