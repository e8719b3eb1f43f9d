import numpy as np
import pytest
from phantom_helpers import labelled

from lvp.errors import ConfigError
from lvp.grading import PATHOLOGIES, GradingRules, grade_level, ordinal_probabilities
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
    return {k: grade_level(m) for k, m in levels.items()}


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
    path.write_text("canal_area_mm2: [80, 60, 40]\n")
    assert grade_level(m, GradingRules.from_yaml(path))["canal_stenosis"].name == "none"
    path.write_text("no_such_rule: 1\n")
    with pytest.raises(ConfigError):
        GradingRules.from_yaml(path)


def test_missing_measurements_are_not_assessable():
    g = grade_level(LevelMeasurements("L4-L5", 95, np.zeros(3)))
    assert all(x.grade is None and x.name == "not assessable" for x in g.values())
