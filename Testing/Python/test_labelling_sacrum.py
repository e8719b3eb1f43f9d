"""Sacrum anchoring, S1-S2 remnants, transitional anatomy and the numbering check on the phantom.

The phantom's sacrum is drawn as vertebra class (as a model without a sacrum class would see it);
``_with_sacrum_class`` turns it into class 4 (a model trained with a sacrum class). Names are
checked against the phantom's own level map.
"""

from __future__ import annotations

import numpy as np
import pytest
from phantom_helpers import read

from lvp.labelling import label_levels
from lvp.labelling.from_labels import labelling_from_labels
from lvp.labelling.numbering import unique_disc_names
from lvp.labelling.types import DuplicateLevelError, Instance, Labelling
from lvp.labels import DISC, SACRUM, SACRUM_LABEL, VERTEBRA
from lvp.validation.phantom import make_phantom

SPACING = (2.0, 1.2, 1.2)


@pytest.fixture(scope="module")
def spine():
    ph = make_phantom(spacing=SPACING)
    vol, sem, lev = read(ph)
    return ph, vol, sem, lev


def _with_sacrum_class(sem: np.ndarray, lev: np.ndarray) -> np.ndarray:
    out = sem.copy()
    out[lev == SACRUM_LABEL] = SACRUM
    return out


def _remnant(sem: np.ndarray, lev: np.ndarray, below_mm: float, vol) -> tuple[np.ndarray, np.ndarray]:
    """A thin, short disc ``below_mm`` under L5-S inside the sacrum (an S1-S2 remnant)."""
    ls = lev == 100
    bottom = int(np.nonzero(ls.any(axis=(0, 2)))[0][-1])
    r = bottom + int(round(below_mm / vol.spacing[1]))
    foot = ls.any(axis=1)
    ap = np.nonzero(foot.any(axis=0))[0]
    inner = np.zeros_like(foot)
    q = (ap[-1] - ap[0]) // 4
    inner[:, ap[0] + q: ap[-1] - q] = foot[:, ap[0] + q: ap[-1] - q]
    rows = slice(r, r + 2)
    mask = np.zeros(sem.shape, bool)
    mask[:, rows] = inner[:, None, :]
    mask &= lev == SACRUM_LABEL
    out = sem.copy()
    out[mask] = DISC
    return out, mask


def _names(lab):
    return [d.name for d in lab.discs], [v.name for v in lab.vertebrae]


def test_sacrum_class_anchors_a_confident_numbering(spine):
    ph, vol, sem, lev = spine
    lab = label_levels(_with_sacrum_class(sem, lev), vol)
    assert _names(lab) == ([d.name for d in ph.discs], [v.name for v in ph.vertebrae])
    assert lab.facts["anchor"] == "sacrum_class"
    assert lab.numbering == {"confident": True, "reasons": []}
    assert (lab.labels[lev == SACRUM_LABEL] == SACRUM_LABEL).mean() > 0.95


def test_without_sacrum_class_a_long_sacrum_bone_anchors(spine):
    ph, vol, sem, lev = spine
    lab = label_levels(sem, vol, sacrum_class=False)
    assert lab.facts["anchor"] == "sacrum_bone"
    assert lab.numbering["confident"] is True
    assert "sacrum_not_segmented" not in [w["code"] for w in lab.warnings]  # retired


def test_model_with_sacrum_class_that_sees_none_is_not_confident(spine):
    ph, vol, sem, lev = spine
    erased = sem.copy()
    erased[lev == SACRUM_LABEL] = 0
    lab = label_levels(erased, vol, sacrum_class=True)
    assert lab.discs[-1].name == "L5-S"  # the lowest disc, assumed
    assert lab.numbering["confident"] is False
    assert any("sacrum was not seen" in r for r in lab.numbering["reasons"])
    lab = label_levels(erased, vol, sacrum_class=False)
    assert any("no sacrum class" in r for r in lab.numbering["reasons"])


def test_remnant_disc_inside_the_sacrum_is_never_lumbar(spine):
    ph, vol, sem, lev = spine
    with_remnant, mask = _remnant(_with_sacrum_class(sem, lev), lev, 25.0, vol)
    assert mask.sum() > 0
    lab = label_levels(with_remnant, vol)
    assert [d.name for d in lab.discs] == [d.name for d in ph.discs]
    assert (lab.labels[mask] == SACRUM_LABEL).all()
    assert "sacral_disc" in [w["code"] for w in lab.warnings]


@pytest.mark.parametrize("sacrum_class", [False, True])
def test_s1_segmented_as_vertebra_with_remnant_is_not_called_l5s(spine, sacrum_class):
    """The issue's failure: S1 as a vertebra and the S1-S2 remnant as a disc, named L5-S."""
    ph, vol, sem, lev = spine
    base = sem.copy()
    if sacrum_class:  # the bone below the remnant is sacrum class, S1 above it vertebra
        ls_bottom = int(np.nonzero((lev == 100).any(axis=(0, 2)))[0][-1])
        low = np.zeros(sem.shape, bool)
        low[:, ls_bottom + int(round(28.0 / vol.spacing[1])):] = True
        base[(lev == SACRUM_LABEL) & low] = SACRUM
    with_remnant, mask = _remnant(base, lev, 25.0, vol)
    lab = label_levels(with_remnant, vol, sacrum_class=sacrum_class)
    true_ls = ph.disc("L5-S").center_lps
    named_ls = lab.disc("L5-S")
    assert named_ls is not None and np.linalg.norm(named_ls.centroid_lps - true_ls) < 5.0
    assert not (lab.labels[mask] == 100).any()
    assert lab.numbering["confident"] is False
    assert any("S1-S2 remnant" in r for r in lab.numbering["reasons"])


@pytest.mark.parametrize("n_lumbar", [4, 6])
def test_transitional_anatomy_is_never_confident(n_lumbar):
    ph = make_phantom(spacing=SPACING, n_lumbar=n_lumbar)
    vol, sem, lev = read(ph)
    lab = label_levels(_with_sacrum_class(sem, lev), vol)
    assert lab.discs[-1].name == "L5-S"  # counted from the sacrum, never silently renamed
    assert lab.numbering["confident"] is False
    assert any(r.startswith("Transitional anatomy") for r in lab.numbering["reasons"])


def test_label_map_numbering_check(spine):
    ph, vol, sem, lev = spine
    lev = lev.astype(np.int16)
    assert labelling_from_labels(lev, vol).numbering == {"confident": True, "reasons": []}
    shifted = lev.copy()
    for old, new in {100: 95, 95: 94, 94: 93, 93: 92, 92: 91, 91: 82, 82: 0}.items():
        shifted[lev == old] = new
    lab = labelling_from_labels(shifted, vol)
    assert lab.numbering["confident"] is False
    assert any("not L5-S" in r for r in lab.numbering["reasons"])
    dup = lev.copy()
    dup[lev == 94] = 93  # two discs given L2-L3
    lab = labelling_from_labels(dup, vol)
    assert lab.numbering["confident"] is False and not lab.duplicate_names()
    assert any("separate discs" in r for r in lab.numbering["reasons"])
    l6 = lev.copy()
    l6[lev == 45] = 46
    lab = labelling_from_labels(l6, vol)
    assert any(r.startswith("Transitional anatomy") for r in lab.numbering["reasons"])
    no_sacrum = lev.copy()
    no_sacrum[lev == SACRUM_LABEL] = 0
    assert labelling_from_labels(no_sacrum, vol).numbering["confident"] is False


def test_duplicate_level_names_are_impossible(spine):
    ph, vol, sem, lev = spine
    # No vertebra between L2-L3 and L3-L4 (the L3 bone erased): both would be named alike.
    broken = sem.copy()
    broken[(lev == 43)] = 0
    lab = label_levels(broken, vol)
    names = [i.name for i in (*lab.vertebrae, *lab.discs)]
    assert len(names) == len(set(names))
    disc_values = [d.label for d in lab.discs if d.label]
    assert len(disc_values) == len(set(disc_values))
    assert lab.numbering["confident"] is False
    # The invariant itself and the renumbering rule.
    bad = Labelling(labels=np.zeros((2, 2, 2), np.int16))
    bad.discs = [Instance("L3-L4", 94, np.zeros(3), 1, 1.0, "disc"), Instance("L3-L4", 94, np.ones(3), 1, 1.0, "disc")]
    with pytest.raises(DuplicateLevelError):
        bad.check_unique_names()
    assert unique_disc_names(["L3-L4", "L3-L4", "L4-L5", "L5-S"]) == (["L2-L3", "L3-L4", "L4-L5", "L5-S"], True)
    assert unique_disc_names(["L4-S", "L5-S"]) == (["L4-L5", "L5-S"], True)
    assert unique_disc_names(["L3-L4", "L5-S"]) == (["L3-L4", "L5-S"], False)  # a missed disc between


def test_vertebra_class_is_still_used_for_the_sacrum_without_class(spine):
    ph, vol, sem, lev = spine
    assert (sem[lev == SACRUM_LABEL] == VERTEBRA).all()


def test_sliver_of_s1_segmented_as_vertebra_joins_the_sacrum(spine):
    """A thin top of S1 labelled vertebra above the sacrum class (as spider136's mask) is not L5."""
    ph, vol, sem, lev = spine
    sem4 = _with_sacrum_class(sem, lev)
    top = int(np.nonzero((lev == SACRUM_LABEL).any(axis=(0, 2)))[0][0])
    sliver = np.zeros(sem.shape, bool)
    sliver[:, top:top + int(round(8.0 / vol.spacing[1]))] = True
    sem4[sliver & (lev == SACRUM_LABEL)] = VERTEBRA
    lab = label_levels(sem4, vol)
    assert _names(lab) == ([d.name for d in ph.discs], [v.name for v in ph.vertebrae])
    assert lab.numbering["confident"] is True
    assert (lab.labels[sliver & (lev == SACRUM_LABEL)] == SACRUM_LABEL).all()
