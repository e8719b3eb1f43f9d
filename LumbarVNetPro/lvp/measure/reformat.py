"""Sampling oblique planes of a canonical volume in a disc's own frame."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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
    # Index-space position of every sample (3, len(r1), len(r2)), float32; set by sample_plane.
    index: np.ndarray | None = None

    @property
    def step(self) -> float:
        """Sampling step in mm."""
        return float(self.r1[1] - self.r1[0])

    def lps(self, x1: float, x2: float) -> list[float]:
        """LPS point of the plane coordinates (mm)."""
        frame = self._frame()
        if frame is None:
            return [float(v) for v in self.origin + x1 * self.e1 + x2 * self.e2]
        # The same float64 operations, in the same order, as the array expression above, on
        # Python floats (a case asks for thousands of points; numpy's per-call cost dominates).
        o, a, b = frame
        x1, x2 = float(x1), float(x2)
        return [o[0] + x1 * a[0] + x2 * b[0], o[1] + x1 * a[1] + x2 * b[1], o[2] + x1 * a[2] + x2 * b[2]]

    def _frame(self) -> tuple[tuple[float, ...], ...] | None:
        """origin, e1, e2 as Python floats when all three are float64 3-vectors, else None."""
        cached = self.__dict__.get("_frame_floats", False)
        if cached is False:
            vectors = [np.asarray(v) for v in (self.origin, self.e1, self.e2)]
            ok = all(v.dtype == np.float64 and v.shape == (3,) for v in vectors)
            cached = tuple(tuple(float(x) for x in v) for v in vectors) if ok else None
            self.__dict__["_frame_floats"] = cached
        return cached


def inverse_affine(volume: Volume) -> np.ndarray:
    """``np.linalg.inv(volume.affine)``, computed once per affine (a few microseconds each time
    otherwise, and a case samples some sixty planes).
    """
    a = np.ascontiguousarray(volume.affine)
    return _inverse(a.tobytes(), a.dtype.str, a.shape)


@lru_cache(maxsize=8)
def _inverse(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    inv = np.linalg.inv(np.frombuffer(data, dtype=dtype).reshape(shape))
    inv.flags.writeable = False
    return inv


def lps_to_index(volume: Volume, points) -> np.ndarray:
    """:meth:`Volume.lps_to_index` (the same arithmetic) with the cached inverse affine."""
    inv = inverse_affine(volume)
    return np.asarray(points, dtype=float) @ inv[:3, :3].T + inv[:3, 3]


def plane_index(volume: Volume, origin, e1, e2, r1, r2) -> np.ndarray:
    """Index-space coordinates ``(3, len(r1), len(r2))`` (float32) of a plane's samples."""
    # idx = o + r1 * d1 + r2 * d2, in float32, evaluated as (o + r1 d1) + r2 d2 for every axis at once.
    inv = inverse_affine(volume)
    o = inv[:3, :3] @ np.asarray(origin, float) + inv[:3, 3]
    d1, d2 = inv[:3, :3] @ np.asarray(e1, float), inv[:3, :3] @ np.asarray(e2, float)
    a1, a2 = np.asarray(r1, np.float32), np.asarray(r2, np.float32)
    f = np.float32
    return (o.astype(f)[:, None, None] + a1[None, :, None] * d1.astype(f)[:, None, None]) \
        + a2[None, None, :] * d2.astype(f)[:, None, None]


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
    """Sample ``array`` (canonical grid of ``volume``) on a plane; labels with ``order=0``.

    ``order=1`` (trilinear, as ``map_coordinates``) returns float32 values and reads only the
    block of ``array`` around the plane (:func:`interpolate_at`): no copy of the whole volume.
    """
    idx = plane_index(volume, origin, e1, e2, r1, r2)
    valid = _inside(idx, array.shape)
    if order == 0:
        # Nearest neighbour, as map_coordinates(order=0) rounds, outside = 0.
        vals = gather_nearest(array, idx, valid)
    else:
        vals = interpolate_at(array, idx.reshape(3, -1), order).reshape(valid.shape)
    return Reformat(origin, e1, e2, r1, r2, vals, valid, idx)


def _inside(idx: np.ndarray, shape) -> np.ndarray:
    """Samples whose nearest voxel lies inside ``shape``."""
    valid = (idx[0] > -0.5) & (idx[0] < shape[0] - 0.5)
    for k in (1, 2):
        valid &= idx[k] > -0.5
        valid &= idx[k] < shape[k] - 0.5
    return valid


def gather_nearest(array: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``array`` at the nearest voxels (``np.rint``) of index-space points ``idx`` ``(3, ...)``
    where ``valid`` (see :func:`_inside`), 0 elsewhere.
    """
    if not array.flags.c_contiguous:
        vals = np.zeros(valid.shape, array.dtype)
        ii = np.rint(idx[:, valid]).astype(np.intp)
        vals[valid] = array[ii[0], ii[1], ii[2]]
        return vals
    # Every point at once through one flat index (numpy's indexing by three index arrays, and
    # boolean selection, cost more): points outside give some clipped index, then 0.
    # int32 arithmetic where the flat index fits (converting float32 to int64 costs 4x more).
    itype = np.int32 if array.size < 2**31 else np.intp
    with np.errstate(invalid="ignore"):  # a point far outside (or NaN) is masked below
        ii = np.rint(idx).astype(itype)
    flat = ii[0] * itype(array.shape[1] * array.shape[2])
    flat += ii[1] * itype(array.shape[2])
    flat += ii[2]
    vals = array.reshape(-1).take(flat.astype(np.intp, copy=False), mode="clip")
    vals[~valid] = 0
    return vals


# dtypes whose every value float32 holds exactly: interpolating them as they are equals interpolating
# their float32 copy (map_coordinates works in double either way).
EXACT_IN_FLOAT32 = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float32)}


def interpolate_at(array: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    """``map_coordinates(float32(array), coords, order, mode="constant", cval=0, prefilter=False)``
    without converting the whole ``array``: float32 values at index-space points ``coords`` ``(3, n)``.

    An 8/16-bit integer or float32 ``array`` is read in place (its float32 copy would hold the same
    values, and the interpolation runs in double either way). Other dtypes (float64, int32...) are
    converted block-wise: only the block holding the points' neighbours becomes float32. The
    result equals interpolating the float32 copy of the whole volume, value for value: each point
    depends on its own neighbours only, the shift by the block's corner is exact, and the block
    keeps the volume's faces wherever points lie beyond them (the constant 0 outside is the same).
    """
    if array.dtype in EXACT_IN_FLOAT32:  # read in place (map_coordinates copies nothing)
        return ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0, prefilter=False,
                                       output=np.float32)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape[1] == 0:
        return np.zeros(0, np.float32)
    block = []
    for k in range(3):
        # The points' neighbours, and at least two voxels (or the whole axis): a block face is the
        # volume's face or lies a whole neighbourhood beyond every point.
        n = array.shape[k]
        lo = int(np.clip(np.floor(coords[k].min()) - order, 0, max(n - 2, 0)))
        hi = int(np.clip(np.floor(coords[k].max()) + order + 1, min(lo + 2, n), n))
        block.append((lo, hi))
    sub = array[tuple(slice(lo, hi) for lo, hi in block)].astype(np.float32)
    shifted = coords - np.array([lo for lo, _ in block], float)[:, None]
    return ndimage.map_coordinates(sub, shifted, order=order, mode="constant", cval=0, prefilter=False,
                                   output=np.float32)


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


def first_runs(mask: np.ndarray) -> np.ndarray:
    """Per row of a 2-D mask, its first run of True values (the rest False): all rows at once.

    Row by row this is ``mask[i, start:first_run_end(mask[i]) + 1]``; here a True is kept while no
    False has followed an earlier True in its row.
    """
    mask = np.asarray(mask, bool)
    started = np.logical_or.accumulate(mask, axis=1)
    broken = np.logical_or.accumulate(started & ~mask, axis=1)
    return mask & ~broken


def first_run_ends(mask: np.ndarray) -> np.ndarray:
    """Per row of a 2-D mask, :func:`first_run_end` of that row, or -1 where the row has no True."""
    runs = first_runs(mask)
    last = mask.shape[1] - 1 - np.argmax(runs[:, ::-1], axis=1)
    return np.where(runs.any(axis=1), last, -1)


def label_mask(values: np.ndarray, labels) -> np.ndarray:
    """``np.isin(values, labels)`` for a label array, by a lookup table for 8- and 16-bit integers.

    ``isin`` costs about half a millisecond on a reformat; the table lookup a few microseconds.
    Signed values are looked up through their unsigned view (with the labels mapped the same way).
    """
    values = np.asarray(values)
    dt = values.dtype
    if dt.kind not in "iu" or dt.itemsize > 2 or not dt.isnative:
        return np.isin(values, labels)
    return _label_table(dt.str, tuple(int(v) for v in np.ravel(labels))).take(values.view(f"u{dt.itemsize}"))


@lru_cache(maxsize=16)
def _label_table(dtype: str, labels: tuple[int, ...]) -> np.ndarray:
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    table = np.zeros(1 << (8 * dt.itemsize), bool)
    kept = np.array([v for v in labels if info.min <= v <= info.max], dtype=dt)
    table[kept.view(f"u{dt.itemsize}")] = True
    return table


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a 2-D mask."""
    comp, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return comp == int(np.argmax(sizes))
