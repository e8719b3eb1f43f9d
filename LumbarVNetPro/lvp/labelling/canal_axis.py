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


def _off_axis_of_indices(idx: tuple[np.ndarray, ...], axis,
                         sp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_off_axis_mm` of integer grid indices (``np.nonzero`` of the pooled grid): the same
    values (integers convert exactly), without a float copy of the points.
    """
    i, j, k = idx  # j lies on the grid, so it is its own row of the line (no rounding or clipping)
    beyond = np.maximum(axis[2][0] - j, 0) + np.maximum(j - axis[2][1], 0)
    return (i - axis[0][j]) * sp[0], (k - axis[1][j]) * sp[2], beyond * sp[1]
