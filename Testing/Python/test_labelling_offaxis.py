"""Bone and sacrum the network finds beside the spine do not shift the level count.

Model 1.1.0 on full-field-of-view 1.5 T series labels the sacral ala / ilium (~30 mm to the side
of the spine) as vertebra and pieces of soft tissue away from the spine as sacrum: the labelling
took the side bone for an extra L5 above the sacrum and named every level one too high. Here the
phantom (wide field of view, sacrum class) gets such a lateral bone blob below the lowest disc and
a stray sacrum blob larger than the real sacrum beside the lumbar spine: the names stay the
phantom's own, the sacrum anchors, and the numbering stays confident (it is not fooled).
"""

from __future__ import annotations

import numpy as np
import pytest
from phantom_helpers import read

from lvp.labelling import label_levels
from lvp.labels import CANAL, SACRUM, SACRUM_LABEL, VERTEBRA
from lvp.validation.phantom import make_phantom


@pytest.fixture(scope="module")
def wide_spine():
    ph = make_phantom(spacing=(2.0, 1.2, 1.2), lr_extent_mm=130.0)
    vol, sem, lev = read(ph)
    sem = sem.copy()
    sem[lev == SACRUM_LABEL] = SACRUM  # a model with a sacrum class
    return ph, vol, sem, lev


def _centre_lr(sem: np.ndarray) -> int:
    canal_lr = np.nonzero((sem == CANAL).any(axis=(1, 2)))[0]
    return int(round((canal_lr[0] + canal_lr[-1]) / 2))


def _span(mask: np.ndarray, axis: int) -> tuple[int, int]:
    idx = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    return int(idx[0]), int(idx[-1])


def _lateral_bone(sem: np.ndarray, lev: np.ndarray, vol, offset_mm: float) -> np.ndarray:
    """Vertebra class in a body-sized box ``offset_mm`` to the side of the canal, at the height of
    the top of the sacrum (just below the lowest disc), in front of the canal: a sacral ala."""
    out = sem.copy()
    lr0 = _centre_lr(sem) + int(round(offset_mm / vol.spacing[0]))
    s0, s1 = _span(lev == SACRUM_LABEL, 1)
    a0, a1 = _span(lev == SACRUM_LABEL, 2)
    rows = slice(s0 + 3, s0 + 3 + int(round(28 / vol.spacing[1])))
    cols = slice(a0, a0 + int(round(30 / vol.spacing[2])))
    box = (slice(lr0 - 3, lr0 + 4), rows, cols)
    assert (out[box] == 0).all()  # beside the spine, touching nothing
    out[box] = VERTEBRA
    return out


def _stray_sacrum(sem: np.ndarray, lev: np.ndarray, vol) -> tuple[np.ndarray, int]:
    """Sacrum class in a box beside the lumbar spine, larger than the real sacrum; returns the map
    and the box's voxel count."""
    out = sem.copy()
    lr0 = _centre_lr(sem) + int(round(38 / vol.spacing[0]))
    l3 = lev == 43
    s0, s1 = _span(l3, 1)
    a0, a1 = _span(lev == SACRUM_LABEL, 2)
    box = (slice(lr0 - 6, lr0 + 7), slice(s0 - 30, s1 + 30), slice(a0, a1 + 1))
    assert (out[box] == 0).all()
    out[box] = SACRUM
    return out, int(out[box].size)


def _names(lab):
    return [d.name for d in lab.discs], [v.name for v in lab.vertebrae]


def _truth(ph):
    return [d.name for d in ph.discs], [v.name for v in ph.vertebrae]


def test_wide_phantom_reads_confidently(wide_spine):
    ph, vol, sem, lev = wide_spine
    lab = label_levels(sem, vol)
    assert _names(lab) == _truth(ph)
    assert lab.numbering == {"confident": True, "reasons": []}


@pytest.mark.parametrize("offset_mm", [34.0, -36.0])
def test_lateral_bone_below_the_lowest_disc_is_not_an_extra_l5(wide_spine, offset_mm):
    ph, vol, sem, lev = wide_spine
    sem2 = _lateral_bone(sem, lev, vol, offset_mm)
    lab = label_levels(sem2, vol)
    assert _names(lab) == _truth(ph)  # not every level one too high
    assert lab.facts["anchor"] == "sacrum_class"
    assert not lab.facts["bone_above_sacrum"]
    assert lab.numbering == {"confident": True, "reasons": []}
    assert "lateral_bone_ignored" in [w["code"] for w in lab.warnings]
    # The side bone is written as no vertebra (nor as L5).
    added = (sem2 == VERTEBRA) & (sem != VERTEBRA)
    assert not np.isin(lab.labels[added], [41, 42, 43, 44, 45]).any()


def test_stray_sacrum_blob_is_not_the_anchor(wide_spine):
    ph, vol, sem, lev = wide_spine
    sem2, n_stray = _stray_sacrum(sem, lev, vol)
    assert n_stray > int((lev == SACRUM_LABEL).sum())  # larger than the real sacrum
    lab = label_levels(sem2, vol)
    assert _names(lab) == _truth(ph)
    assert lab.facts["anchor"] == "sacrum_class"
    assert lab.numbering == {"confident": True, "reasons": []}
    # The real sacrum is labelled as the sacrum, the stray blob is not.
    assert (lab.labels[lev == SACRUM_LABEL] == SACRUM_LABEL).mean() > 0.95
    stray = (sem2 == SACRUM) & (sem != SACRUM)
    assert (lab.labels[stray] == SACRUM_LABEL).mean() < 0.05


def test_both_at_once_and_a_real_l5_above_the_sacrum_still_counts(wide_spine):
    """The side-bone rule only drops bone off the canal line: an on-axis vertebra between the
    lowest disc and the sacrum (the L5-S disc missed) is still seen and flags the numbering."""
    ph, vol, sem, lev = wide_spine
    sem2 = _lateral_bone(sem, lev, vol, 34.0)
    sem2, _ = _stray_sacrum(sem2, lev, vol)
    lab = label_levels(sem2, vol)
    assert _names(lab) == _truth(ph) and lab.numbering["confident"] is True
    missed = sem.copy()
    missed[lev == 100] = VERTEBRA  # L5-S disc not segmented: L5 and its disc one bone mass
    lab = label_levels(missed, vol)
    assert lab.numbering["confident"] is False
