"""Sacrum anchoring: the sacrum of a network with a sacrum class, discs inside or below it (S1-S2
remnants) and a rudimentary lowest disc (step 3 of :mod:`lvp.labelling`).

L5-S is the disc directly above the sacrum. A disc with sacrum above it lies inside the sacrum (the
S1-S2 remnant disc most adults keep): it is never a lumbar level. Without a sacrum class (or with
the S1 body segmented as a vertebra) a remnant is recognised by its size only: the lowest disc much
smaller than the discs above it. That is also what the rudimentary L5-S disc of a sacralised L5
looks like, so such a disc is never named lumbar and the numbering is never called confident.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lvp.labelling.canal_axis import _off_axis_mm
from lvp.labelling.grid import _bbox, _components_in_box, _relative, _scaled_box, _shift, _unpool
from lvp.labelling.thresholds import (
    BONE_MAX_ANTERIOR_MM,
    MIN_SACRUM_MM3,
    SACRUM_ABOVE_DISC_MM3,
    SACRUM_MAX_LR_MM,
    SACRUM_MAX_POSTERIOR_MM,
)
from lvp.labelling.types import Instance
from lvp.labelling.vertebrae import _below_disc, _index_sums
from lvp.labels import SACRUM, SACRUM_LABEL
from lvp.planes import DiscPlane


def _sacrum_mask(sacrum_c: np.ndarray, voxel_mm3: float, axis=None, sp: np.ndarray | None = None
                 ) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The sacrum-class component of a (pooled) grid to anchor on, as ``(box, mask on the box)``
    (the box in the grid's indices), or None when none qualifies.

    ``voxel_mm3`` is the volume of one voxel of that grid. Candidates are the components of at
    least ``MIN_SACRUM_MM3`` (a body-sized piece is enough: model 1.1.0's sacrum covers S1 and the
    upper sacrum, about one vertebra high, so no length against the vertebrae is asked). With the
    canal line ``axis`` (and the grid spacing ``sp``), only components centred on the spine count:
    within ``SACRUM_MAX_LR_MM`` of the line in LR and not farther in front of it than a vertebral
    body reaches (the network's "sacrum" in the ilium or in soft tissue is ignored). The largest
    candidate is taken; whether it lies below the lowest disc is checked by the caller.
    """
    comp, n, box = _components_in_box(sacrum_c)
    if box is None:
        return None
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    ok = sizes * voxel_mm3 >= MIN_SACRUM_MM3
    ok[0] = False
    if axis is not None and sp is not None and ok.any():
        idx = np.nonzero(comp)
        lab = comp[idx]
        # Grid indices (exact integer sums, as on the whole grid).
        centres = _index_sums(lab.astype(np.intp), tuple(x + b.start for x, b in zip(idx, box)), n, None).sums
        centres /= np.maximum(sizes[:, None], 1)
        d_lr, d_ap, _ = _off_axis_mm(centres, axis, sp)
        ok &= (np.abs(d_lr) <= SACRUM_MAX_LR_MM) & (d_ap >= -BONE_MAX_ANTERIOR_MM) & (d_ap <= SACRUM_MAX_POSTERIOR_MM)
    if not ok.any():
        return None
    k = int(np.argmax(np.where(ok, sizes, -1)))
    mask = comp == k
    tight = _bbox(mask, 0)  # the chosen component's own box
    return _shift(tight, box), mask[tight]


def _sacrum_above(plane: DiscPlane, sac_pts: np.ndarray, inferior: np.ndarray, voxel_mm3: float) -> float:
    """Volume (mm³) of sacrum points (LPS mm) more than 2 mm above ``plane``, inside its footprint."""
    if len(sac_pts) == 0:
        return 0.0
    w = sac_pts - plane.center_lps.astype(np.float32)
    inside = (np.abs(w @ plane.axis_u_lps.astype(np.float32)) <= plane.extent_u_mm / 2) & (
        np.abs(w @ plane.axis_v_lps.astype(np.float32)) <= plane.extent_v_mm / 2)
    above = _below_disc(np.compress(inside, sac_pts, axis=0), plane, inferior) < -2.0
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


def _sacrum_instance(sem: np.ndarray, labels: np.ndarray, sac_c: tuple[tuple[slice, ...], np.ndarray],
                     f: tuple[int, ...], sub: np.ndarray, region: tuple[slice, ...],
                     mean_prob: Callable[[tuple[slice, ...], np.ndarray], float] | None) -> Instance:
    """The sacrum (class voxels of the chosen component, plus an S1 body already written as 50).

    ``sac_c`` is the component as (pooled box, mask on it); ``region`` (a box of the crop) holds
    it and every voxel already written as sacrum. Works on that box (indices and voxel order as on
    the whole crop).
    """
    sbox = _scaled_box(sac_c[0], f, sem.shape)
    mask = labels[region] == SACRUM_LABEL
    mask[_relative(sbox, region)] |= _unpool(sac_c[1], f, sem[sbox].shape) & (sem[sbox] == SACRUM)
    np.copyto(labels[region], SACRUM_LABEL, where=mask)
    idx = np.argwhere(mask) + np.array([r.start for r in region])
    centre = idx.mean(axis=0) @ sub[:3, :3].T + sub[:3, 3]
    conf = 0.95 * (mean_prob(region, mask) if mean_prob is not None else 1.0)
    return Instance("sacrum", SACRUM_LABEL, centre, int(len(idx)), round(conf, 3), "sacrum")
