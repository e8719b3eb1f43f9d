"""Validation of LVP's grades against the SPIDER radiologists' per-disc grades.

The segmentation given to the reading pipeline (labelling → measurements → grades) is the
SPIDER **reference mask** unless a folder of predicted segmentations is given
(``<case>_pred.nii.gz``, network classes 0..3 on the image grid), so by default these figures
measure the measurement and grading rules, not the network. Discs are joined to the grades by
their order from the bottom (SPIDER ``IVD label`` 1 = most caudal disc).

Figures: AUC (Mann-Whitney) with a 95 % bootstrap CI resampling patients (the discs of one
patient are not independent), Cohen's kappa for binary grades and quadratic-weighted kappa for
Pfirrmann, each with the same bootstrap CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from lvp.grading import GradingRules, grade_level
from lvp.labelling import label_levels
from lvp.measure import measure_levels
from lvp.validation.cases import load_spider_case, spider_case_ids

N_BOOT = 1000


def collect(
    data: Path, pred_dir: Path | None = None, rules: GradingRules | None = None, limit: int | None = None
) -> list[dict]:
    """One row per graded disc: reference grades, LVP grades and soft scores."""
    rows = []
    for case in spider_case_ids(data)[:limit]:
        pred = Path(pred_dir) / f"{case}_pred.nii.gz" if pred_dir else None
        sc = load_spider_case(data, case, pred)
        lab = label_levels(sc.labels, sc.image)
        levels = measure_levels(sc.image, lab)
        discs = lab.discs[::-1]  # bottom first, as IVD label
        for i, ref in enumerate(sc.grades):
            if i >= len(discs) or discs[i].name not in levels:
                continue
            g = grade_level(levels[discs[i].name], rules)
            h, n, p = g["herniation"], g["narrowing"], g["pfirrmann"]
            if h.grade is None or p.grade is None:
                continue
            rows.append(
                {
                    "case": case,
                    "level": discs[i].name,
                    "ref_herniation": ref["Disc herniation"],
                    "ref_bulging": ref["Disc bulging"],
                    "ref_narrowing": ref["Disc narrowing"],
                    "ref_pfirrmann": ref["Pfirrman grade"],
                    "herniation_grade": h.grade,
                    "score_herniation": h.probabilities[2] + h.probabilities[3],
                    "score_displaced": 1.0 - h.probabilities[0],
                    "narrowing_grade": n.grade,
                    "score_narrowing": n.probabilities[1] if n.grade is not None else None,
                    "pfirrmann_grade": p.grade,
                    "displacement_mm": h.value,
                    "signal_ratio": p.value,
                    "height_ratio": n.value,
                    "score_pfirrmann": float(np.dot(p.probabilities, np.arange(1, 6))),
                }
            )
    return rows


def _boot(rows: list[dict], stat, seed: int = 0) -> tuple[float, float, float]:
    """Statistic on all rows and its 95 % CI from resampling patients."""
    cases = sorted({r["case"] for r in rows})
    by_case = {c: [r for r in rows if r["case"] == c] for c in cases}
    rng = np.random.default_rng(seed)
    try:
        point = stat(rows)
    except ValueError:  # e.g. no positive case among these rows
        return float("nan"), float("nan"), float("nan")
    vals = []
    for _ in range(N_BOOT):
        sample = [r for c in rng.choice(cases, len(cases)) for r in by_case[c]]
        try:
            v = stat(sample)
        except ValueError:
            continue
        if np.isfinite(v):
            vals.append(v)
    lo, hi = np.percentile(vals, [2.5, 97.5]) if vals else (np.nan, np.nan)
    return float(point), float(lo), float(hi)


def _auc(ref: str, score: str):
    def f(rows):
        y = [r[ref] for r in rows if r[score] is not None]
        s = [r[score] for r in rows if r[score] is not None]
        if len(set(y)) < 2:
            raise ValueError("one class only")
        return roc_auc_score(y, s)

    return f


def _kappa(ref: str, pred, weights: str | None = None):
    def f(rows):
        y = [r[ref] for r in rows]
        p = [pred(r) for r in rows]
        return cohen_kappa_score(y, p, weights=weights, labels=sorted(set(y) | set(p)))

    return f


def summarise(rows: list[dict]) -> dict:
    """AUCs and kappas with 95 % patient-bootstrap CIs."""

    def fig(stat):
        v, lo, hi = _boot(rows, stat)
        return {"value": round(v, 3), "ci95": [round(lo, 3), round(hi, 3)]}

    narrow_rows = [r for r in rows if r["score_narrowing"] is not None]
    return {
        "n_discs": len(rows),
        "n_patients": len({r["case"] for r in rows}),
        "prevalence": {k: int(sum(r[f"ref_{k}"] for r in rows)) for k in ("herniation", "bulging", "narrowing")},
        "herniation_auc": fig(_auc("ref_herniation", "score_herniation")),
        "herniation_kappa": fig(_kappa("ref_herniation", lambda r: int(r["herniation_grade"] >= 2))),
        "bulging_auc": fig(_auc("ref_bulging", "score_displaced")),
        "bulging_kappa": fig(_kappa("ref_bulging", lambda r: int(r["herniation_grade"] >= 1))),
        "narrowing_auc": {"n": len(narrow_rows), **_fig_rows(narrow_rows, _auc("ref_narrowing", "score_narrowing"))},
        "narrowing_kappa": _fig_rows(narrow_rows, _kappa("ref_narrowing", lambda r: int(r["narrowing_grade"]))),
        "pfirrmann_weighted_kappa": fig(_kappa("ref_pfirrmann", lambda r: r["pfirrmann_grade"], "quadratic")),
        "pfirrmann_ge4_auc": fig(
            lambda rs: roc_auc_score([int(r["ref_pfirrmann"] >= 4) for r in rs], [r["score_pfirrmann"] for r in rs])
        ),
        "measurement_aucs": {
            "herniation_by_displacement": fig(_auc("ref_herniation", "displacement_mm")),
            "bulging_by_displacement": fig(_auc("ref_bulging", "displacement_mm")),
            "narrowing_by_low_height_ratio": _fig_rows(
                [dict(r, neg_height=-r["height_ratio"]) for r in narrow_rows], _auc("ref_narrowing", "neg_height")
            ),
        },
        "pfirrmann_exact_agreement": round(
            float(np.mean([r["ref_pfirrmann"] == r["pfirrmann_grade"] for r in rows])), 3
        ),
    }


def _fig_rows(rows: list[dict], stat) -> dict:
    v, lo, hi = _boot(rows, stat)
    return {"value": round(v, 3), "ci95": [round(lo, 3), round(hi, 3)]}


def validate_grades(
    data: Path, out: Path | None = None, pred_dir: Path | None = None, limit: int | None = None
) -> dict:
    """Run the grade validation and write JSON (summary and per-disc rows) to ``out``."""
    rows = collect(Path(data), pred_dir, limit=limit)
    result = {
        "input_segmentation": "predicted" if pred_dir else "reference masks (measures rules, not the network)",
        "summary": summarise(rows),
        "rows": rows,
    }
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result
