"""The canal's centre line (the spine's course) and offsets of points from it, on the pooled grid."""

from __future__ import annotations

import numpy as np

from lvp.labelling.grid import _components_in_box


def _spine_axis(canal_c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Canal centre line on a (pooled) grid: per row along axis 1, the (lr, ap) index of the
    largest canal component's centre (rows without canal interpolated, constant beyond its ends).
    None when no canal long enough to define the spine's course was segmented.
    """
    comp, n, box = _components_in_box(canal_c)  # on the canal's box: ids and sums as on the whole grid
    if box is None:
        return None
    if n > 1:
        comp = comp == int(np.argmax(np.bincount(comp.ravel())[1:]) + 1)
    else:
        comp = comp > 0
    count = np.zeros(canal_c.shape[1])
    count[box[1]] = comp.sum(axis=(0, 2))
    rows = np.flatnonzero(count)
    if rows.size < 5:
        return None
    local = rows - box[1].start
    # Exact integer index sums (the box's indices are the grid's, offset by its start).
    lr = (comp.sum(axis=2) * np.arange(box[0].start, box[0].stop)[:, None]).sum(axis=0)[local] / count[rows]
    ap = (comp.sum(axis=0) * np.arange(box[2].start, box[2].stop)[None, :]).sum(axis=1)[local] / count[rows]
    all_rows = np.arange(canal_c.shape[1])
    return np.interp(all_rows, rows, lr), np.interp(all_rows, rows, ap), (int(rows[0]), int(rows[-1]))


def _off_axis_mm(points: np.ndarray, axis, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left-right, anteroposterior, beyond the canal's ends) offsets in mm of pooled-index
    points from the canal line (AP positive = posterior of the canal centre).
    """
    si = np.clip(np.round(points[:, 1]).astype(int), 0, axis[0].size - 1)
    beyond = np.maximum(axis[2][0] - points[:, 1], 0) + np.maximum(points[:, 1] - axis[2][1], 0)
    return (points[:, 0] - axis[0][si]) * sp[0], (points[:, 2] - axis[1][si]) * sp[2], beyond * sp[1]


def _near_line(mask: np.ndarray, axis, sp: np.ndarray, max_lr: float, max_anterior: float, max_posterior: float,
               max_beyond: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mask`` where a voxel lies near the canal line (:func:`_off_axis_mm` of its index within the
    limits, mm), with the offsets as grids: LR by (axis 0, axis 1) and AP by (axis 1, axis 2).

    The same offsets as :func:`_off_axis_mm` of the voxels' indices (integers convert exactly),
    computed once per row and column rather than per voxel.
    """
    n_lr, n_si, n_ap = mask.shape
    rows = np.arange(n_si)
    d_lr = (np.arange(n_lr)[:, None] - axis[0][None, :]) * sp[0]
    d_ap = (np.arange(n_ap)[None, :] - axis[1][:, None]) * sp[2]
    beyond = (np.maximum(axis[2][0] - rows, 0) + np.maximum(rows - axis[2][1], 0)) * sp[1]
    lr_ok = np.abs(d_lr) <= max_lr
    ap_ok = (d_ap >= -max_anterior) & (d_ap <= max_posterior) & (beyond <= max_beyond)[:, None]
    return mask & lr_ok[:, :, None] & ap_ok[None, :, :], d_lr, d_ap
