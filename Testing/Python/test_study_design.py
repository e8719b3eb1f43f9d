"""The study analysis on incomplete and degenerate designs: what is dropped, why, and what is refused.

Reads are built as exported rows (the shape of ``lvp study export``) and analysed without a database.
"""

from __future__ import annotations

import numpy as np
import pytest

from lvp.study.analysis import analyse, holm
from lvp.study.mrmc import standalone_vs_readers
from lvp.study.report import fmt_p, render_html
from lvp.study.table import columns_from_rows

LEVELS = ["L3-L4", "L4-L5", "L5-S1"]


def _rows(n_cases=40, readers=("r1", "r2", "r3", "r4"), seed=0, skip=(), only_arm=None, perfect=False):
    """Exported rows of a simulated crossover; ``skip``: (reader, arm, case index) reads left out."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(0, 1, (n_cases, len(LEVELS))) + rng.normal(0, 0.6, (n_cases, 1))
    ref = np.digitize(latent, [-0.5, 0.4, 1.0])
    ai = np.clip(ref + (rng.random(ref.shape) < 0.15) * rng.choice([-1, 1], ref.shape), 0, 3)
    rows = []
    for k, rdr in enumerate(readers):
        for arm in ("manual", "ai_assisted"):
            if only_arm and rdr == only_arm[0] and arm != only_arm[1]:
                continue
            for i in range(n_cases):
                if (rdr, arm, i) in skip:
                    continue
                session = 1 + ((i + k + (arm == "ai_assisted")) % 2)
                noise = 0.0 if perfect else rng.normal(0, 0.5 if arm == "manual" else 0.3, len(LEVELS))
                g = np.digitize(latent[i] + noise, [-0.5, 0.4, 1.0])
                if arm == "ai_assisted" and not perfect:
                    g = np.where(rng.random(len(LEVELS)) < 0.6, ai[i], g)
                dur = (100 if arm == "manual" else 60) * np.exp(rng.normal(0, 0.2))
                for lv, level in enumerate(LEVELS):
                    rows.append({"reader": rdr, "case_key": f"c{i:03d}", "arm": arm, "session": session,
                                 "first_duration_s": dur, "version": 1, "level": level, "pathology": "herniation",
                                 "reader_grade": int(g[lv]), "measurement": None, "reference_grade": int(ref[i, lv]),
                                 "ai_grade": int(ai[i, lv]), "started_at": None, "submitted_at": None})
    return rows


def test_reader_who_read_one_arm_is_dropped_with_reason_and_mrmc_still_runs():
    res = analyse(_rows(only_arm=("r4", "manual")), bootstrap=200)["pathologies"]["herniation"]
    design = res["design"]
    assert design["readers"] == ["r1", "r2", "r3"]
    assert design["readers_dropped"] == [{"reader": "r4", "reason": "read only the manual arm"}]
    m = res["auc"]["analyses"]["per_level_clustered"]
    assert "refused" not in m and m["readers"] == 3 and m["units"] == 40 * len(LEVELS)
    assert m["positives"] + m["negatives"] == m["units"] and m["prevalence"] == pytest.approx(
        m["positives"] / m["units"])
    assert res["per_reader_auc"]["manual"]["r4"]["auc"] > 0.5  # still reported per reader


def test_missing_reads_drop_the_units_with_reasons():
    skip = {("r2", "ai_assisted", i) for i in range(5)}
    res = analyse(_rows(skip=skip), bootstrap=200)["pathologies"]["herniation"]
    assert res["design"]["units"] == 35 * len(LEVELS)
    dropped = res["design"]["dropped"]
    assert dropped["cases_dropped_entirely"] == 5 and dropped["units"] == 5 * len(LEVELS)
    assert dropped["reasons"] == {"r2: no ai_assisted read": 5}
    assert res["auc"]["analyses"]["per_level_independent"]["units"] == 35 * len(LEVELS)


def test_a_reader_with_many_gaps_is_dropped_when_that_keeps_more_units():
    skip = {("r3", "manual", i) for i in range(25)}  # r3 missed 25 of 40 cases: 4 x 15 < 3 x 40
    res = analyse(_rows(skip=skip), bootstrap=200)["pathologies"]["herniation"]
    assert res["design"]["readers"] == ["r1", "r2", "r4"]
    assert res["design"]["units"] == 40 * len(LEVELS)
    assert "r3" == res["design"]["readers_dropped"][0]["reader"]
    assert "cost" in res["design"]["readers_dropped"][0]["reason"]


def test_report_shows_dropped_readers_n_prevalence_and_one_sign():
    analysis = analyse(_rows(only_arm=("r4", "ai_assisted")), bootstrap=200)
    page = render_html("t", analysis)
    assert "r4: read only the ai_assisted arm" in page
    assert "AI-assisted - manual" in page and "manual - ai_assisted" not in page
    assert "prevalence" in page and "Wilson 95% CI" in page


def test_perfect_readers_get_flagged_score_intervals_not_zero_width():
    res = analyse(_rows(perfect=True, n_cases=30), bootstrap=200)["pathologies"]["herniation"]
    a = res["per_reader_auc"]["manual"]["r1"]
    assert a["auc"] == 1.0 and a["method"] == "score" and a["flag"].startswith("degenerate")
    assert a["ci_low"] < 1.0


def test_one_positive_unit_is_refused_not_estimated():
    rows = _rows()
    keep = next((r["case_key"], r["level"]) for r in rows if r["reference_grade"] >= 2)
    rows = [r for r in rows if r["reference_grade"] < 2 or (r["case_key"], r["level"]) == keep]
    res = analyse(rows, bootstrap=200)["pathologies"]["herniation"]
    assert all("refused" in v and "undefined" in v["refused"] for v in res["per_reader_auc"]["manual"].values())


def test_holm_and_p_value_format():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.2, float("nan")])[1])
    assert fmt_p(0.0004) == "&lt; 0.001" and fmt_p(0.0123) == "0.012" and fmt_p(float("nan")) == "n/a"


def test_standalone_vs_readers_margin_and_holm_in_the_analysis():
    rows = _rows(n_cases=60)
    cols = columns_from_rows(rows)
    diff = analyse(cols, bootstrap=200)["pathologies"]["herniation"]["ai_standalone"]["vs_readers"]["manual"]
    ni = analyse(cols, bootstrap=200, hypothesis="non_inferiority", margin=0.05)
    v = ni["pathologies"]["herniation"]["ai_standalone"]["vs_readers"]["manual"]
    assert v["difference"] == pytest.approx(diff["difference"]) and v["margin"] == 0.05
    assert v["difference"] == pytest.approx(v["standalone"] - v["reader_mean"])
    assert v["p_value"] < diff["p_value"] / 2 + 1e-12  # one-sided with a margin: more evidence
    assert v["p_holm"] == pytest.approx(v["p_value"])  # a family of one pathology
    with pytest.raises(ValueError):
        standalone_vs_readers([1, 0, 1, 0], [1, 0, 1, 0], [[1, 0, 1, 0]])  # one reader


def test_agreement_between_arms_and_reading_time_ratio():
    analysis = analyse(_rows(n_cases=60), bootstrap=300)
    ag = analysis["pathologies"]["herniation"]["agreement"]
    for arm in ("manual", "ai_assisted"):
        v = ag["arms"][arm]
        assert v["fleiss_kappa_ci"][0] < v["fleiss_kappa"] < v["fleiss_kappa_ci"][1]
        assert v["alpha_ordinal_ci"][0] < v["alpha_ordinal"] < v["alpha_ordinal_ci"][1]
    d = ag["difference"]
    assert d["alpha_ordinal"] == pytest.approx(ag["arms"]["ai_assisted"]["alpha_ordinal"]
                                               - ag["arms"]["manual"]["alpha_ordinal"])
    assert d["alpha_ordinal_ci"][0] < d["alpha_ordinal"] < d["alpha_ordinal_ci"][1]
    ratio = analysis["reading_time"]["model"]["ratio_ai_vs_manual"]
    assert abs(ratio["log_estimate"] - np.log(0.6)) < 3 * ratio["log_se"]  # simulated: AI reads take 60 %
    assert ratio["ci_low"] < ratio["ratio"] < ratio["ci_high"] < 0.7


def test_per_level_per_patient_and_fixed_factor_analyses_are_reported():
    res = analyse(_rows(n_cases=60), bootstrap=200)["pathologies"]["herniation"]
    an = res["auc"]["analyses"]
    assert an["per_patient"]["units"] == 60 and an["per_patient"]["label"].startswith("per patient")
    assert an["per_level_clustered"]["clusters"] == 60
    assert set(res["per_level"]) == set(LEVELS)
    prim = an["per_level_clustered"]
    assert prim["fixed_readers"]["difference"]["estimate"] == pytest.approx(prim["difference"]["estimate"])
    assert prim["fixed_cases"]["df2"] == 3  # (t - 1)(r - 1) with 4 readers
    ss = res["sens_spec"]["reader_average"]["sensitivity"]
    assert ss["difference"]["label"] == "AI-assisted - manual" and ss["clusters"] <= 60
