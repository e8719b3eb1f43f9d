"""Grading rules: what is graded on which input, what is withheld and why (issue 15)."""

import json

import numpy as np
import pytest
from phantom_helpers import labelled

from lvp.errors import ConfigError
from lvp.grading import (
    BUNDLED_CALIBRATION,
    CALIBRATED,
    HEURISTIC,
    PATHOLOGIES,
    PREDICTS,
    GradingRules,
    grade_level,
    load_calibration,
    ordinal_probabilities,
    with_missing_levels,
)
from lvp.measure import measure_levels
from lvp.measure.types import LevelMeasurements
from lvp.validation.phantom import Herniation

SPEC = {"herniations": {"L4-L5": Herniation(4.0, 12.0), "L3-L4": Herniation(7.0, 4.0)}, "bulges": {"L2-L3": 2.0},
        "stenoses": {"L1-L2": 2.5}}
LITERATURE = GradingRules(calibration="")
VALID = {"valid": True, "sac_whole": True, "disc_whole": True, "voxel_mm": 1.0, "coverage_mm": [30.0, 30.0]}


@pytest.fixture(scope="module")
def iso():
    """A wide, 1 mm isotropic phantom: the axial reformat is a valid section (whole disc and sac)."""
    ph, vol, lab, _ = labelled(spacing=(1.0, 1.0, 1.0), **SPEC)
    return ph, {k: grade_level(m) for k, m in measure_levels(vol, lab).items()}


@pytest.fixture(scope="module")
def slab():
    """The same spine as a SPIDER-like sagittal slab (14 mm wide, 1.5 mm slices): sagittal-only input."""
    ph, vol, lab, _ = labelled(spacing=(1.5, 1.0, 1.0), lr_extent_mm=14.0, **SPEC)
    levels = measure_levels(vol, lab)
    return levels, {k: grade_level(m) for k, m in levels.items()}


def level(name="L4-L5", section=None, **values) -> LevelMeasurements:
    m = LevelMeasurements(name, 95, np.zeros(3))
    for k, v in values.items():
        m.add(k, v, "")
    m.section = dict(section or {})
    m.canal_visualised = True
    return m


TYPICAL = {
    "posterior_displacement_mm": 2.0,
    "herniation_base_width_mm": 10.0,
    "displacement_circumference_fraction": 0.2,
    "canal_ap_diameter_mm": 13.0,
    "disc_signal_ratio": 0.15,
    "disc_height_middle_mm": 8.0,
}


def test_fardon_types_on_a_valid_axial_section(iso):
    _, grades = iso
    assert grades["T12-L1"]["herniation"].name == "none"
    assert grades["L2-L3"]["herniation"].name == "bulge"
    assert grades["L4-L5"]["herniation"].name == "protrusion"  # displacement < base width
    assert grades["L3-L4"]["herniation"].name == "extrusion"  # displacement > base width
    for g in grades.values():
        assert g["herniation"].confidence_kind == HEURISTIC and "Fardon" in g["herniation"].rule


def test_sagittal_slab_withholds_canal_recess_and_fardon_type_but_shows_the_measurements(slab):
    levels, grades = slab
    for name, g in grades.items():
        for side in ("lateral_recess_left", "lateral_recess_right"):
            assert g[side].grade is None and "bony" in g[side].reason
        assert g["canal_stenosis"].grade is None and g["canal_stenosis"].status == "not assessable"
        h = g["herniation"]
        assert h.grade is None
        if levels[name].value("posterior_displacement_mm") is not None:
            assert "needs an axial series" in h.reason
            assert h.value == pytest.approx(levels[name].value("posterior_displacement_mm"))
            # The probability is named for the label it predicts, and marked calibrated.
            assert [q["name"] for q in h.predicted] == [PREDICTS["herniation"], PREDICTS["bulging"]][: len(h.predicted)]
            assert all(q["kind"] == CALIBRATED for q in h.predicted)
    lumbar = [g["canal_stenosis"] for n, g in grades.items() if n.startswith("L")]
    assert any("needs an axial series" in c.reason and c.value is not None for c in lumbar)  # AP shown


def test_canal_graded_by_dural_sac_area_only_with_literature_thresholds(iso):
    ph, grades = iso
    narrow, normal = grades["L1-L2"]["canal_stenosis"], grades["L4-L5"]["canal_stenosis"]
    assert narrow.measurement == normal.measurement == "dural_sac_area_mm2"
    assert normal.name == "none" and narrow.value < normal.value
    assert narrow.probabilities[0] < normal.probabilities[0]
    for area, name in ((150.0, "none"), (88.0, "mild"), (60.0, "moderate"), (20.0, "moderate")):
        m = level(section=VALID, dural_sac_area_mm2=area, **TYPICAL)
        g = grade_level(m)["canal_stenosis"]
        assert g.name == name, (area, g.name)
        assert g.probabilities[3] == 0.0  # "severe" is morphological: never from an area
        assert g.confidence_kind == HEURISTIC and "Schonstrom" in g.rule and "Schizas" not in g.rule.split(";")[0]


def test_no_lumbar_stenosis_criteria_at_cord_level_and_none_where_the_canal_vanishes():
    for name in ("T12-L1", "T11-T12", "T9-T10"):
        g = grade_level(level(name, section=VALID, dural_sac_area_mm2=40.0, **TYPICAL))["canal_stenosis"]
        assert g.grade is None and "cord level" in g.reason
    m = level("L3-L4", section=VALID, **TYPICAL)
    m.canal_visualised = False
    g = grade_level(m)["canal_stenosis"]
    assert g.grade is None and "canal not visualised" in g.reason


def test_axial_series_area_is_used_and_its_source_named():
    m = level("L4-L5", **TYPICAL)  # sagittal-only: no valid section of its own
    assert grade_level(m)["canal_stenosis"].grade is None
    g = grade_level(m, axial_area={"value": 70.0, "source": "axial series slice 12"})["canal_stenosis"]
    assert g.name == "moderate" and g.source == "axial series slice 12"


def test_a_disc_cut_by_the_field_of_view_is_not_graded():
    m = level("T11-T12", section=VALID, dural_sac_area_mm2=150.0, **TYPICAL)
    m.cut_by_fov = True
    g = grade_level(m)
    assert set(g) == set(PATHOLOGIES)
    assert all(x.grade is None and "cut by the field of view" in x.reason for x in g.values())


def test_thin_bright_disc_is_not_graded_pfirrmann_or_narrowing():
    """spider209 L5-S: a collapsed disc (Pfirrmann V) with a bright centre was "Pfirrmann I, no narrowing 0.97"."""
    g = grade_level(level("L5-S", **{**TYPICAL, "disc_height_middle_mm": 4.0, "disc_signal_ratio": 0.52}))
    for name in ("pfirrmann", "narrowing"):
        assert g[name].grade is None and "disagree" in g[name].reason
    ok = grade_level(level("L5-S", **{**TYPICAL, "disc_height_middle_mm": 4.0, "disc_signal_ratio": 0.07}))
    assert ok["pfirrmann"].grade >= 4 and ok["narrowing"].name == "narrowing"


def test_grade_objects_match_the_schema(iso, slab):
    for grades in (iso[1], slab[1]):
        for lv in grades.values():
            assert set(lv) == set(PATHOLOGIES)
            for g in lv.values():
                d = g.to_dict()
                assert {"grade", "name", "probabilities", "confidence", "confidence_kind", "status", "reason",
                        "predicted", "source"} <= set(d)
                if g.grade is not None:
                    assert sum(d["probabilities"]) == pytest.approx(1.0, abs=1e-3)
                    assert d["confidence"] == pytest.approx(max(d["probabilities"]), abs=1e-3)
                    assert d["confidence_kind"] in (CALIBRATED, HEURISTIC) and d["status"] == "graded"
                else:
                    assert d["confidence"] is None and d["reason"].startswith("not assessable")


def test_soft_scores_are_ordinal_and_centred_on_thresholds():
    p = ordinal_probabilities(100.0, (100.0, 76.0), 8.0)
    assert p[0] == pytest.approx(0.5, abs=0.01) and p[1] == pytest.approx(0.5, abs=0.01)
    far = ordinal_probabilities(20.0, (100.0, 76.0), 8.0)
    assert np.argmax(far) == 2 and far[2] > 0.99


def test_measured_error_widens_the_probabilities():
    cal = load_calibration()
    assert cal.get("measurement_error"), "the bundled calibration carries the measured measurement error"
    m = level("L4-L5", **{**TYPICAL, "disc_signal_ratio": 0.05, "disc_height_middle_mm": 4.0})
    with_error, without = grade_level(m)["pfirrmann"], grade_level(m, error=False)["pfirrmann"]
    assert with_error.confidence < without.confidence
    g = grade_level(level(section=VALID, dural_sac_area_mm2=90.0, **TYPICAL))["canal_stenosis"]
    assert "measured network-vs-reference error" in g.rule or "a-priori error" in g.rule


def test_rules_are_configurable_from_yaml(tmp_path):
    m = level(section=VALID, dural_sac_area_mm2=90.0, **TYPICAL)
    assert grade_level(m)["canal_stenosis"].name == "mild"
    path = tmp_path / "rules.yaml"
    path.write_text('calibration: ""\n')
    assert grade_level(level(**TYPICAL), GradingRules.from_yaml(path))["pfirrmann"].confidence_kind == HEURISTIC
    path.write_text("canal_area_mm2: [80, 60]\n")
    assert grade_level(m, GradingRules.from_yaml(path))["canal_stenosis"].name == "none"
    path.write_text("no_such_rule: 1\n")
    with pytest.raises(ConfigError):
        GradingRules.from_yaml(path)


def test_missing_measurements_are_not_assessable():
    g = grade_level(LevelMeasurements("L4-L5", 95, np.zeros(3)))
    assert all(x.grade is None and x.name == "not assessable" for x in g.values())


def test_bundled_calibration_is_fitted_without_the_validation_patients():
    from lvp.validation.grades import VALIDATION_CASES

    cal = load_calibration()
    assert BUNDLED_CALIBRATION.is_file() and cal["schema"] == "lvp-grading-calibration"
    assert set(cal["models"]) == {"herniation", "bulging", "narrowing", "pfirrmann"}
    assert sorted(cal["validation_patients"]) == sorted(VALIDATION_CASES)
    assert all(case not in cal["data"] for case in VALIDATION_CASES)
    g = grade_level(level(**TYPICAL))
    for name in ("narrowing", "pfirrmann"):
        assert g[name].grade is not None and g[name].confidence_kind == CALIBRATED
        assert "LVP model fitted" in g[name].rule and cal["fitted"] in g[name].rule
        assert sum(g[name].probabilities) == pytest.approx(1.0, abs=1e-6)


def test_calibration_file_can_be_given_as_a_path(tmp_path):
    cal = load_calibration()
    changed = dict(cal, models=dict(cal["models"], narrowing=dict(cal["models"]["narrowing"], intercept=50.0)))
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(changed))
    assert grade_level(level(**TYPICAL), GradingRules(calibration=str(path)))["narrowing"].grade == 1
    path.write_text("{}")
    with pytest.raises(ConfigError):
        grade_level(level(**TYPICAL), GradingRules(calibration=str(path)))


def _sweep(name, values, grade, score):
    return [score(grade_level(level(**{**TYPICAL, name: v}))[grade]) for v in values]


def test_calibrated_probabilities_are_monotone_in_their_measurements():
    p_ge4 = lambda g: g.probabilities[3] + g.probabilities[4]
    p_label = lambda k: lambda g: {q["name"]: q["value"] for q in g.predicted}[PREDICTS[k]]
    disp = _sweep("posterior_displacement_mm", np.linspace(0, 10, 21), "herniation", p_label("herniation"))
    assert np.all(np.diff(disp) >= 0) and disp[-1] > disp[0]
    height = _sweep("disc_height_middle_mm", np.linspace(3, 14, 23), "narrowing", lambda g: g.probabilities[1])
    assert np.all(np.diff(height) <= 0) and height[0] > 0.5 > height[-1]
    signal = np.linspace(0.04, 0.24, 20)  # above 0.25 a thin disc is withheld; 8 mm is not thin
    ge4 = _sweep("disc_signal_ratio", signal, "pfirrmann", p_ge4)
    assert np.all(np.diff(ge4) <= 1e-12) and ge4[0] > 0.5 > ge4[-1]
    bulge = _sweep("disc_signal_ratio", signal, "herniation", p_label("bulging"))
    assert np.all(np.diff(bulge) <= 1e-12)


def test_every_expected_level_gets_a_row():
    class Lab:
        vertebrae = [type("V", (), {"name": n})() for n in ("T12", "L1", "L2", "L3", "L4", "L5")]

    found = [{"level": n, "grades": {}} for n in ("T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L5-S")]
    rows = with_missing_levels(found, Lab())
    assert [r["level"] for r in rows] == ["T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S"]
    missing = rows[5]
    assert missing["status"] == "not found" and "between L4 and L5" in missing["notes"][0]
    assert all(g["status"] == "not found" and g["grade"] is None for g in missing["grades"].values())
    short = with_missing_levels(found[:3], type("Lab", (), {"vertebrae": []})())
    assert [r["level"] for r in short][-4:] == ["L2-L3", "L3-L4", "L4-L5", "L5-S"]
    assert "outside the field of view" in short[-1]["notes"][0]
