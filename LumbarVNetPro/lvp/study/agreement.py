"""Agreement statistics: sensitivity / specificity, weighted kappa, Fleiss kappa, Krippendorff's alpha,
ICC with confidence intervals, accuracy, and case-bootstrap intervals for multi-rater agreement.

Fleiss' kappa and Krippendorff's alpha are functions of sums over units (per-unit agreement and
category counts; the coincidence matrix), so a bootstrap of cases (each case: its lumbar levels)
reweights precomputed per-case sums instead of recomputing from the ratings: thousands of
replicates of a 7,600-unit study take milliseconds.
"""

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


def sensitivity_specificity(truth, predicted, alpha: float = 0.05) -> SensSpec:
    """Sensitivity and specificity of binary ``predicted`` against binary ``truth``."""
    t = np.asarray(truth).astype(bool)
    p = np.asarray(predicted).astype(bool)
    tp, fn = int((t & p).sum()), int((t & ~p).sum())
    tn, fp = int((~t & ~p).sum()), int((~t & p).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return SensSpec(sens, wilson_ci(tp, tp + fn, alpha), spec, wilson_ci(tn, tn + fp, alpha), tp, fn, tn, fp)


def weighted_kappa(a, b, categories: Sequence[int], weights: str = "linear") -> float:
    """Cohen's weighted kappa of two ratings on the ordinal ``categories`` (``linear`` / ``quadratic``).

    Computed by scikit-learn's ``cohen_kappa_score`` (its weights ``|i - j|`` and ``(i - j)²``
    give the same kappa as weights normalised by ``k - 1``); checked here first: ratings of equal
    length, every rating one of the categories (scikit-learn would drop the others silently).
    NaN when it is undefined (no ratings, or every rating in one category).
    """
    if weights not in ("linear", "quadratic"):
        raise ValueError("weights must be 'linear' or 'quadratic'")
    cats = np.asarray(list(categories))
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError("the two ratings differ in length")
    if not (np.isin(a, cats).all() and np.isin(b, cats).all()):
        raise ValueError("a rating is not one of the categories")
    if a.size == 0:
        return float("nan")
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score  # imported here: the [study] extra's heaviest import

    with warnings.catch_warnings():  # undefined (one category only) is the documented NaN, not a warning
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(cohen_kappa_score(a, b, labels=cats, weights=weights, replace_undefined_by=np.nan))


def fleiss_kappa(counts) -> float:
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


def ratings_to_counts(ratings, categories: Sequence[int]) -> np.ndarray:
    """Turn a (units x raters) matrix of categories into Fleiss' (units x categories) count table."""
    r = np.asarray(ratings)
    return np.stack([(r == c).sum(axis=1) for c in categories], axis=1)


def _alpha_delta2(metric: str, categories: np.ndarray, marginals: np.ndarray) -> np.ndarray:
    """Squared distances between categories (Krippendorff 2011); ``marginals``: (..., k) value counts."""
    k = categories.size
    i, j = np.indices((k, k))
    if metric == "nominal":
        return np.broadcast_to((i != j).astype(float), marginals.shape[:-1] + (k, k))
    if metric == "interval":
        d = categories[:, None] - categories[None, :]
        return np.broadcast_to(d.astype(float) ** 2, marginals.shape[:-1] + (k, k))
    if metric == "ordinal":
        # delta_ck = sum_{g=c..k} n_g - (n_c + n_k) / 2 for c <= k (symmetric).
        cum = np.cumsum(marginals, axis=-1)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        before = np.where(lo > 0, np.take(cum, np.maximum(lo - 1, 0), axis=-1), 0.0)
        span = np.take(cum, hi, axis=-1) - before
        return (span - (np.take(marginals, i, axis=-1) + np.take(marginals, j, axis=-1)) / 2) ** 2
    raise ValueError("metric must be 'nominal', 'ordinal' or 'interval'")


def coincidences(counts) -> np.ndarray:
    """Per-unit coincidence matrices (units, k, k) from a (units x categories) table of value counts.

    A unit with m_u >= 2 values contributes (n_u n_u^T - diag(n_u)) / (m_u - 1); fewer values: nothing.
    """
    c = np.asarray(counts, dtype=float)
    m = c.sum(axis=1)
    w = np.where(m >= 2, 1.0 / np.maximum(m - 1, 1), 0.0)
    outer = c[:, :, None] * c[:, None, :]
    diag = np.zeros_like(outer)
    idx = np.arange(c.shape[1])
    diag[:, idx, idx] = c
    return (outer - diag) * w[:, None, None]


def alpha_from_coincidences(o, categories: Sequence[float], metric: str = "ordinal"):
    """Krippendorff's alpha from a coincidence matrix (k, k), or a stack of them (..., k, k)."""
    o = np.asarray(o, dtype=float)
    cats = np.asarray(categories, dtype=float)
    marg = o.sum(axis=-1)
    n = marg.sum(axis=-1)
    d2 = _alpha_delta2(metric, cats, marg)
    observed = (o * d2).sum(axis=(-2, -1))
    expected = (marg[..., :, None] * marg[..., None, :] * d2).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (n - 1) * observed / expected


def krippendorff_alpha(ratings, categories: Sequence[float], metric: str = "ordinal") -> float:
    """Krippendorff's alpha of a (raters x units) matrix with NaN for missing values (Krippendorff 2011).

    ``metric``: ``nominal``, ``ordinal`` (the grades' rank order only) or ``interval``.
    """
    r = np.asarray(ratings, dtype=float)
    counts = np.stack([(r == c).sum(axis=0) for c in categories], axis=1)
    return float(alpha_from_coincidences(coincidences(counts).sum(axis=0), categories, metric))


def fleiss_parts(counts) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit agreement P_u and category counts of a Fleiss table (same raters r per unit)."""
    c = np.asarray(counts, dtype=float)
    r = c.sum(axis=1)
    if c.shape[0] == 0 or not np.allclose(r, r[0]) or r[0] < 2:
        raise ValueError("Fleiss kappa needs the same number (>= 2) of ratings per unit")
    return (np.square(c).sum(axis=1) - r) / (r * (r - 1)), c


def fleiss_from_sums(p_sum, cat_sums, n_units):
    """Fleiss' kappa from sum_u P_u, the summed category counts and the number of units (vectorised)."""
    p_sum, cat_sums, n_units = np.asarray(p_sum, float), np.asarray(cat_sums, float), np.asarray(n_units, float)
    p_j = cat_sums / cat_sums.sum(axis=-1, keepdims=True)
    p_e = np.square(p_j).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p_e < 1, (p_sum / n_units - p_e) / (1 - p_e), np.nan)


def bootstrap_weights(n_clusters: int, replicates: int, seed: int = 0) -> np.ndarray:
    """(replicates x clusters) counts of how often each cluster is drawn in a bootstrap sample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, (replicates, n_clusters))
    flat = draws + (np.arange(replicates) * n_clusters)[:, None]
    return np.bincount(flat.ravel(), minlength=replicates * n_clusters).reshape(replicates, n_clusters).astype(float)


def percentile_ci(values, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates ignored)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))


@dataclass(frozen=True)
class ICCResult:
    """Shrout & Fleiss intraclass correlations (single rater and mean of k raters)."""

    icc1: float
    icc2: float
    icc3: float
    icc1k: float
    icc2k: float
    icc3k: float
    ci: dict = None  # 95 % (1 - alpha) intervals of icc1, icc2, icc3: {"icc2": (low, high), ...}


def icc(ratings, alpha: float = 0.05) -> ICCResult:
    """ICC(1,1), ICC(2,1), ICC(3,1) and their k-rater forms (Shrout & Fleiss 1979, Psychol Bull 86:420).

    ``ratings`` is an (n targets x k raters) matrix without missing values. ICC(2,1), two-way random
    effects, absolute agreement, is the one reported for measurements. Confidence intervals: the
    F-based ones of Shrout & Fleiss (1979) / McGraw & Wong (1996), ICC(2,1) with Satterthwaite df.
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
    ci = _icc_intervals(n, k, bms, jms, ems, wms, alpha)
    return ICCResult(
        icc1=(bms - wms) / (bms + (k - 1) * wms),
        icc2=(bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n),
        icc3=(bms - ems) / (bms + (k - 1) * ems),
        icc1k=(bms - wms) / bms,
        icc2k=(bms - ems) / (bms + (jms - ems) / n),
        icc3k=(bms - ems) / bms,
        ci=ci,
    )


def _icc_intervals(n: int, k: int, bms: float, jms: float, ems: float, wms: float,
                   alpha: float) -> dict[str, tuple[float, float]]:
    q = 1 - alpha / 2
    out: dict[str, tuple[float, float]] = {}
    if wms > 0:
        f1 = bms / wms
        fl, fu = f1 / stats.f.ppf(q, n - 1, n * (k - 1)), f1 * stats.f.ppf(q, n * (k - 1), n - 1)
        out["icc1"] = ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))
    if ems > 0:
        f3 = bms / ems
        df_e = (n - 1) * (k - 1)
        fl, fu = f3 / stats.f.ppf(q, n - 1, df_e), f3 * stats.f.ppf(q, df_e, n - 1)
        out["icc3"] = ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))
        rho = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
        if rho < 1:
            a = k * rho / (n * (1 - rho))
            b = 1 + k * rho * (n - 1) / (n * (1 - rho))
            v = (a * jms + b * ems) ** 2 / ((a * jms) ** 2 / (k - 1) + (b * ems) ** 2 / ((n - 1) * (k - 1)))
            f_lo, f_hi = stats.f.ppf(q, n - 1, v), stats.f.ppf(q, v, n - 1)
            low = n * (bms - f_lo * ems) / (f_lo * (k * jms + (k * n - k - n) * ems) + n * bms)
            high = n * (f_hi * bms - ems) / (k * jms + (k * n - k - n) * ems + n * f_hi * bms)
            out["icc2"] = (float(low), float(high))
    return {key: (float(lo), float(hi)) for key, (lo, hi) in out.items()}


def accuracy(a, b) -> float:
    """Fraction of exact agreement between two ratings (NaN when empty)."""
    a, b = np.asarray(a), np.asarray(b)
    return float((a == b).mean()) if a.size else float("nan")
