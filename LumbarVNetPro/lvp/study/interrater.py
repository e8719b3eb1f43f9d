"""Agreement between readers, per arm, and its difference between arms (AI-assisted - manual).

On the complete design (the same readers and units in both arms): Fleiss' kappa (nominal) and
Krippendorff's alpha (ordinal) of the readers' grades, with percentile intervals from a bootstrap of
cases (a patient and all its levels is one draw; the same draws for both arms, so the difference is
paired), and ICC(2,1) of the grades and of the measurements with F-based intervals.
"""

from __future__ import annotations

import numpy as np

from lvp.study.agreement import (
    alpha_from_coincidences,
    bootstrap_weights,
    coincidences,
    fleiss_from_sums,
    fleiss_parts,
    icc,
    percentile_ci,
    ratings_to_counts,
)
from lvp.study.table import ARM_NAMES


def _per_case(values: np.ndarray, case: np.ndarray, n_cases: int) -> np.ndarray:
    """Sum per case of per-unit values (units, ...) -> (cases, ...)."""
    flat = values.reshape(values.shape[0], -1)
    out = np.zeros((n_cases, flat.shape[1]))
    np.add.at(out, case, flat)
    return out


def _icc_dict(mat: np.ndarray) -> dict | None:
    if mat.shape[0] < 2 or mat.shape[1] < 2 or np.ptp(mat) == 0:
        return None
    res = icc(mat)
    lo, hi = res.ci.get("icc2", (float("nan"), float("nan")))
    return {"icc2_1": float(res.icc2), "ci_low": lo, "ci_high": hi, "units": int(mat.shape[0]),
            "readers": int(mat.shape[1])}


def between_arms(grid: np.ndarray, unit_case: np.ndarray, categories: list[int], replicates: int = 1000,
                 seed: int = 0, alpha: float = 0.05, measurements: np.ndarray | None = None) -> dict:
    """Fleiss kappa, ordinal Krippendorff alpha and ICC per arm, and the AI-assisted - manual difference.

    ``grid``: (2 arms, readers, units) grades of the complete design; ``unit_case`` the case of each
    unit (the bootstrap cluster); ``measurements``: the same grid of measurements (NaN = none).
    """
    _, case = np.unique(unit_case, return_inverse=True)
    n_cases = int(case.max()) + 1
    w = bootstrap_weights(n_cases, replicates, seed)
    out: dict = {"method": f"case bootstrap, {replicates} replicates (seed {seed}), percentile {1 - alpha:.0%} CI",
                 "units": int(grid.shape[2]), "readers": int(grid.shape[1]), "cases": n_cases, "arms": {}}
    boot: dict[str, dict[str, np.ndarray]] = {}
    for a, arm in enumerate(ARM_NAMES):
        counts = ratings_to_counts(grid[a].T, categories)  # (units, k)
        p_u, c = fleiss_parts(counts)
        p_case = _per_case(p_u[:, None], case, n_cases)[:, 0]
        c_case = _per_case(c, case, n_cases)
        n_case = np.bincount(case, minlength=n_cases).astype(float)
        o_case = _per_case(coincidences(counts), case, n_cases).reshape(n_cases, len(categories), len(categories))
        kappa = float(fleiss_from_sums(p_case.sum(), c_case.sum(axis=0), n_case.sum()))
        alpha_ord = float(alpha_from_coincidences(o_case.sum(axis=0), categories, "ordinal"))
        kb = fleiss_from_sums(w @ p_case, w @ c_case, w @ n_case)
        ab = alpha_from_coincidences(np.einsum("bc,ckl->bkl", w, o_case), categories, "ordinal")
        boot[arm] = {"kappa": kb, "alpha": ab}
        arm_out = {"fleiss_kappa": kappa, "fleiss_kappa_ci": percentile_ci(kb, alpha),
                   "alpha_ordinal": alpha_ord, "alpha_ordinal_ci": percentile_ci(ab, alpha),
                   "icc_grades": _icc_dict(grid[a].T.astype(float))}
        if measurements is not None:
            mm = measurements[a].T
            rows = np.isfinite(mm).all(axis=1)
            arm_out["icc_measurement"] = _icc_dict(mm[rows]) if rows.sum() >= 2 else None
        out["arms"][arm] = arm_out
    k0, k1 = out["arms"]["manual"]["fleiss_kappa"], out["arms"]["ai_assisted"]["fleiss_kappa"]
    a0, a1 = out["arms"]["manual"]["alpha_ordinal"], out["arms"]["ai_assisted"]["alpha_ordinal"]
    out["difference"] = {
        "label": "AI-assisted - manual",
        "fleiss_kappa": k1 - k0,
        "fleiss_kappa_ci": percentile_ci(boot["ai_assisted"]["kappa"] - boot["manual"]["kappa"], alpha),
        "alpha_ordinal": a1 - a0,
        "alpha_ordinal_ci": percentile_ci(boot["ai_assisted"]["alpha"] - boot["manual"]["alpha"], alpha),
    }
    return out
