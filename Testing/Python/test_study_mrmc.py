"""Obuchowski-Rockette / Hillis MRMC against the published MRMCaov results for the Van Dyke data.

Data: Testing/Python/data/vandyke.csv (source in its header). Published figures: Smith & Hillis,
"MRMCaov: Multi-Reader Multi-Case ANOVA Software for R", docs/jss/MRMCaov.tex in
github.com/brian-j-smith/MRMCaov (summary() outputs for cov = DeLong with empirical_auc, and
jackknife with binary_sens, rating >= 3).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lvp.study.mrmc import obuchowski_rockette

DATA = Path(__file__).parent / "data" / "vandyke.csv"


@pytest.fixture(scope="module")
def vandyke():
    with DATA.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    x = np.zeros((2, 5, 114))
    truth = np.zeros(114, dtype=int)
    for r in rows:
        x[int(r["treatment"]) - 1, int(r["reader"]) - 1, int(r["case"]) - 1] = float(r["rating"])
        truth[int(r["case"]) - 1] = int(r["truth"])
    assert truth.sum() == 45 and len(rows) == 1140
    return truth, x


def test_vandyke_delong_matches_mrmcaov(vandyke):
    truth, x = vandyke
    r = obuchowski_rockette(truth, x, covariance="delong")
    published = {
        "error_var": 0.0007921325, "cov1": 0.0003420090, "cov2": 0.0003395265, "cov3": 0.0002358497,
        "var_reader": 0.0015364254, "var_treatment_reader": 0.0002045840,
        "ms_t": 0.004796171, "ms_tr": 0.0005510306,
    }
    for name, value in published.items():
        assert getattr(r, name) == pytest.approx(value, rel=2e-6), name
    assert r.f_stat == pytest.approx(4.484854, rel=1e-6)
    assert r.df2 == pytest.approx(15.06611, rel=1e-6)
    assert r.p_value == pytest.approx(0.05123303, rel=1e-6)
    d = r.differences[0]
    assert d["estimate"] == pytest.approx(-0.04380032, rel=1e-6)
    assert d["se"] == pytest.approx(0.0206825, rel=1e-5)
    assert d["ci_low"] == pytest.approx(-0.0878671960, rel=1e-6)
    assert d["ci_high"] == pytest.approx(0.0002665519, rel=1e-5)
    assert r.single["1"]["estimate"] == pytest.approx(0.8970370, abs=1e-7)
    assert r.single["1"]["df"] == pytest.approx(12.59597, rel=1e-6)
    assert (r.single["1"]["ci_low"], r.single["1"]["ci_high"]) == pytest.approx((0.8253461, 0.9687280), abs=1e-7)
    assert (r.single["2"]["ci_low"], r.single["2"]["ci_high"]) == pytest.approx((0.8942155, 0.9874592), abs=1e-7)


def test_vandyke_jackknife_binary_sensitivity_matches_mrmcaov(vandyke):
    truth, x = vandyke
    pos = truth == 1  # binary_sens is computed (and jackknifed) over the 45 diseased cases
    r = obuchowski_rockette(truth[pos], x[:, :, pos], covariance="jackknife",
                            fom=lambda t, s: float((s >= 3).mean()))
    assert (r.error_var, r.cov1, r.cov2, r.cov3) == pytest.approx(
        (0.0023681257, 0.0009943883, 0.0010145903, 0.0006604938), rel=1e-7)
    assert r.var_reader == pytest.approx(0.0049747475, rel=1e-7)
    assert r.f_stat == pytest.approx(6.689493, rel=1e-6)
    assert r.df2 == pytest.approx(15.71732, rel=1e-6)
    assert r.p_value == pytest.approx(0.02008822, rel=1e-6)
    assert r.differences[0]["ci_low"] == pytest.approx(-0.1780371, rel=1e-6)
    assert r.single["2"]["ci_high"] == 1.0  # clipped, as published


def test_identical_modalities_give_no_difference(vandyke):
    truth, x = vandyke
    r = obuchowski_rockette(truth, np.stack([x[0], x[0]]))
    assert r.differences[0]["estimate"] == 0 and r.f_stat == 0 and r.p_value == pytest.approx(1.0)


def test_mrmc_input_checks(vandyke):
    truth, x = vandyke
    with pytest.raises(ValueError):
        obuchowski_rockette(truth, x[:, :1])  # one reader
    with pytest.raises(ValueError):
        obuchowski_rockette(truth, x, covariance="bootstrap")


def test_vandyke_fixed_readers_matches_mrmcaov(vandyke):
    # MRMCaov JSS manuscript, "Fixed readers": mrmc(empirical_auc, treatment, fixed(reader), case),
    # default jackknife covariance.
    truth, x = vandyke
    fr = obuchowski_rockette(truth, x, covariance="jackknife").fixed_readers
    assert fr["denominator"] == pytest.approx(0.0008758604, rel=1e-6)
    assert fr["x2"] == pytest.approx(5.475953, rel=1e-6)
    assert fr["p_value"] == pytest.approx(0.01927984, rel=1e-6)
    d = fr["differences"][0]
    assert d["se"] == pytest.approx(0.01871748, rel=1e-6)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((-0.08048591, -0.00711473), rel=1e-6)
    assert fr["single"]["1"]["se"] == pytest.approx(0.02428971, rel=1e-6)
    assert (fr["single"]["2"]["ci_low"], fr["single"]["2"]["ci_high"]) == pytest.approx((0.9079564, 0.9737183),
                                                                                        abs=1e-7)
    r5 = [p for p in fr["per_reader"] if p["reader"] == "5"][0]
    assert r5["estimate"] == pytest.approx(-0.10016103, rel=1e-6)
    assert r5["se"] == pytest.approx(0.04405746, rel=1e-6)
    assert r5["p_value"] == pytest.approx(0.02300099, rel=1e-5)


def test_vandyke_fixed_cases_matches_mrmcaov(vandyke):
    truth, x = vandyke
    fc = obuchowski_rockette(truth, x).fixed_cases
    assert fc["f"] == pytest.approx(8.704, abs=5e-4)
    assert (fc["df1"], fc["df2"]) == (1, 4)
    assert fc["p_value"] == pytest.approx(0.04195875, rel=1e-6)
    d = fc["differences"][0]
    assert d["se"] == pytest.approx(0.01484629, rel=1e-6)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((-0.08502022, -0.00258042), rel=1e-6)
    assert (fc["single"]["1"]["ci_low"], fc["single"]["1"]["ci_high"]) == pytest.approx((0.8280981, 0.9659760),
                                                                                        abs=1e-7)


def test_closed_form_proportion_jackknife_equals_generic(vandyke):
    truth, x = vandyke
    pos = truth == 1
    binary = (x[:, :, pos] >= 3).astype(float)
    generic = obuchowski_rockette(truth[pos], binary, covariance="jackknife", fom=lambda t, s: float(s.mean()))
    fast = obuchowski_rockette(truth[pos], binary, covariance="jackknife", fom="proportion")
    np.testing.assert_allclose(fast.covariance, generic.covariance, rtol=1e-10)
    assert fast.f_stat == pytest.approx(6.689493, rel=1e-6)
    # Deleting clusters of cases: each case its own cluster gives the same; pairs give a different one.
    n = int(pos.sum())
    same = obuchowski_rockette(truth[pos], binary, covariance="jackknife", fom="proportion", clusters=np.arange(n))
    np.testing.assert_allclose(same.covariance, fast.covariance, rtol=1e-12)
    pairs = obuchowski_rockette(truth[pos], binary, covariance="jackknife", fom="proportion",
                                clusters=np.arange(n) // 2)
    assert not np.allclose(pairs.covariance, fast.covariance)
