"""Statistics against textbook examples, scikit-learn and an independent brute-force computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score, roc_curve

from lvp.study.agreement import fleiss_kappa, icc, sensitivity_specificity, weighted_kappa, wilson_ci
from lvp.study.roc import auc_ci, delong_covariance, delong_paired_test, roc_points


def _data(seed: int, n: int = 80):
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    s1 = np.clip(np.round(truth * 1.2 + rng.normal(1.5, 1.0, n)), 0, 3)  # ordinal, many ties
    s2 = np.clip(np.round(truth * 0.6 + rng.normal(1.5, 1.0, n) + 0.3 * s1), 0, 4)
    return truth, s1, s2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_roc_match_sklearn(seed):
    truth, s1, _ = _data(seed)
    assert auc_ci(truth, s1).auc == pytest.approx(roc_auc_score(truth, s1), abs=1e-12)
    fpr, tpr = roc_points(truth, s1)
    ref_fpr, ref_tpr, _ = roc_curve(truth, s1, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def _brute_delong(truth, a, b):
    """DeLong 1988 written out with loops, as an independent check of the vectorised version."""
    pos = [i for i in range(len(truth)) if truth[i]]
    neg = [i for i in range(len(truth)) if not truth[i]]

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    comps = []
    for s in (a, b):
        v10 = [sum(psi(s[i], s[j]) for j in neg) / len(neg) for i in pos]
        v01 = [sum(psi(s[i], s[j]) for i in pos) / len(pos) for j in neg]
        comps.append((v10, v01))
    cov = np.zeros((2, 2))
    for p in range(2):
        for q in range(2):
            s10 = np.cov(comps[p][0], comps[q][0])[0, 1]
            s01 = np.cov(comps[p][1], comps[q][1])[0, 1]
            cov[p, q] = s10 / len(pos) + s01 / len(neg)
    return cov


def test_delong_covariance_and_paired_test_match_brute_force():
    truth, s1, s2 = _data(3, 60)
    _, cov = delong_covariance(truth, np.vstack([s1, s2]))
    np.testing.assert_allclose(cov, _brute_delong(truth, s1, s2), rtol=1e-12)
    test = delong_paired_test(truth, s1, s2)
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert test.se == pytest.approx(se)
    assert test.diff == pytest.approx(roc_auc_score(truth, s1) - roc_auc_score(truth, s2))
    from scipy.stats import norm
    assert test.p_value == pytest.approx(2 * norm.sf(abs(test.diff / se)))
    one = auc_ci(truth, s1)
    assert one.se == pytest.approx(np.sqrt(cov[0, 0]))
    assert one.ci_low < one.auc < one.ci_high


def test_paired_test_of_identical_scores_is_null():
    truth, s1, _ = _data(4)
    t = delong_paired_test(truth, s1, s1)
    assert t.diff == 0 and t.p_value == 1.0


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 5])
def test_weighted_kappa_matches_sklearn(weights, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, 200)
    b = np.clip(a + rng.integers(-1, 2, 200), 0, 3)
    assert weighted_kappa(a, b, [0, 1, 2, 3], weights) == pytest.approx(
        cohen_kappa_score(a, b, labels=[0, 1, 2, 3], weights=weights), abs=1e-12)


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) style worked example (10 subjects, 14 raters, 5 categories), as tabulated in
    # Wikipedia's "Fleiss' kappa" article: P-bar = 0.378, P-e = 0.213, kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [3, 0]])


def test_icc_shrout_fleiss_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges, Table 4 values.
    x = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    r = icc(x)
    expected = {"icc1": 0.17, "icc2": 0.29, "icc3": 0.71, "icc1k": 0.44, "icc2k": 0.62, "icc3k": 0.91}
    for name, value in expected.items():
        assert getattr(r, name) == pytest.approx(value, abs=0.005), name


def test_sensitivity_specificity_and_wilson():
    truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    ss = sensitivity_specificity(truth, pred)
    assert (ss.tp, ss.fn, ss.tn, ss.fp) == (3, 1, 4, 2)
    assert ss.sensitivity == 0.75 and ss.specificity == pytest.approx(4 / 6)
    # Newcombe (1998), Stat Med 17:857, example 81/263: Wilson 0.2553 to 0.3662.
    lo, hi = wilson_ci(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
