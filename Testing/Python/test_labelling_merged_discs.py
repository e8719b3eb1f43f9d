"""Regression tests: two discs merged into one instance must not shift level names silently.

On SPIDER spider241 (network output) two discs with a collapsed vertebra between them are
separate at full resolution but touch on the ~1 mm grid the labelling pools to, and every level
above was named one level too far down without a warning. The phantom is rendered at 0.45 mm in
plane (pooled 2x, as a SPIDER SPACE series) and L1-L2 is joined to L2-L3 by a thin disc-class
strand through the L2 body:

* a strand that stops one voxel short of L2-L3 (separate at full resolution, touching on the
  pooled grid): the discs are split again, names are exact, ``merged_disc`` is raised;
* a strand that touches L2-L3 (one component even at full resolution): the merged instance is
  about twice as thick as the others, so ``merged_disc`` is raised and every level from it
  upwards has low confidence.
"""

from __future__ import annotations

import numpy as np
import pytest
from phantom_helpers import read

from lvp.labelling import label_levels
from lvp.labelling.thresholds import MERGED_DISC_CONFIDENCE
from lvp.labels import DISC
from lvp.validation.phantom import make_phantom

SPACING = (1.5, 0.45, 0.45)  # lr, si, ap (mm): pooled (1, 2, 2) by the labelling


@pytest.fixture(scope="module")
def spine():
    ph = make_phantom(spacing=SPACING, lr_extent_mm=30.0)
    vol, sem, _ = read(ph)
    return ph, vol, sem


def _index(vol, point_lps) -> np.ndarray:
    return np.round(vol.lps_to_index(np.asarray(point_lps, float)[None])[0]).astype(int)


def _bridged(ph, vol, sem, gap_voxels: int) -> np.ndarray:
    """A copy of ``sem`` with a 1 x 2 voxel disc strand from L1-L2 down towards L2-L3."""
    a, b = _index(vol, ph.disc("L1-L2").center_lps), _index(vol, ph.disc("L2-L3").center_lps)
    lr, ap = a[0], a[2]
    rows = np.arange(a[1] + 1, b[1] + 1)
    is_disc = sem[lr, rows, ap] == DISC
    below_a = int(np.argmax(~is_disc))  # first row below L1-L2
    top_b = int(rows[below_a + int(np.argmax(is_disc[below_a:]))])  # first row of L2-L3
    out = sem.copy()
    out[lr, a[1] : top_b - gap_voxels, ap : ap + 2] = DISC
    return out


def _codes(lab) -> list[str]:
    return [w["code"] for w in lab.warnings]


def test_unedited_fine_phantom_is_exact(spine):
    ph, vol, sem = spine
    lab = label_levels(sem, vol)
    assert [d.name for d in lab.discs] == [d.name for d in ph.discs]
    assert "merged_disc" not in _codes(lab)


def test_discs_touching_only_on_the_pooled_grid_are_split(spine):
    ph, vol, sem = spine
    lab = label_levels(_bridged(ph, vol, sem, gap_voxels=1), vol)
    assert [d.name for d in lab.discs] == [d.name for d in ph.discs]
    assert [v.name for v in lab.vertebrae] == [v.name for v in ph.vertebrae]
    for d, t in zip(lab.discs, ph.discs):
        assert np.linalg.norm(d.centroid_lps - t.center_lps) < 3.0, d.name
    assert "merged_disc" in _codes(lab)


def test_discs_merged_at_full_resolution_are_flagged(spine):
    ph, vol, sem = spine
    lab = label_levels(_bridged(ph, vol, sem, gap_voxels=0), vol)
    assert "merged_disc" in _codes(lab)
    merged = max(lab.discs, key=lambda d: d.plane.height_mm)
    n = merged.plane.normal_lps
    cranial = [x for x in [*lab.discs, *lab.vertebrae] if (x.centroid_lps - merged.centroid_lps) @ n <= 0]
    assert merged in cranial and len(cranial) >= 4
    assert all(x.confidence <= MERGED_DISC_CONFIDENCE for x in cranial)
    # The levels below the merged disc keep their names and confidence.
    caudal = [d for d in lab.discs if (d.centroid_lps - merged.centroid_lps) @ n > 0]
    assert [d.name for d in caudal] == [d.name for d in ph.discs][-len(caudal):]
    assert all(d.confidence > MERGED_DISC_CONFIDENCE for d in caudal)
