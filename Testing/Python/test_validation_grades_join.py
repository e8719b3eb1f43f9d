"""Grades are joined to segmented discs by level name, not by the order of the segmented discs."""

from types import SimpleNamespace

import numpy as np
import pytest

import lvp.labelling
import lvp.measure
from lvp.validation import grades as G
from lvp.validation.cases import SpiderCase


def test_graded_level_names_count_from_the_bottom():
    assert [G.graded_level_name(k) for k in range(1, 10)] == [
        "L5-S", "L4-L5", "L3-L4", "L2-L3", "L1-L2", "T12-L1", "T11-T12", "T10-T11", "T9-T10"
    ]
    assert G.graded_level_name(17) == "T1-T2"
    for bad in (0, 18):
        with pytest.raises(ValueError, match=f"IVD label {bad}"):
            G.graded_level_name(bad)


def test_spider_numbering_and_the_segmented_discs_numbering_agree():
    # One numbering (lvp.labels.SPINE_DISCS_FROM_BOTTOM): the discs LVP segments, counted from the
    # bottom, carry the same names as SPIDER's IVD labels 1..7.
    from lvp.labels import DISC_LABELS, DISCS_FROM_BOTTOM

    assert list(DISCS_FROM_BOTTOM) == [G.graded_level_name(k) for k in range(1, len(DISCS_FROM_BOTTOM) + 1)]
    assert set(DISCS_FROM_BOTTOM) == set(DISC_LABELS) - {"L5-L6"}


def test_a_missed_disc_leaves_its_grade_unassessable_without_shifting_the_others(monkeypatch, tmp_path):
    """The segmentation misses L4-L5 (labelling: ``missing_disc``): the grade of IVD 2 has no
    measurements and IVD 3 (L3-L4) is joined to L3-L4, not to the next segmented disc."""
    found = ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L5-S"]  # cranial -> caudal, L4-L5 missing
    grade_row = {k: 0 for k in G.TARGETS.values()}
    case = SpiderCase("spider1", None, np.zeros((2, 2, 2), np.uint8), [dict(grade_row) for _ in range(6)])
    monkeypatch.setattr(G, "spider_case_ids", lambda data: ["spider1"])
    monkeypatch.setattr(G, "load_spider_case", lambda data, c, path=None: case)
    monkeypatch.setattr(lvp.labelling, "label_levels",
                        lambda sem, img: SimpleNamespace(discs=[SimpleNamespace(name=n) for n in found]))
    height = {n: float(i) for i, n in enumerate(found)}
    monkeypatch.setattr(lvp.measure, "measure_levels", lambda img, lab: {
        n: SimpleNamespace(items={"disc_height_middle_mm": SimpleNamespace(value=height[n])}) for n in found
    })

    rows = G.collect_features(tmp_path)
    assert [r["level"] for r in rows] == ["L5-S", None, "L3-L4", "L2-L3", "L1-L2", "T12-L1"]
    assert rows[1]["measurements"] == {}
    assert rows[2]["measurements"]["disc_height_middle_mm"] == height["L3-L4"]
