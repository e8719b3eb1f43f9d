"""Sampling oblique planes of a canonical volume in a disc's own frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lvp.io.volume import Volume

STEP_MM = 0.5  # in-plane sampling of the reformats


@dataclass
class Reformat:
    """A 2-D plane sampled at ``origin + r1[i] * e1 + r2[j] * e2`` (LPS mm)."""

    origin: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    r1: np.ndarray
    r2: np.ndarray
    values: np.ndarray  # sampled array, shape (len(r1), len(r2))
    valid: np.ndarray  # True where the point lies inside the volume

    @property
    def step(self) -> float:
        """Sampling step in mm."""
        return float(self.r1[1] - self.r1[0])

    def lps(self, x1: float, x2: float) -> list[float]:
        """LPS point of the plane coordinates (mm)."""
        return [float(v) for v in self.origin + x1 * self.e1 + x2 * self.e2]


def sample_plane(
    array: np.ndarray,
    volume: Volume,
    origin: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    r1: np.ndarray,
    r2: np.ndarray,
    order: int = 0,
) -> Reformat:
    """Sample ``array`` (canonical grid of ``volume``) on a plane; labels with ``order=0``."""
    # Index-space plane: idx = o + r1 * d1 + r2 * d2 (one small affine inverse, float32 grids).
    inv = np.linalg.inv(volume.affine)
    o = inv[:3, :3] @ np.asarray(origin, float) + inv[:3, 3]
    d1, d2 = inv[:3, :3] @ np.asarray(e1, float), inv[:3, :3] @ np.asarray(e2, float)
    a1, a2 = np.asarray(r1, np.float32), np.asarray(r2, np.float32)
    idx = [np.float32(o[k]) + a1[:, None] * np.float32(d1[k]) + a2[None, :] * np.float32(d2[k]) for k in range(3)]
    valid = np.ones((a1.size, a2.size), bool)
    for k in range(3):
        valid &= (idx[k] > -0.5) & (idx[k] < array.shape[k] - 0.5)
    if order == 0:
        # Nearest neighbour, as map_coordinates(order=0) rounds, outside = 0.
        vals = np.zeros(valid.shape, array.dtype)
        ii = tuple(np.rint(idx[k][valid]).astype(np.intp) for k in range(3))
        vals[valid] = array[ii]
    else:
        coords = np.stack([x.ravel() for x in idx])
        vals = ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0, prefilter=False)
    g1 = valid
    return Reformat(origin, e1, e2, r1, r2, vals.reshape(g1.shape), valid)


def axis_range(lo: float, hi: float, step: float = STEP_MM) -> np.ndarray:
    """Sample positions from ``lo`` to ``hi`` (inclusive) every ``step`` mm."""
    return np.arange(lo, hi + step / 2, step)


def first_run_end(line: np.ndarray) -> int | None:
    """Index of the last element of the first run of True values (None when none)."""
    nz = np.flatnonzero(line)
    if nz.size == 0:
        return None
    start = nz[0]
    breaks = np.flatnonzero(~line[start:])
    return int(start + breaks[0] - 1) if breaks.size else int(line.size - 1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a 2-D mask."""
    comp, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return comp == int(np.argmax(sizes))
