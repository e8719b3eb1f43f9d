"""Agreement statistics: sensitivity / specificity, weighted kappa, Fleiss kappa, ICC, accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def wilson_ci(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (NaNs when ``n`` is 0)."""
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


@dataclass(frozen=True)
class SensSpec:
    """Sensitivity and specificity with Wilson 95 % intervals and the 2x2 counts."""

    sensitivity: float
    sens_ci: tuple[float, float]
    specificity: float
    spec_ci: tuple[float, float]
    tp: int
    fn: int
    tn: int
    fp: int


def sensitivity_specificity(truth, predicted, alpha: float = 0.05) -> SensSpec:  # noqa: ANN001
    """Sensitivity and specificity of binary ``predicted`` against binary ``truth``."""
    t = np.asarray(truth).astype(bool)
    p = np.asarray(predicted).astype(bool)
    tp, fn = int((t & p).sum()), int((t & ~p).sum())
    tn, fp = int((~t & ~p).sum()), int((~t & p).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return SensSpec(sens, wilson_ci(tp, tp + fn, alpha), spec, wilson_ci(tn, tn + fp, alpha), tp, fn, tn, fp)


def weighted_kappa(a, b, categories: Sequence[int], weights: str = "linear") -> float:  # noqa: ANN001
    """Cohen's weighted kappa of two ratings on the ordinal ``categories`` (``linear`` / ``quadratic``)."""
    cats = list(categories)
    k = len(cats)
    index = {c: i for i, c in enumerate(cats)}
    obs = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        obs[index[x], index[y]] += 1
    n = obs.sum()
    if n == 0:
        return float("nan")
    i, j = np.indices((k, k))
    if weights == "linear":
        w = np.abs(i - j) / (k - 1)
    elif weights == "quadratic":
        w = ((i - j) / (k - 1)) ** 2
    else:
        raise ValueError("weights must be 'linear' or 'quadratic'")
    expected = np.outer(obs.sum(axis=1), obs.sum(axis=0)) / n
    denom = (w * expected).sum()
    return float(1 - (w * obs).sum() / denom) if denom else float("nan")


def fleiss_kappa(counts) -> float:  # noqa: ANN001
    """Fleiss' kappa from an (units x categories) table of how many raters chose each category.

    Every unit must have the same number of ratings (Fleiss 1971, Psychol Bull 76:378).
    """
    c = np.asarray(counts, dtype=float)
    n_raters = c.sum(axis=1)
    if c.shape[0] == 0 or not np.allclose(n_raters, n_raters[0]) or n_raters[0] < 2:
        raise ValueError("Fleiss kappa needs the same number (>= 2) of ratings per unit")
    r = n_raters[0]
    p_j = c.sum(axis=0) / c.sum()
    p_i = (np.square(c).sum(axis=1) - r) / (r * (r - 1))
    p_bar, p_e = p_i.mean(), np.square(p_j).sum()
    return float((p_bar - p_e) / (1 - p_e)) if p_e < 1 else float("nan")


def ratings_to_counts(ratings, categories: Sequence[int]) -> np.ndarray:  # noqa: ANN001
    """Turn a (units x raters) matrix of categories into Fleiss' (units x categories) count table."""
    r = np.asarray(ratings)
    return np.stack([(r == c).sum(axis=1) for c in categories], axis=1)


@dataclass(frozen=True)
class ICCResult:
    """Shrout & Fleiss intraclass correlations (single rater and mean of k raters)."""

    icc1: float
    icc2: float
    icc3: float
    icc1k: float
    icc2k: float
    icc3k: float


def icc(ratings) -> ICCResult:  # noqa: ANN001
    """ICC(1,1), ICC(2,1), ICC(3,1) and their k-rater forms (Shrout & Fleiss 1979, Psychol Bull 86:420).

    ``ratings`` is an (n targets x k raters) matrix without missing values. ICC(2,1), two-way random
    effects, absolute agreement, is the one reported for measurements.
    """
    x = np.asarray(ratings, dtype=float)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError("ICC needs at least 2 targets and 2 raters")
    grand = x.mean()
    ss_rows = k * np.square(x.mean(axis=1) - grand).sum()
    ss_cols = n * np.square(x.mean(axis=0) - grand).sum()
    ss_total = np.square(x - grand).sum()
    ss_err = ss_total - ss_rows - ss_cols
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_cols + ss_err) / (n * (k - 1))
    return ICCResult(
        icc1=(bms - wms) / (bms + (k - 1) * wms),
        icc2=(bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n),
        icc3=(bms - ems) / (bms + (k - 1) * ems),
        icc1k=(bms - wms) / bms,
        icc2k=(bms - ems) / (bms + (jms - ems) / n),
        icc3k=(bms - ems) / bms,
    )


def accuracy(a, b) -> float:  # noqa: ANN001
    """Fraction of exact agreement between two ratings (NaN when empty)."""
    a, b = np.asarray(a), np.asarray(b)
    return float((a == b).mean()) if a.size else float("nan")
