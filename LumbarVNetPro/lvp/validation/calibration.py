"""Calibration of graded probabilities on patients never tuned on: O/E, slope, reliability diagrams.

For each binary outcome (a SPIDER label, or "Pfirrmann >= k" from the ordinal grade):

* **O/E**: observed positives over the sum of predicted probabilities (1 = right on average);
* **calibration slope**: the slope of a logistic regression of the outcome on logit(p)
  (1 = well spread; < 1 overconfident, > 1 underconfident); not estimable with < 2 positives;
* 95 % CIs by resampling **patients** (discs of one patient are correlated);
* a reliability diagram (PNG): observed frequency against mean predicted probability in bins.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from lvp.validation.bootstrap import patient_bootstrap, rounded

N_BOOT = 1000

# outcome key -> (row score, reference column, positive test, label)
OUTCOMES = {
    "herniation_label": ("p_herniation", "ref_herniation", lambda v: v >= 1, "SPIDER 'Disc herniation' label"),
    "bulging_label": ("p_bulging", "ref_bulging", lambda v: v >= 1, "SPIDER 'Disc bulging' label"),
    "narrowing": ("p_narrowing", "ref_narrowing", lambda v: v >= 1, "narrowing"),
    "pfirrmann_ge2": ("p_pfirrmann_ge2", "ref_pfirrmann", lambda v: v >= 2, "Pfirrmann >= II"),
    "pfirrmann_ge3": ("p_pfirrmann_ge3", "ref_pfirrmann", lambda v: v >= 3, "Pfirrmann >= III"),
    "pfirrmann_ge4": ("p_pfirrmann_ge4", "ref_pfirrmann", lambda v: v >= 4, "Pfirrmann >= IV"),
    "pfirrmann_ge5": ("p_pfirrmann_ge5", "ref_pfirrmann", lambda v: v >= 5, "Pfirrmann V"),
}


def _pairs(rows: list[dict], score: str, ref: str, positive) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rs = [r for r in rows if r.get(score) is not None and r.get(ref) is not None]
    p = np.clip(np.array([r[score] for r in rs], float), 1e-6, 1 - 1e-6)
    y = np.array([int(positive(r[ref])) for r in rs])
    return p, y, [r["case"] for r in rs]


def oe_ratio(p: np.ndarray, y: np.ndarray) -> float:
    """Observed over expected positives."""
    return float(y.sum() / p.sum()) if p.sum() > 0 else float("nan")


def calibration_slope(p: np.ndarray, y: np.ndarray) -> float:
    """Slope of y on logit(p) (unpenalised logistic regression); NaN with fewer than 2 of a class."""
    if min(int(y.sum()), int((1 - y).sum())) < 2:
        return float("nan")
    lp = np.log(p / (1 - p))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(LogisticRegression(C=1e6).fit(lp, y).coef_[0][0])


def _ci(p, y, cases, stat, n_boot: int, seed: int = 0) -> list[float | None]:
    vals = patient_bootstrap(cases, lambda take: stat(p[take], y[take]), n_boot, seed)
    if len(vals) < n_boot // 2:  # undefined in most resamples: no honest interval
        return [None, None]
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [round(float(lo), 3), round(float(hi), 3)]


def calibration_table(rows: list[dict], n_boot: int = N_BOOT) -> dict:
    """O/E and calibration slope with patient-bootstrap CIs for every outcome present in ``rows``."""
    out = {}
    for key, (score, ref, positive, label) in OUTCOMES.items():
        p, y, cases = _pairs(rows, score, ref, positive)
        if y.size == 0:
            continue
        out[key] = {
            "label": label, "n": int(y.size), "n_positive": int(y.sum()), "n_patients": len(set(cases)),
            "observed": int(y.sum()), "expected": round(float(p.sum()), 2),
            "oe": rounded(oe_ratio(p, y)), "oe_ci95": _ci(p, y, cases, oe_ratio, n_boot),
            "slope": rounded(calibration_slope(p, y)), "slope_ci95": _ci(p, y, cases, calibration_slope, n_boot),
        }
    return out


def reliability_bins(p: np.ndarray, y: np.ndarray, n_bins: int = 5) -> list[tuple[float, float, int]]:
    """``(mean predicted, observed frequency, n)`` per equal-count bin of predicted probability."""
    order = np.argsort(p)
    out = []
    for part in np.array_split(order, min(n_bins, max(len(p), 1))):
        if part.size:
            out.append((float(p[part].mean()), float(y[part].mean()), int(part.size)))
    return out


def reliability_png(rows_by_input: dict[str, list[dict]], path: str | Path, title: str) -> Path:
    """One reliability diagram per outcome (subplots), one line per input segmentation; PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in OUTCOMES if any(_pairs(r, *OUTCOMES[k][:3])[1].size for r in rows_by_input.values())]
    ncols = min(4, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.ravel(), keys):
        score, ref, positive, label = OUTCOMES[key]
        ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
        for (name, rows), marker in zip(rows_by_input.items(), ("o", "s", "^")):
            p, y, _ = _pairs(rows, score, ref, positive)
            if not y.size:
                continue
            b = reliability_bins(p, y)
            ax.plot([x for x, _, _ in b], [o for _, o, _ in b], marker=marker, label=f"{name} (n={y.size}, "
                    f"{int(y.sum())}+)")
        ax.set_title(label, fontsize=8)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability", fontsize=7)
        ax.set_ylabel("observed frequency", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
