import json

import numpy as np
import pytest
from phantom_helpers import labelled

from lvp.errors import ConfigError
from lvp.grading import (
    BUNDLED_CALIBRATION,
    PATHOLOGIES,
    GradingRules,
    grade_level,
    load_calibration,
    ordinal_probabilities,
)
from lvp.measure import measure_levels
from lvp.measure.types import LevelMeasurements
from lvp.phantom import Herniation


@pytest.fixture(scope="module")
def grades():
    ph, vol, lab, _ = labelled(
        herniations={"L4-L5": Herniation(4.0, 12.0), "L3-L4": Herniation(7.0, 4.0)},
        bulges={"L2-L3": 2.0},
        stenoses={"L1-L2": 7.0, "L5-S": 9.5},
        recesses={"L4-L5": (1.5, 6.0)},
    )
    levels = measure_levels(vol, lab)
    return {k: grade_level(m, GradingRules(calibration="")) for k, m in levels.items()}  # literature rules


LITERATURE = GradingRules(calibration="")


def level(**values) -> LevelMeasurements:
    m = LevelMeasurements("L4-L5", 95, np.zeros(3))
    for k, v in values.items():
        m.add(k, v, "")
    return m


TYPICAL = {
    "posterior_displacement_mm": 2.0,
    "herniation_base_width_mm": 10.0,
    "displacement_circumference_fraction": 0.2,
    "canal_ap_diameter_mm": 13.0,
    "disc_signal_ratio": 0.15,
    "disc_height_middle_mm": 8.0,
}


def test_herniation_types_follow_fardon(grades):
    assert grades["T12-L1"]["herniation"].name == "none"
    assert grades["L2-L3"]["herniation"].name == "bulge"
    assert grades["L4-L5"]["herniation"].name == "protrusion"  # displacement < base width
    assert grades["L3-L4"]["herniation"].name == "extrusion"  # displacement > base width


def test_canal_and_recess_grades(grades):
    narrow, normal = grades["L1-L2"]["canal_stenosis"], grades["T12-L1"]["canal_stenosis"]
    assert narrow.value < normal.value and narrow.probabilities[0] < normal.probabilities[0]
    assert normal.name == "none"
    assert grades["L4-L5"]["lateral_recess_left"].grade == 3
    assert grades["L4-L5"]["lateral_recess_right"].grade == 0


def test_grade_objects_match_the_schema(grades):
    for level in grades.values():
        assert set(level) == set(PATHOLOGIES)
        for g in level.values():
            d = g.to_dict()
            assert set(d) == {"grade", "name", "probabilities", "confidence", "measurement", "value", "rule"}
            if g.grade is not None:
                assert sum(d["probabilities"]) == pytest.approx(1.0, abs=1e-3)
                assert d["confidence"] == pytest.approx(max(d["probabilities"]), abs=1e-3)


def test_soft_scores_are_ordinal_and_centred_on_thresholds():
    p = ordinal_probabilities(100.0, (100.0, 76.0, 50.0), 8.0)
    assert p[0] == pytest.approx(0.5, abs=0.01) and p[1] == pytest.approx(0.5, abs=0.06)
    far = ordinal_probabilities(20.0, (100.0, 76.0, 50.0), 8.0)
    assert np.argmax(far) == 3 and far[3] > 0.97


def test_rules_are_configurable_from_yaml(tmp_path):
    m = LevelMeasurements("L4-L5", 95, np.zeros(3))
    m.add("dural_sac_area_mm2", 90.0, "mm2")
    assert grade_level(m)["canal_stenosis"].name == "mild"
    path = tmp_path / "rules.yaml"
    path.write_text('calibration: ""\n')
    assert "Fardon" in grade_level(level(**TYPICAL), GradingRules.from_yaml(path))["herniation"].rule
    path.write_text("canal_area_mm2: [80, 60, 40]\n")
    assert grade_level(m, GradingRules.from_yaml(path))["canal_stenosis"].name == "none"
    path.write_text("no_such_rule: 1\n")
    with pytest.raises(ConfigError):
        GradingRules.from_yaml(path)


def test_missing_measurements_are_not_assessable():
    g = grade_level(LevelMeasurements("L4-L5", 95, np.zeros(3)))
    assert all(x.grade is None and x.name == "not assessable" for x in g.values())


def test_bundled_calibration_loads_and_is_applied():
    cal = load_calibration()
    assert BUNDLED_CALIBRATION.is_file() and cal["schema"] == "lvp-grading-calibration"
    assert set(cal["models"]) == {"herniation", "bulging", "narrowing", "pfirrmann"}
    assert cal["fitted"] and "SPIDER" in cal["data"] and "cross_validation" in cal
    assert cal["cross_validation"]["narrowing_auc"]["value"] > 0.5
    g = grade_level(level(**TYPICAL))
    for name in ("herniation", "narrowing", "pfirrmann"):
        assert g[name].grade is not None
        assert "LVP model fitted" in g[name].rule and cal["fitted"] in g[name].rule
        assert sum(g[name].probabilities) == pytest.approx(1.0, abs=1e-6)
        assert g[name].confidence == pytest.approx(max(g[name].probabilities))
    assert "Verbiest" in g["canal_stenosis"].rule  # no SPIDER grades: literature rule
    # The calibrated narrowing differs from the within-patient rule (which needs disc_height_ratio).
    assert g["narrowing"].measurement == "disc_height_middle_mm"


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
    p_hern = lambda g: g.probabilities[2] + g.probabilities[3]  # noqa: E731
    p_ge4 = lambda g: g.probabilities[3] + g.probabilities[4]  # noqa: E731
    expected = lambda g: float(np.dot(g.probabilities, np.arange(1, 6)))  # noqa: E731
    disp = _sweep("posterior_displacement_mm", np.linspace(0, 10, 21), "herniation", p_hern)
    assert np.all(np.diff(disp) >= 0) and disp[-1] > disp[0]
    canal = _sweep("canal_ap_diameter_mm", np.linspace(6, 20, 15), "herniation", p_hern)
    assert np.all(np.diff(canal) <= 0) and canal[-1] < canal[0]
    height = _sweep("disc_height_middle_mm", np.linspace(3, 14, 23), "narrowing", lambda g: g.probabilities[1])
    assert np.all(np.diff(height) <= 0) and height[0] > 0.5 > height[-1]
    signal = np.linspace(0.04, 0.6, 30)
    ge4 = _sweep("disc_signal_ratio", signal, "pfirrmann", p_ge4)
    assert np.all(np.diff(ge4) <= 1e-12) and ge4[0] > 0.5 > ge4[-1]
    exp = _sweep("disc_signal_ratio", signal, "pfirrmann", expected)
    assert np.all(np.diff(exp) <= 1e-9)
    grades = _sweep("disc_signal_ratio", signal, "pfirrmann", lambda g: g.grade)
    assert np.all(np.diff(grades) <= 0) and grades[0] >= 4 and grades[-1] <= 2
    bulge = _sweep("disc_signal_ratio", signal, "herniation", lambda g: 1 - g.probabilities[0])
    assert np.all(np.diff(bulge) <= 1e-12)


def test_a_missing_model_input_is_not_assessable_not_a_guess():
    for drop, grades in (
        ("canal_ap_diameter_mm", ["herniation"]),
        ("disc_signal_ratio", ["herniation", "narrowing", "pfirrmann"]),
        ("disc_height_middle_mm", ["narrowing", "pfirrmann"]),
    ):
        partial = level(**{k: v for k, v in TYPICAL.items() if k != drop})
        g = grade_level(partial)
        for name in grades:
            assert g[name].grade is None and g[name].name == "not assessable", (drop, name)
            assert g[name].probabilities == [] and g[name].to_dict()["value"] is None
            assert drop in g[name].rule or "signal not measurable" in g[name].rule
        # The literature fallback would have guessed: it is only used when asked for.
        assert grade_level(partial, LITERATURE)["herniation"].grade is not None
