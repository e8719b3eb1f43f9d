"""New reader-study statistics against published reference values and independent computations.

* Krippendorff's alpha: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the
  4 observers x 12 units example with missing values: nominal 0.743, ordinal 0.815, interval 0.849.
* ICC confidence intervals: psych::ICC on the Shrout & Fleiss (1979) data (Table 2), as printed in
  the psych manual: ICC1 -0.13 to 0.72, ICC2 0.019 to 0.76, ICC3 0.34 to 0.95.
* Crossed random effects REML: lme4's fit of the Penicillin data (Davies & Goldsmith 1972; Bates,
  lme4 book ch. 2): variances plate 0.7169, sample 3.7311, residual 0.3024, intercept 22.9722 (SE
  0.8086), REML criterion 330.8606.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvp.study.agreement import (
    alpha_from_coincidences,
    bootstrap_weights,
    coincidences,
    fleiss_from_sums,
    fleiss_kappa,
    fleiss_parts,
    icc,
    krippendorff_alpha,
    ratings_to_counts,
)
from lvp.study.mixed import fit_crossed_reml
from lvp.study.roc import auc_ci, auc_score_interval, clustered_delong_covariance, delong_covariance

N = np.nan
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
])
PENICILLIN = Path(__file__).parent / "data" / "penicillin.csv"


@pytest.mark.parametrize("metric,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_published_example(metric, published):
    assert krippendorff_alpha(KRIPPENDORFF_2011, [1, 2, 3, 4, 5], metric) == pytest.approx(published, abs=5e-4)


def test_alpha_and_fleiss_from_per_unit_sums_equal_direct():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 60)
    ratings = np.clip(truth[:, None] + rng.integers(-1, 2, (60, 5)), 0, 3)  # units x raters
    counts = ratings_to_counts(ratings, [0, 1, 2, 3])
    direct = krippendorff_alpha(ratings.T, [0, 1, 2, 3], "ordinal")
    assert alpha_from_coincidences(coincidences(counts).sum(axis=0), [0, 1, 2, 3]) == pytest.approx(direct)
    p_u, c = fleiss_parts(counts)
    assert fleiss_from_sums(p_u.sum(), c.sum(axis=0), len(c)) == pytest.approx(fleiss_kappa(counts))
    # A bootstrap replicate (weights = draw counts) equals the statistic of the resampled units.
    w = bootstrap_weights(60, 1, seed=3)[0]
    idx = np.repeat(np.arange(60), w.astype(int))
    o = (coincidences(counts) * w[:, None, None]).sum(axis=0)
    assert alpha_from_coincidences(o, [0, 1, 2, 3]) == pytest.approx(
        krippendorff_alpha(ratings[idx].T, [0, 1, 2, 3], "ordinal"))
    assert fleiss_from_sums(w @ p_u, w @ c, w.sum()) == pytest.approx(fleiss_kappa(counts[idx]))


def test_icc_confidence_intervals_match_psych():
    x = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    ci = icc(x).ci
    assert ci["icc1"] == pytest.approx((-0.13, 0.72), abs=0.005)
    assert ci["icc2"] == pytest.approx((0.019, 0.76), abs=0.0015)
    assert ci["icc3"] == pytest.approx((0.34, 0.95), abs=0.005)


def test_crossed_reml_matches_lme4_penicillin():
    table = np.loadtxt(PENICILLIN, delimiter=",", comments="#")  # 24 plates x 6 samples
    y = table.ravel()
    plate, sample = np.repeat(np.arange(24), 6), np.tile(np.arange(6), 24)
    fit = fit_crossed_reml(y, np.ones((y.size, 1)), sample, plate, ["(Intercept)"])
    assert fit.converged
    assert fit.var_g1 == pytest.approx(3.7311, rel=2e-4)
    assert fit.var_g2 == pytest.approx(0.7169, rel=2e-4)
    assert fit.var_resid == pytest.approx(0.3024, rel=2e-4)
    assert fit.effect("(Intercept)")["estimate"] == pytest.approx(22.9722, abs=1e-4)
    assert fit.effect("(Intercept)")["se"] == pytest.approx(0.8086, abs=2e-4)
    assert fit.reml_deviance == pytest.approx(330.8606, abs=1e-3)


def test_crossed_reml_recovers_a_simulated_time_ratio():
    rng = np.random.default_rng(5)
    readers, cases = 8, 300
    rd = np.repeat(np.arange(readers), 2 * cases)
    cs = np.tile(np.repeat(np.arange(cases), 2), readers)
    arm = np.tile([0, 1], readers * cases)
    period = (rng.random(rd.size) < 0.5).astype(float)
    y = (np.log(120) + np.log(0.6) * arm + 0.1 * period + rng.normal(0, 0.3, readers)[rd]
         + rng.normal(0, 0.4, cases)[cs] + rng.normal(0, 0.2, rd.size))
    fit = fit_crossed_reml(y, np.column_stack([np.ones_like(y), arm, period]), rd, cs, ["1", "arm", "period"])
    e = fit.effect("arm")
    assert e["ci_low"] < np.log(0.6) < e["ci_high"]
    assert fit.var_g2 == pytest.approx(0.16, rel=0.2) and fit.var_resid == pytest.approx(0.04, rel=0.1)


def test_clustered_delong_reduces_to_delong_for_singletons_and_widens_for_clusters():
    rng = np.random.default_rng(2)
    n = 200
    patient = np.repeat(np.arange(40), 5)
    frailty = rng.normal(0, 1, 40)[patient]
    truth = (frailty + rng.normal(0, 1, n)) > 0.5
    scores = np.vstack([np.round(np.clip(truth + frailty * 0.8 + rng.normal(1, 0.8, n), 0, 3)) for _ in range(2)])
    a, c = delong_covariance(truth, scores)
    a1, c1 = clustered_delong_covariance(truth, scores, np.arange(n))
    np.testing.assert_allclose(c1, c, rtol=1e-10)
    _, c5 = clustered_delong_covariance(truth, scores, patient)
    assert c5[0, 0] > c[0, 0]  # positively correlated levels of a patient: more variance


def test_delong_refused_with_one_positive_and_degenerate_auc_gets_score_interval():
    with pytest.raises(ValueError, match="undefined"):
        auc_ci([1, 0, 0, 0], [3, 1, 0, 2])
    legacy = auc_ci([1, 1, 1, 0, 0, 0, 0], [3, 3, 2, 1, 0, 0, 1])  # default: Wald kept, but flagged
    assert (legacy.ci_low, legacy.ci_high) == (1.0, 1.0) and legacy.flag.startswith("degenerate")
    perfect = auc_ci([1, 1, 1, 0, 0, 0, 0], [3, 3, 2, 1, 0, 0, 1], interval="auto")
    assert perfect.auc == 1.0 and perfect.se == 0
    assert perfect.method == "score" and perfect.flag.startswith("degenerate")
    assert 0.5 < perfect.ci_low < 1.0 and perfect.ci_high == 1.0
    tied = auc_ci([1, 1, 0, 0, 0], [2, 2, 2, 2, 2], interval="auto")
    assert tied.auc == 0.5 and "tied" in tied.flag and tied.ci_low < 0.5 < tied.ci_high
    # Away from the boundary the score interval agrees with DeLong's to the first decimals.
    lo, hi = auc_score_interval(0.75, 300, 300)
    assert (hi - lo) == pytest.approx(2 * 1.96 * 0.0205, rel=0.2)


def test_rank_and_counting_delong_paths_agree_with_brute_force():
    from test_study_stats import _brute_delong

    rng = np.random.default_rng(9)
    truth = rng.random(70) < 0.4
    cont = np.vstack([truth * 0.8 + rng.normal(0, 1, 70), truth * 0.4 + rng.normal(0, 1, 70)])  # rank path
    _, cov = delong_covariance(truth, cont)
    np.testing.assert_allclose(cov, _brute_delong(truth, cont[0], cont[1]), rtol=1e-12)
    grades = np.clip(np.round(cont + 1.5), 0, 3)  # ordinal: counting path
    _, cov = delong_covariance(truth, grades)
    np.testing.assert_allclose(cov, _brute_delong(truth, grades[0], grades[1]), rtol=1e-12)
    _, cov_rank = delong_covariance(truth, grades + 1e-9 * 0.5)  # not integer: rank path, same ties
    np.testing.assert_allclose(cov, cov_rank, rtol=1e-9)
