"""Empirical ROC analysis: AUC (Mann-Whitney), DeLong variance, confidence interval and paired test.

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845. The AUC is the probability that a
positive unit scores higher than a negative one (ties count one half), i.e. the trapezoidal area
under the empirical ROC curve; scores may be ordinal grades.

The structural components are computed from mid-ranks (Sun & Xu 2014, IEEE Signal Process Lett
21:1389), O(N log N) instead of the O(m n) table of all positive-negative pairs, and for ordinal
grades (integers in a short range) from per-grade counts, O(N): a 7,600-unit study needs megabytes,
not gigabytes. With clustered units (a patient's lumbar levels) the covariance is
Obuchowski's (1997, Biometrics 53:567) cluster-aware form.

DeLong's variance needs at least two positive and two negative units; with fewer it is undefined
and refused. A zero variance (AUC 0 or 1, or every score tied) makes the Wald interval a point: such
AUCs get a score interval instead (:func:`auc_score_interval`) and a ``flag``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


def _split(truth, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # array-likes
    truth = np.asarray(truth).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != truth.size:
        raise ValueError("scores and truth differ in length")
    if truth.all() or not truth.any():
        raise ValueError("AUC needs both positive and negative units")
    return truth, s[:, truth], s[:, ~truth]


def empirical_auc(truth, scores) -> np.ndarray:
    """Empirical AUC of each score row (ties count one half); no variance, so any class sizes >= 1."""
    return delong_components(truth, scores)[0]


def delong_components(truth, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs of each score row and DeLong's structural components V10 (positives) and V01 (negatives).

    ``scores`` is one score vector or a (k, n) array of k scores of the same n units. V10 of a
    positive unit is the fraction of negatives it out-scores (ties one half); V01 of a negative unit
    the fraction of positives that out-score it.
    """
    _, pos, neg = _split(truth, scores)
    m, n = pos.shape[1], neg.shape[1]
    small = _small_integer_range(pos, neg)
    if small is not None:
        return _components_by_counting(pos, neg, *small)
    both = np.concatenate([pos, neg], axis=1)
    rank_all = stats.rankdata(both, axis=1)  # mid-ranks: ties share the average rank
    rank_pos = stats.rankdata(pos, axis=1)
    rank_neg = stats.rankdata(neg, axis=1)
    # A positive's rank among all minus its rank among positives = negatives below it (+ half ties).
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    return v10.mean(axis=1), v10, v01


def _small_integer_range(pos: np.ndarray, neg: np.ndarray) -> tuple[int, int] | None:
    """(lowest score, number of score values) when every score is an integer in a short range."""
    lo = min(pos.min(), neg.min())
    hi = max(pos.max(), neg.max())
    if hi - lo > 256 or not (np.all(pos == np.round(pos)) and np.all(neg == np.round(neg))):
        return None
    return int(lo), int(hi - lo) + 1


def _components_by_counting(pos: np.ndarray, neg: np.ndarray, lo: int, k: int) -> tuple:
    """Structural components of ordinal scores from per-grade counts (O(N), same values as ranks)."""
    rows = np.arange(pos.shape[0])[:, None]
    p_idx = (pos - lo).astype(np.int64)
    n_idx = (neg - lo).astype(np.int64)
    cnt_p = np.zeros((pos.shape[0], k))
    cnt_n = np.zeros((pos.shape[0], k))
    np.add.at(cnt_p, (np.broadcast_to(rows, p_idx.shape), p_idx), 1.0)
    np.add.at(cnt_n, (np.broadcast_to(rows, n_idx.shape), n_idx), 1.0)
    below_n = np.cumsum(cnt_n, axis=1) - cnt_n  # negatives scoring below each grade
    above_p = cnt_p.sum(axis=1, keepdims=True) - np.cumsum(cnt_p, axis=1)  # positives above it
    v10 = (np.take_along_axis(below_n, p_idx, 1) + 0.5 * np.take_along_axis(cnt_n, p_idx, 1)) / neg.shape[1]
    v01 = (np.take_along_axis(above_p, n_idx, 1) + 0.5 * np.take_along_axis(cnt_p, n_idx, 1)) / pos.shape[1]
    return v10.mean(axis=1), v10, v01


def _check_variance_defined(m: int, n: int) -> None:
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance is undefined with {m} positive and {n} negative unit(s); "
                         "it needs at least 2 of each")


def delong_covariance(truth, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix (k x k) for k scores of the same units."""
    aucs, v10, v01 = delong_components(truth, scores)
    m, n = v10.shape[1], v01.shape[1]
    _check_variance_defined(m, n)
    return aucs, np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n


def clustered_delong_covariance(truth, scores, clusters) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their cluster-aware covariance (Obuchowski 1997) for k scores of clustered units.

    ``clusters`` labels each unit (e.g. the patient of a lumbar level); units of one cluster are
    correlated, clusters independent. With one unit per cluster this equals DeLong's covariance.
    """
    t = np.asarray(truth).astype(bool)
    aucs, v10, v01 = delong_components(t, scores)
    _, cl = np.unique(np.asarray(clusters), return_inverse=True)
    n_cl = int(cl.max()) + 1
    cp, cn = cl[t], cl[~t]
    m, n = cp.size, cn.size
    m_i = np.bincount(cp, minlength=n_cl)
    n_i = np.bincount(cn, minlength=n_cl)
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2:
        raise ValueError(f"the clustered variance needs positive and negative units in at least 2 clusters "
                         f"each ({i10} and {i01} here)")
    k = aucs.size
    x = np.stack([np.bincount(cp, weights=v10[j], minlength=n_cl) for j in range(k)])  # (k, clusters)
    y = np.stack([np.bincount(cn, weights=v01[j], minlength=n_cl) for j in range(k)])
    dx = x - aucs[:, None] * m_i[None, :]
    dy = y - aucs[:, None] * n_i[None, :]
    s10 = i10 / ((i10 - 1) * m) * dx @ dx.T
    s01 = i01 / ((i01 - 1) * n) * dy @ dy.T
    s11 = n_cl / (n_cl - 1) * dx @ dy.T
    return aucs, s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def auc_score_interval(auc: float, m: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Score-type interval of an AUC that stays informative at AUC 0 or 1 (Newcombe 2006, method 5).

    Solves (AUC - theta)^2 = z^2 V(theta) with the Hanley-McNeil variance as a function of theta,
    V(theta) = theta (1 - theta) [1 + (N* - 1) ((1 - theta) / (2 - theta) + theta / (1 + theta))] / (m n),
    N* = (m + n) / 2 (Newcombe, Stat Med 2006;25:559-573).
    """
    z2 = stats.norm.ppf(1 - alpha / 2) ** 2
    n_star = (m + n) / 2.0

    def f(theta: float) -> float:
        v = theta * (1 - theta) * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / (m * n)
        return (auc - theta) ** 2 - z2 * v

    eps = 1e-12
    lo = 0.0 if auc <= eps else optimize.brentq(f, 0.0, auc - eps) if f(auc - eps) < 0 else auc
    hi = 1.0 if auc >= 1 - eps else optimize.brentq(f, auc + eps, 1.0) if f(auc + eps) < 0 else auc
    return float(lo), float(hi)


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its standard error, confidence interval, unit counts and how the CI was made.

    ``method``: ``DeLong`` (Wald) or ``score`` (:func:`auc_score_interval`); ``flag`` says why a
    DeLong interval was not usable (zero variance, or the Wald interval leaving [0, 1]).
    """

    auc: float
    se: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int
    method: str = "DeLong"
    flag: str | None = None


def interval_for(auc: float, se: float, m: int, n: int, alpha: float = 0.05,
                 all_tied: bool = False) -> tuple[float, float, str, str | None]:
    """The CI of an AUC: DeLong Wald, or the score interval with a flag when that is degenerate."""
    z = stats.norm.ppf(1 - alpha / 2)
    if se <= 1e-12:
        why = ("all scores tied (reader used one grade): AUC 0.5 carries no information" if all_tied
               else f"AUC {auc:.3f} with zero DeLong variance (complete separation)")
        return (*auc_score_interval(auc, m, n, alpha), "score", f"degenerate: {why}; score interval")
    lo, hi = auc - z * se, auc + z * se
    if lo < 0 or hi > 1:
        return (*auc_score_interval(auc, m, n, alpha), "score",
                "boundary: the DeLong Wald interval leaves [0, 1]; score interval")
    return lo, hi, "DeLong", None


def auc_ci(truth, score, alpha: float = 0.05, interval: str = "wald") -> AUCResult:
    """Empirical AUC with DeLong standard error and CI.

    ``interval="wald"``: DeLong's Wald interval clipped to [0, 1] (as pROC), with a ``flag`` when it is
    degenerate or leaves [0, 1]; ``"auto"``: in those cases the score interval instead (the study
    report). Raises ValueError with fewer than 2 positive or 2 negative units (variance undefined).
    """
    if interval not in ("wald", "auto"):
        raise ValueError("interval must be 'wald' or 'auto'")
    t = np.asarray(truth).astype(bool)
    aucs, cov = delong_covariance(t, score)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    auc = float(aucs[0])
    m, n = int(t.sum()), int((~t).sum())
    tied = np.unique(np.asarray(score, dtype=float)).size == 1
    lo, hi, method, flag = interval_for(auc, se, m, n, alpha, tied)
    if interval == "wald" and method != "DeLong":
        z = stats.norm.ppf(1 - alpha / 2)
        lo, hi, method = max(0.0, auc - z * se), min(1.0, auc + z * se), "DeLong"
        flag = flag.replace("; score interval", "; Wald interval kept (interval='auto' gives the score interval)")
    return AUCResult(auc, se, lo, hi, m, n, method, flag)


@dataclass(frozen=True)
class PairedAUCTest:
    """DeLong's test of two correlated AUCs (same units): difference, SE, z and two-sided p."""

    auc1: float
    auc2: float
    diff: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    flag: str | None = None


def delong_paired_test(truth, score1, score2, alpha: float = 0.05) -> PairedAUCTest:
    """Compare the AUCs of two scores of the same units (DeLong 1988), two-sided: AUC1 - AUC2.

    A non-zero difference with zero variance has no valid p-value: p is NaN and ``flag`` says why.
    """
    aucs, cov = delong_covariance(truth, np.vstack([score1, score2]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    flag = None
    if se <= 1e-12:
        z, p = (0.0, 1.0) if abs(diff) <= 1e-12 else (float("nan"), float("nan"))
        if abs(diff) > 1e-12:
            flag = "degenerate: zero variance of the difference; no test"
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    q = stats.norm.ppf(1 - alpha / 2)
    return PairedAUCTest(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, diff - q * se, diff + q * se,
                         flag)


def roc_points(truth, score) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC curve (false-positive rate, true-positive rate) from (0,0) to (1,1)."""
    t = np.asarray(truth).astype(bool)
    s = np.asarray(score, dtype=float)
    thresholds = np.unique(s)[::-1]
    fpr = [0.0] + [float(((s >= c) & ~t).sum() / max((~t).sum(), 1)) for c in thresholds]
    tpr = [0.0] + [float(((s >= c) & t).sum() / max(t.sum(), 1)) for c in thresholds]
    return np.array(fpr), np.array(tpr)
