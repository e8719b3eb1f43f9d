"""Reading time: AI-assisted / manual time ratio from a linear mixed model of log time.

log(time) ~ arm + period, random reader and random case (crossed), REML (:mod:`lvp.study.mixed`).
The arm coefficient, exponentiated, is the ratio of (geometric mean) reading times AI-assisted /
manual at equal reader, case and period; the period coefficient the session-2 / session-1 ratio
(a learning or fatigue effect). Only the original read's time counts (a correction is not reading);
reads without a positive time are excluded and counted.
"""

from __future__ import annotations

import numpy as np

from lvp.study.mixed import fit_crossed_reml
from lvp.study.table import ARM_NAMES


def _box(v: np.ndarray) -> dict:
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    iqr = q3 - q1
    lo = v[v >= q1 - 1.5 * iqr].min()
    hi = v[v <= q3 + 1.5 * iqr].max()
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(med), "q1": float(q1), "q3": float(q3),
            "whislo": float(lo), "whishi": float(hi), "geometric_mean": float(np.exp(np.log(v).mean()))}


def reading_time(cols: dict, alpha: float = 0.05) -> dict:
    """Descriptives per arm and the mixed-model time ratio AI-assisted / manual (and period 2 / 1)."""
    r = cols["reads"]
    t = r["first_duration_s"]
    ok = np.isfinite(t) & (t > 0)
    out: dict = {"excluded_reads": int((~ok).sum()), "per_arm": {}, "model": None}
    for a in range(2):
        v = t[ok & (r["arm"] == a)]
        if v.size:
            out["per_arm"][ARM_NAMES[a]] = _box(v)
    if len(out["per_arm"]) < 2:
        out["model_refused"] = "reading time needs timed reads in both arms"
        return out
    y = np.log(t[ok])
    arm = r["arm"][ok].astype(float)
    period = (r["session"][ok] >= 2).astype(float)
    names = ["intercept", "ai_assisted", "period_2"]
    x = np.column_stack([np.ones_like(y), arm, period])
    if np.unique(period).size < 2 or np.linalg.matrix_rank(x) < 3:
        x, names = x[:, :2], names[:2]  # a one-session study has no period effect to estimate
    try:
        fit = fit_crossed_reml(y, x, r["reader"][ok], r["case"][ok], names)
    except ValueError as err:
        out["model_refused"] = str(err)
        return out

    def ratio(name: str) -> dict:
        e = fit.effect(name, alpha)
        return {"ratio": float(np.exp(e["estimate"])), "ci_low": float(np.exp(e["ci_low"])),
                "ci_high": float(np.exp(e["ci_high"])), "p_value": e["p_value"], "log_estimate": e["estimate"],
                "log_se": e["se"]}

    out["model"] = {
        "formula": "log(time) ~ arm + period + (1 | reader) + (1 | case), REML; Wald CI",
        "reads": int(y.size), "readers": int(np.unique(r["reader"][ok]).size),
        "cases": int(np.unique(r["case"][ok]).size),
        "ratio_ai_vs_manual": ratio("ai_assisted"),
        "ratio_period_2_vs_1": ratio("period_2") if "period_2" in names else None,
        "var_reader": fit.var_g1, "var_case": fit.var_g2, "var_residual": fit.var_resid,
        "converged": fit.converged,
    }
    return out
