"""Analysis of a reader study from the exported reads (:func:`lvp.readingdb.admin.export_reads`).

Units of analysis are (case, level) pairs with a reference-standard grade; the truth is the
reference grade at or above the pathology's clinical threshold (:mod:`lvp.readingdb.scales`) and
the ROC score is the reader's ordinal grade. Per pathology and arm:

* AUC per reader with DeLong 95 % CI, the paired DeLong test manual vs AI-assisted per reader, and the
  reader-averaged AUC compared between arms by Obuchowski-Rockette with Hillis df (random readers
  and cases; units read by every reader in both arms);
* sensitivity / specificity at the threshold (all reads pooled, Wilson CI);
* linear and quadratic weighted kappa against the reference, exact accuracy per level;
* Fleiss kappa between readers and ICC(2,1) of measurements;
* the AI alone (its grades) as a separate row where AI results exist;
* reading time per arm (the original read; corrections are not reading time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from lvp.readingdb.scales import ARMS, scale_for
from lvp.study.agreement import (
    accuracy,
    fleiss_kappa,
    icc,
    ratings_to_counts,
    sensitivity_specificity,
    weighted_kappa,
)
from lvp.study.mrmc import obuchowski_rockette
from lvp.study.roc import auc_ci, delong_paired_test, roc_points


def _both_classes(truth: np.ndarray) -> bool:
    return bool(truth.any() and (~truth).any())


def _auc_dict(truth: np.ndarray, score: np.ndarray) -> dict:
    a = auc_ci(truth, score)
    return {"auc": a.auc, "se": a.se, "ci_low": a.ci_low, "ci_high": a.ci_high, "n_pos": a.n_pos,
            "n_neg": a.n_neg}


def _pathology(rows: list[dict], pathology: str) -> dict:
    scale = scale_for(pathology)
    grades: dict[str, dict[str, dict[tuple, int]]] = {arm: defaultdict(dict) for arm in ARMS}
    meas: dict[str, dict[str, dict[tuple, float]]] = {arm: defaultdict(dict) for arm in ARMS}
    ref: dict[tuple, int] = {}
    ai: dict[tuple, int] = {}
    for r in rows:
        unit = (r["case_key"], r["level"])
        if r["reference_grade"] is None:
            continue
        ref[unit] = int(r["reference_grade"])
        grades[r["arm"]][r["reader"]][unit] = int(r["reader_grade"])
        if r.get("measurement") is not None:
            meas[r["arm"]][r["reader"]][unit] = float(r["measurement"])
        if r.get("ai_grade") is not None:
            ai[unit] = int(r["ai_grade"])
    out: dict = {"scale": list(scale.grades), "positive_at": scale.positive_at, "units": len(ref),
                 "arms": {}, "paired_delong": {}, "mrmc": None, "ai_standalone": None, "roc": {}}
    readers = sorted(set(grades["manual"]) | set(grades["ai_assisted"]))

    for arm in ARMS:
        reads = [(u, g) for rdr in grades[arm].values() for u, g in rdr.items()]
        if not reads:
            continue
        ref_g = [ref[u] for u, _ in reads]
        read_g = [g for _, g in reads]
        ss = sensitivity_specificity([scale.is_positive(g) for g in ref_g], [scale.is_positive(g) for g in read_g])
        arm_out = {
            "reads": len(reads),
            "sensitivity": ss.sensitivity, "sens_ci": ss.sens_ci,
            "specificity": ss.specificity, "spec_ci": ss.spec_ci,
            "kappa_linear": weighted_kappa(ref_g, read_g, scale.grades, "linear"),
            "kappa_quadratic": weighted_kappa(ref_g, read_g, scale.grades, "quadratic"),
            "accuracy": accuracy(ref_g, read_g),
            "accuracy_per_level": {},
            "per_reader_auc": {},
            "fleiss_kappa": None,
            "icc_measurement": None,
        }
        by_level = defaultdict(list)
        for u, g in reads:
            by_level[u[1]].append((ref[u], g))
        arm_out["accuracy_per_level"] = {
            lvl: {"accuracy": accuracy(*zip(*pairs)), "n": len(pairs)} for lvl, pairs in sorted(by_level.items())
        }
        out["roc"][arm] = {}
        for rdr in readers:
            units = sorted(grades[arm].get(rdr, {}))
            t = np.array([scale.is_positive(ref[u]) for u in units])
            if len(units) and _both_classes(t):
                s = np.array([grades[arm][rdr][u] for u in units], dtype=float)
                arm_out["per_reader_auc"][rdr] = _auc_dict(t, s)
                fpr, tpr = roc_points(t, s)
                out["roc"][arm][rdr] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        # Inter-observer agreement: units graded by every reader of this arm.
        arm_readers = sorted(grades[arm])
        common = sorted(set.intersection(*(set(grades[arm][r]) for r in arm_readers))) if arm_readers else []
        if len(arm_readers) >= 2 and common:
            mat = np.array([[grades[arm][r][u] for r in arm_readers] for u in common])
            arm_out["fleiss_kappa"] = fleiss_kappa(ratings_to_counts(mat, scale.grades))
        m_readers = sorted(meas[arm])
        m_common = sorted(set.intersection(*(set(meas[arm][r]) for r in m_readers))) if m_readers else []
        if len(m_readers) >= 2 and len(m_common) >= 2:
            mat = np.array([[meas[arm][r][u] for r in m_readers] for u in m_common])
            arm_out["icc_measurement"] = {"icc2_1": icc(mat).icc2, "units": len(m_common),
                                          "readers": len(m_readers)}
        out["arms"][arm] = arm_out

    for rdr in readers:
        units = sorted(set(grades["manual"].get(rdr, {})) & set(grades["ai_assisted"].get(rdr, {})))
        t = np.array([scale.is_positive(ref[u]) for u in units])
        if units and _both_classes(t):
            test = delong_paired_test(t, [grades["ai_assisted"][rdr][u] for u in units],
                                      [grades["manual"][rdr][u] for u in units])
            out["paired_delong"][rdr] = {"auc_ai_assisted": test.auc1, "auc_manual": test.auc2,
                                         "diff": test.diff, "se": test.se, "z": test.z,
                                         "p_value": test.p_value, "ci_low": test.ci_low,
                                         "ci_high": test.ci_high, "units": len(units)}

    # MRMC: units read by every reader in both arms (factorial design).
    full = [set(grades[arm].get(r, {})) for arm in ARMS for r in readers]
    units = sorted(set.intersection(*full)) if full and len(readers) >= 2 else []
    t = np.array([scale.is_positive(ref[u]) for u in units])
    if units and _both_classes(t):
        x = np.array([[[grades[arm][r][u] for u in units] for r in readers] for arm in ARMS], dtype=float)
        res = obuchowski_rockette(t, x, modalities=list(ARMS), readers=readers)
        out["mrmc"] = {"units": len(units), "readers": len(readers), "means": res.means,
                       "f": res.f_stat, "df1": res.df1, "df2": res.df2, "p_value": res.p_value,
                       "difference": res.differences[0], "single": res.single,
                       "error_var": res.error_var, "cov1": res.cov1, "cov2": res.cov2, "cov3": res.cov3,
                       "var_reader": res.var_reader, "var_treatment_reader": res.var_treatment_reader}
    ai_units = sorted(set(ai) & set(ref))
    t = np.array([scale.is_positive(ref[u]) for u in ai_units])
    if ai_units and _both_classes(t):
        s = np.array([ai[u] for u in ai_units], dtype=float)
        ss = sensitivity_specificity(t, np.array([scale.is_positive(ai[u]) for u in ai_units]))
        out["ai_standalone"] = {**_auc_dict(t, s), "sensitivity": ss.sensitivity, "specificity": ss.specificity,
                                "kappa_quadratic": weighted_kappa([ref[u] for u in ai_units],
                                                                  [ai[u] for u in ai_units], scale.grades,
                                                                  "quadratic")}
        fpr, tpr = roc_points(t, s)
        out["roc"]["ai_standalone"] = {"AI": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}}
    return out


def reading_times(rows: Iterable[dict]) -> dict:
    """Reading time (seconds) of the original reads per arm: n, mean, median, quartiles, values."""
    per_arm: dict[str, dict[tuple, float]] = defaultdict(dict)
    for r in rows:
        if r.get("first_duration_s") is not None:
            per_arm[r["arm"]][(r["reader"], r["case_key"])] = float(r["first_duration_s"])
    out = {}
    for arm in ARMS:
        v = np.array(list(per_arm.get(arm, {}).values()))
        if v.size:
            out[arm] = {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
                        "q1": float(np.percentile(v, 25)), "q3": float(np.percentile(v, 75)),
                        "values": v.tolist()}
    return out


def analyse(rows: list[dict]) -> dict:
    """Analyse exported reads: per pathology (see module docstring) and reading times per arm."""
    by_path: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_path[r["pathology"]].append(r)
    return {
        "pathologies": {p: _pathology(rs, p) for p, rs in sorted(by_path.items())},
        "reading_time": reading_times(rows),
        "readers": sorted({r["reader"] for r in rows}),
        "cases": len({r["case_key"] for r in rows}),
    }
