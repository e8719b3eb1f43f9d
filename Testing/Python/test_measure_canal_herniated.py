"""Canal AP diameter where a herniation narrows or interrupts the canal (regression tests).

SPIDER spider209 disc 2 (herniated, ~8 mm canal) and spider234 disc 3 had no canal AP diameter:
the thin sagittal slab cuts the dural sac left-right, and the diameter was then read only at the
disc's centre line, where the visible part of the sac did not reach. A severely narrowed canal
must give a small diameter, and a canal fully interrupted at the disc 0 mm with a note (graded as
severe stenosis), never "not measured".
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
from lvp.phantom import Herniation

SEVERE = 3


def _plane(values: np.ndarray, r1: np.ndarray, r2: np.ndarray, valid: np.ndarray | None = None) -> Reformat:
    e1, e2 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    return Reformat(np.zeros(3), e1, e2, r1, r2, values, np.ones(values.shape, bool) if valid is None else valid)


def test_sac_cut_by_the_slab_away_from_the_disc_centre_line():
    """The slab ends at r1 = -9.5 mm and the visible sac does not reach the disc's centre line
    (spider234): the diameter is read at the deepest visible column, not dropped."""
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
    ap = m.value("canal_ap_diameter_mm")
    assert ap is not None and ap == pytest.approx(14.0 * np.sqrt(1 - (0.5 / 8.0) ** 2), abs=1.0)
    assert m.value("dural_sac_area_mm2") is None  # area not measurable when cut
    assert any("cut by the field of view" in n for n in m.notes)


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
    # With the sac cut by the slab there is no area: the small AP diameter grades as severe.
    m = slab_levels["L4-L5"]
    assert m.value("dural_sac_area_mm2") is None
    g = grade_canal(m, GradingRules())
    assert g.grade == SEVERE and g.measurement == "canal_ap_diameter_mm"


def test_canal_interrupted_at_the_disc_gives_zero_with_a_note():
    """The herniation closes the canal completely over the disc's height: 0 mm, with a note."""
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
    assert m.value("canal_ap_diameter_mm") == 0.0
    assert any("interrupted" in n for n in m.notes)
    g = grade_canal(m, GradingRules())
    assert g.grade == SEVERE and g.measurement == "canal_ap_diameter_mm"
    # Levels with a canal are unaffected.
    assert measure_levels(vol, lab)["L3-L4"].value("canal_ap_diameter_mm") == pytest.approx(
        ph.disc("L3-L4").canal_ap_mm, abs=0.8)
