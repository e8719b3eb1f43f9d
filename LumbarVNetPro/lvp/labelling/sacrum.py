"""Sacrum anchoring: the sacrum of a network with a sacrum class, discs inside or below it (S1-S2
remnants) and a rudimentary lowest disc (step 3 of :mod:`lvp.labelling`).

L5-S is the disc directly above the sacrum. A disc with sacrum above it lies inside the sacrum (the
S1-S2 remnant disc most adults keep): it is never a lumbar level. Without a sacrum class (or with
the S1 body segmented as a vertebra) a remnant is recognised by its size only: the lowest disc much
smaller than the discs above it. That is also what the rudimentary L5-S disc of a sacralised L5
looks like, so such a disc is never named lumbar and the numbering is never called confident.
"""

from __future__ import annotations

import numpy as np

from lvp.labelling.grid import _components
from lvp.labelling.thresholds import MIN_SACRUM_MM3, SACRUM_ABOVE_DISC_MM3
from lvp.labelling.vertebrae import _below_disc
from lvp.planes import DiscPlane


def _sacrum_mask(sacrum_c: np.ndarray, voxel_mm3: float) -> np.ndarray | None:
    """The largest sacrum-class component of a (pooled) grid, or None when none is large enough.

    ``voxel_mm3`` is the volume of one voxel of that grid.
    """
    if not sacrum_c.any():
        return None
    comp, n = _components(sacrum_c)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    k = int(np.argmax(sizes[1:])) + 1
    if sizes[k] * voxel_mm3 < MIN_SACRUM_MM3:
        return None
    return comp == k


def _sacrum_above(plane: DiscPlane, sac_pts: np.ndarray, inferior: np.ndarray, voxel_mm3: float) -> float:
    """Volume (mm³) of sacrum points (LPS mm) more than 2 mm above ``plane``, inside its footprint."""
    if len(sac_pts) == 0:
        return 0.0
    w = sac_pts - plane.center_lps.astype(np.float32)
    inside = (np.abs(w @ plane.axis_u_lps.astype(np.float32)) <= plane.extent_u_mm / 2) & (
        np.abs(w @ plane.axis_v_lps.astype(np.float32)) <= plane.extent_v_mm / 2)
    above = _below_disc(sac_pts[inside], plane, inferior) < -2.0
    return float(above.sum()) * voxel_mm3


def drop_sacral_discs(planes: list[tuple[int, DiscPlane]], sac_pts: np.ndarray, inferior: np.ndarray,
                      voxel_mm3: float) -> list[tuple[int, DiscPlane]]:
    """Remove, from the caudal end of ``planes`` (cranial -> caudal, edited in place), the discs with
    sacrum above them: remnant discs inside or below the sacrum. Returns the removed ones.
    """
    dropped = []
    while planes and _sacrum_above(planes[-1][1], sac_pts, inferior, voxel_mm3) >= SACRUM_ABOVE_DISC_MM3:
        dropped.append(planes.pop())
    return dropped


def lowest_disc_ratio(sizes: list[float]) -> float | None:
    """The last of ``sizes`` (disc volumes, cranial -> caudal) over the median of the others (at
    least three of them), or None with fewer discs.
    """
    if len(sizes) < 4:
        return None
    return float(sizes[-1] / float(np.median(sizes[:-1])))
