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
    g1, g2 = np.meshgrid(r1, r2, indexing="ij")
    pts = origin[None, None, :] + g1[..., None] * e1 + g2[..., None] * e2
    idx = volume.lps_to_index(pts.reshape(-1, 3)).T
    shape = np.array(array.shape)[:, None]
    valid = np.all((idx > -0.5) & (idx < shape - 0.5), axis=0).reshape(g1.shape)
    vals = ndimage.map_coordinates(array, idx, order=order, mode="constant", cval=0, prefilter=False)
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
