"""The canal's centre line (the spine's course) and offsets of points from it, on the pooled grid."""

from __future__ import annotations

import numpy as np

from lvp.labelling.grid import _components


def _spine_axis(canal_c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Canal centre line on a (pooled) grid: per row along axis 1, the (lr, ap) index of the
    largest canal component's centre (rows without canal interpolated, constant beyond its ends).
    None when no canal long enough to define the spine's course was segmented.
    """
    if not canal_c.any():
        return None
    comp, n = _components(canal_c)
    if n > 1:
        comp = comp == int(np.argmax(np.bincount(comp.ravel())[1:]) + 1)
    else:
        comp = comp > 0
    count = comp.sum(axis=(0, 2)).astype(float)
    rows = np.flatnonzero(count)
    if rows.size < 5:
        return None
    lr = (comp.sum(axis=2) * np.arange(comp.shape[0])[:, None]).sum(axis=0)[rows] / count[rows]
    ap = (comp.sum(axis=0) * np.arange(comp.shape[2])[None, :]).sum(axis=1)[rows] / count[rows]
    all_rows = np.arange(comp.shape[1])
    return np.interp(all_rows, rows, lr), np.interp(all_rows, rows, ap), (int(rows[0]), int(rows[-1]))


def _off_axis_mm(points: np.ndarray, axis, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left-right, anteroposterior, beyond the canal's ends) offsets in mm of pooled-index
    points from the canal line (AP positive = posterior of the canal centre).
    """
    si = np.clip(np.round(points[:, 1]).astype(int), 0, axis[0].size - 1)
    beyond = np.maximum(axis[2][0] - points[:, 1], 0) + np.maximum(points[:, 1] - axis[2][1], 0)
    return (points[:, 0] - axis[0][si]) * sp[0], (points[:, 2] - axis[1][si]) * sp[2], beyond * sp[1]
