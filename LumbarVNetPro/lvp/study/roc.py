"""Empirical ROC analysis: AUC (Mann-Whitney), DeLong variance, confidence interval and paired test.

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845. The AUC is the probability that a
positive unit scores higher than a negative one (ties count one half), i.e. the trapezoidal area
under the empirical ROC curve; scores may be ordinal grades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def _split(truth, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001 - array-likes
    truth = np.asarray(truth).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != truth.size:
        raise ValueError("scores and truth differ in length")
    if truth.all() or not truth.any():
        raise ValueError("AUC needs both positive and negative units")
    return truth, s[:, truth], s[:, ~truth]


def delong_components(truth, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """AUCs of each score row and DeLong's structural components V10 (positives) and V01 (negatives).

    ``scores`` is one score vector or a (k, n) array of k scores of the same n units.
    """
    _, pos, neg = _split(truth, scores)
    # psi(x, y) = 1 if x > y, 1/2 if tied: a (k, m, n) comparison of every positive with every negative.
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10 = psi.mean(axis=2)
    v01 = psi.mean(axis=1)
    return v10.mean(axis=1), v10, v01


def delong_covariance(truth, scores) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """AUCs and their DeLong covariance matrix (k x k) for k scores of the same units."""
    aucs, v10, v01 = delong_components(truth, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its DeLong standard error and confidence interval, and the unit counts."""

    auc: float
    se: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int


def auc_ci(truth, score, alpha: float = 0.05) -> AUCResult:  # noqa: ANN001
    """Empirical AUC with DeLong standard error and Wald CI (clipped to [0, 1], as pROC does)."""
    t = np.asarray(truth).astype(bool)
    aucs, cov = delong_covariance(t, score)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = stats.norm.ppf(1 - alpha / 2)
    auc = float(aucs[0])
    return AUCResult(auc, se, max(0.0, auc - z * se), min(1.0, auc + z * se), int(t.sum()), int((~t).sum()))


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


def delong_paired_test(truth, score1, score2, alpha: float = 0.05) -> PairedAUCTest:  # noqa: ANN001
    """Compare the AUCs of two scores of the same units (DeLong 1988), two-sided."""
    aucs, cov = delong_covariance(truth, np.vstack([score1, score2]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (float("inf") * np.sign(diff), 0.0)
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    q = stats.norm.ppf(1 - alpha / 2)
    return PairedAUCTest(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, diff - q * se, diff + q * se)


def roc_points(truth, score) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Empirical ROC curve (false-positive rate, true-positive rate) from (0,0) to (1,1)."""
    t = np.asarray(truth).astype(bool)
    s = np.asarray(score, dtype=float)
    thresholds = np.unique(s)[::-1]
    fpr = [0.0] + [float(((s >= c) & ~t).sum() / max((~t).sum(), 1)) for c in thresholds]
    tpr = [0.0] + [float(((s >= c) & t).sum() / max(t.sum(), 1)) for c in thresholds]
    return np.array(fpr), np.array(tpr)
