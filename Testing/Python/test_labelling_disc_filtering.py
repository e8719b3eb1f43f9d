"""Regression tests for the disc filtering of :mod:`lvp.labelling` on the phantom.

Disc-class voxels away from the spine, small disc fragments and a disc the network missed must
not change the level names. The phantom is rendered once at a coarse spacing (2.0 x 1.2 x 1.2
mm, no pooling in the labelling) and edited per test.
"""

from __future__ import annotations

import numpy as np
import pytest
from phantom_helpers import read

from lvp.labelling import label_levels
from lvp.labelling.thresholds import MIN_DISC_MM3
from lvp.labels import CANAL, DISC, DISC_LABELS, VERTEBRA, VERTEBRA_LABELS
from lvp.validation.phantom import make_phantom

SPACING = (2.0, 1.2, 1.2)  # lr, si, ap (mm)


@pytest.fixture(scope="module")
def spine():
    ph = make_phantom(spacing=SPACING)
    vol, sem, lev = read(ph)
    # Canonical grid: axis 0 left-right, 1 superior -> inferior, 2 anterior -> posterior.
    assert tuple(vol.spacing) == pytest.approx(SPACING)
    return ph, vol, sem, lev


def _codes(lab) -> list[str]:
    return [w["code"] for w in lab.warnings]


def _index(vol, point_lps) -> np.ndarray:
    return np.round(vol.lps_to_index(np.asarray(point_lps, float)[None])[0]).astype(int)


def _assert_levels_exact(ph, lab):
    assert [v.name for v in lab.vertebrae] == [v.name for v in ph.vertebrae]
    assert [d.name for d in lab.discs] == [d.name for d in ph.discs]
    for d, t in zip(lab.discs, ph.discs):
        assert np.linalg.norm(d.centroid_lps - t.center_lps) < 1.5, d.name


def _agreement(labels, lev, where) -> float:
    return float((labels[where] == lev[where]).mean())


def test_unedited_coarse_phantom_is_exact(spine):
    ph, vol, sem, lev = spine
    lab = label_levels(sem, vol)
    _assert_levels_exact(ph, lab)
    assert not {"disc_fragments_ignored", "missing_disc"} & set(_codes(lab))


@pytest.mark.parametrize("height", ["L3-L4", "L3"])
def test_disc_blob_in_back_muscles_is_ignored(spine, height):
    """A large disc-class blob behind the canal, beside the spinous processes (paraspinal
    muscle), at the height of a disc or of a vertebral body, is not a disc: it is dropped with
    ``disc_fragments_ignored`` and every level keeps its name."""
    ph, vol, sem, lev = spine
    s = sem.copy()
    canal_ap = float(np.argwhere(sem == CANAL)[:, 2].mean())
    truth = ph.disc(height) if "-" in height else ph.vertebrae[[v.name for v in ph.vertebrae].index(height)]
    c = _index(vol, truth.center_lps)
    ap0 = int(round(canal_ap + 17.0 / SPACING[2]))  # 17 mm behind the canal's centre line
    box = (slice(c[0] + 7, c[0] + 11), slice(c[1] - 5, c[1] + 5), slice(ap0, ap0 + 8))
    assert not sem[box].any(), "the blob must lie in background, clear of bone and canal"
    s[box] = DISC
    blob_mm3 = s[box].size * float(np.prod(SPACING))
    assert blob_mm3 > MIN_DISC_MM3  # big enough to be a disc by size: dropped for its position

    lab = label_levels(s, vol)
    assert "disc_fragments_ignored" in _codes(lab)
    assert "missing_disc" not in _codes(lab)
    _assert_levels_exact(ph, lab)
    assert not lab.labels[box].any()  # the blob gets no label
    fg = lev > 0
    assert _agreement(lab.labels, lev, fg) > 0.99


def test_deleted_disc_is_flagged_and_levels_keep_their_names(spine):
    """L3-L4 relabelled as bone (the network missed it): ``missing_disc``; the fused bone is
    split into L3 and L4 and all other levels keep their names."""
    ph, vol, sem, lev = spine
    s = sem.copy()
    gone = lev == DISC_LABELS["L3-L4"]
    assert gone.any()
    s[gone] = VERTEBRA

    lab = label_levels(s, vol)
    assert "missing_disc" in _codes(lab)
    assert [v.name for v in lab.vertebrae] == [v.name for v in ph.vertebrae]
    assert [d.name for d in lab.discs] == [d.name for d in ph.discs if d.name != "L3-L4"]
    for d in lab.discs:
        t = ph.disc(d.name)
        assert np.linalg.norm(d.centroid_lps - t.center_lps) < 1.5, d.name
    truth = {v.name: v.center_lps for v in ph.vertebrae}
    for v in lab.vertebrae:
        if v.name in ("L3", "L4"):  # split at the interpolated separator: a few mm off
            assert abs(v.centroid_lps[2] - truth[v.name][2]) < 6.0, v.name
    # Bone of L3 and L4 away from the missing disc keeps its value.
    for name in ("L3", "L4"):
        body = (lev == VERTEBRA_LABELS[name]) & ~gone
        assert _agreement(lab.labels, lev, body) > 0.9, name
    others = (lev > 0) & ~gone & ~np.isin(lev, [VERTEBRA_LABELS["L3"], VERTEBRA_LABELS["L4"]])
    assert _agreement(lab.labels, lev, others) > 0.99


def test_small_fragment_next_to_a_disc_is_not_a_level(spine):
    """A small disc-class fragment in front of L2-L3, not touching it, joins that disc."""
    ph, vol, sem, lev = spine
    s = sem.copy()
    c = _index(vol, ph.disc("L2-L3").center_lps)
    front = int(np.argwhere(lev[c[0], c[1] - 2 : c[1] + 3] == DISC_LABELS["L2-L3"])[:, 1].min())
    box = (slice(c[0] - 1, c[0] + 2), slice(c[1] - 1, c[1] + 1), slice(front - 5, front - 2))
    assert not sem[box].any()
    s[box] = DISC
    assert s[box].size * float(np.prod(SPACING)) < MIN_DISC_MM3

    lab = label_levels(s, vol)
    _assert_levels_exact(ph, lab)
    assert "missing_disc" not in _codes(lab)
    assert (lab.labels[box] == DISC_LABELS["L2-L3"]).all()  # joined, not a new level


def test_disc_fragment_inside_a_vertebral_body_is_dropped(spine):
    """A disc-class fragment above the size floor but squeezed inside L3's body is not a level."""
    ph, vol, sem, lev = spine
    s = sem.copy()
    c = _index(vol, ph.vertebrae[[v.name for v in ph.vertebrae].index("L3")].center_lps)
    box = (slice(c[0] - 2, c[0] + 2), slice(c[1] - 3, c[1] + 3), slice(c[2] - 3, c[2] + 3))
    assert (sem[box] == VERTEBRA).all()
    s[box] = DISC
    assert s[box].size * float(np.prod(SPACING)) > MIN_DISC_MM3

    lab = label_levels(s, vol)
    _assert_levels_exact(ph, lab)
    assert "disc_fragments_ignored" in _codes(lab)
    assert "missing_disc" not in _codes(lab)
    assert not np.isin(lab.labels[box], list(DISC_LABELS.values())).any()

