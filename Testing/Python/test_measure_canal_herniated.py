"""Dural sac AP diameter where a herniation narrows or interrupts the canal (regression tests).

Issue 15: the "deepest visible column" rule read 16 mm at an obliterated canal (spider234), and a
canal interrupted at the disc was read as 0 mm and graded severe. Now a sac that the slab cuts
and whose visible part misses the disc's centre line gives no diameter (with a note); a canal
label that vanishes at the disc is "not visualised" (no diameter, the canal grade says so); a
narrowed canal still gives a small, drawn diameter, which on a sagittal slab is not graded.
"""

from __future__ import annotations

import numpy as np
import pytest
from phantom_helpers import labelled, read

from lvp.grading import GradingRules, grade_canal
from lvp.labelling import label_levels
from lvp.labels import CANAL, CANAL_LABEL
from lvp.measure import measure_levels
from lvp.measure.canal import canal_at_disc
from lvp.measure.reformat import Reformat, axis_range
from lvp.measure.types import LevelMeasurements
from lvp.validation.phantom import Herniation


def _plane(values: np.ndarray, r1: np.ndarray, r2: np.ndarray, valid: np.ndarray | None = None) -> Reformat:
    e1, e2 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    return Reformat(np.zeros(3), e1, e2, r1, r2, values, np.ones(values.shape, bool) if valid is None else valid)


def test_sac_cut_by_the_slab_away_from_the_disc_centre_line():
    """The slab ends at r1 = -9.5 mm and the visible sac does not reach the disc's centre line
    (spider234): no diameter is read from some other column."""
    r1, r2 = axis_range(-12.0, 12.0), axis_range(-10.0, 30.0)
    values = np.zeros((r1.size, r2.size), np.int16)
    valid = np.ones(values.shape, bool)
    valid[r1 < -9.5] = False
    # A sac centred at r1 = -10 (outside the slab), AP 14 mm at its centre, 16 mm wide.
    for i, x in enumerate(r1):
        depth = 14.0 * np.sqrt(max(1 - ((x + 10.0) / 8.0) ** 2, 0.0))
        values[i, (r2 >= 5.0) & (r2 < 5.0 + depth)] = CANAL_LABEL
    values[~valid] = 0
    m = LevelMeasurements("L3-L4", 0, np.zeros(3))
    canal_at_disc(m, _plane(values, r1, r2, valid))
    assert m.value("canal_ap_diameter_mm") is None
    assert m.value("dural_sac_area_mm2") is None  # area not measurable when cut
    assert any("misses the disc's centre line" in n for n in m.notes)
    assert m.canal_visualised is True and m.section["sac_whole"] is False


@pytest.fixture(scope="module")
def narrowed():
    """L4-L5: herniation with the canal narrowed to 2.5 mm; thin SPIDER-like slab that cuts the sac."""
    spec = {"herniations": {"L4-L5": Herniation(1.0, 12.0)}, "stenoses": {"L4-L5": 2.5}}
    ph, vol, lab, _ = labelled(spacing=(1.5, 0.8, 0.8), **spec)
    _, slab, lab_slab, _ = labelled(spacing=(1.5, 0.8, 0.8), lr_extent_mm=12.0, **spec)
    return ph, measure_levels(vol, lab), slab, measure_levels(slab, lab_slab)


def test_nearly_closed_canal_gives_a_small_diameter(narrowed):
    ph, levels, _, slab_levels = narrowed
    truth = ph.disc("L4-L5").canal_ap_mm
    assert 1.5 < truth <= 2.5
    for lv in (levels, slab_levels):
        m = lv["L4-L5"]
        assert m.value("canal_ap_diameter_mm") == pytest.approx(truth, abs=0.8 + 0.5)
    # With the sac cut by the slab there is no area: the small AP diameter is shown, not graded.
    m = slab_levels["L4-L5"]
    assert m.value("dural_sac_area_mm2") is None
    g = grade_canal(m, GradingRules())
    assert g.grade is None and "needs an axial series" in g.reason
    assert g.measurement == "canal_ap_diameter_mm" and g.value == pytest.approx(m.value("canal_ap_diameter_mm"))


def test_canal_vanishing_at_the_disc_is_not_visualised_not_zero():
    """The canal label is missing over the disc's height (spider234 T11-T12, where the network's
    canal ended but the CSF column went on): no diameter, "canal not visualised", never severe."""
    ph, vol, _, _ = labelled(spacing=(1.5, 0.8, 0.8), herniations={"L4-L5": Herniation(6.0, 20.0)})
    _, sem, _ = read(ph)
    t = ph.disc("L4-L5")
    # Canonical grid points' distance to the disc's mid-plane: remove the canal within the disc.
    idx = np.stack(np.nonzero(sem == CANAL), axis=1)
    lps = idx.astype(float) @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    inside = np.abs((lps - t.center_lps) @ t.normal_lps) <= t.height_middle_mm / 2
    sem = sem.copy()
    sem[tuple(idx[inside].T)] = 0
    lab = label_levels(sem, vol)
    m = measure_levels(vol, lab)["L4-L5"]
    assert m.value("canal_ap_diameter_mm") is None and m.canal_visualised is False
    assert any("not visualised" in n for n in m.notes)
    g = grade_canal(m, GradingRules())
    assert g.grade is None and "canal not visualised" in g.reason
    # Levels with a canal are unaffected.
    assert measure_levels(vol, lab)["L3-L4"].value("canal_ap_diameter_mm") == pytest.approx(
        ph.disc("L3-L4").canal_ap_mm, abs=0.8)
