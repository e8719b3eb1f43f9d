"""Grid helpers: bounding boxes, connected components, pooling to the ~1 mm grid and back.

Time and memory of the labelling should grow with the spine's region, not with the input's
voxel count: components are labelled on the bounding box of their class (``ndimage.label``
numbers components in raster order, so the ids on a box are those on the whole grid), boxes of
a box-local map are shifted back to the crop's indices, and writes of one class over a whole
crop go a few slices at a time (no crop-sized mask).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

_BLAS_CONTROLLER: Any = None  # threadpoolctl's controller, made on first use (False: not available)


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """A context in which BLAS (numpy's matrix products) runs on one thread.

    The labelling's products are N x 3 by 3 x 3 or by a 3-vector: a second BLAS thread computes
    next to nothing but is woken for each call and spins after it, taking a core from the main
    thread (on 2 cores at a load of 5, the stage took 1.5-2 times as long). One thread gives the
    same values (each row's dot product is computed alike). Needs threadpoolctl; without it,
    nothing changes.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController()
        except Exception:  # not installed, or no BLAS it knows: leave the threads as they are
            _BLAS_CONTROLLER = False
    if _BLAS_CONTROLLER is False:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


# Voxels handled per chunk when a class is written over a whole crop (bounds the temporaries).
_CHUNK_VOXELS = 1 << 22


def _bbox(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    """Bounding box of the non-zero voxels of ``mask`` (bool or unsigned), widened by ``margin``."""
    m0 = mask.any(axis=0)  # one pass over the volume; the other projections come from it and a row test
    idx = [np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0], np.nonzero(m0.any(axis=1))[0],
           np.nonzero(m0.any(axis=0))[0]]
    return tuple(slice(max(int(x[0]) - margin, 0), int(x[-1]) + margin + 1) for x in idx)


def _foreground_box(classes: np.ndarray, margin: int = 2) -> tuple[slice, ...] | None:
    """:func:`_bbox` of the non-zero voxels of an unsigned (or bool) class map, None when it has
    none: two max-reductions of the map itself (no full-size mask, no third pass to test for any).
    """
    m0 = classes.max(axis=0)
    if not m0.any():
        return None
    idx = [np.flatnonzero(classes.reshape(classes.shape[0], -1).max(axis=1)), np.flatnonzero(m0.any(axis=1)),
           np.flatnonzero(m0.any(axis=0))]
    return tuple(slice(max(int(x[0]) - margin, 0), int(x[-1]) + margin + 1) for x in idx)


def _box_or_none(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The tight bounding box of ``mask``'s non-zero voxels, or None when it has none."""
    if not mask.any():
        return None
    return _bbox(mask, 0)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def _components_in_box(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[slice, ...] | None]:
    """Connected components of ``mask`` labelled on its bounding box: ``(map of the box, count, box)``.

    The ids are those :func:`_components` gives on the whole grid (raster order is kept inside a
    box); the box is None (and the map empty) when ``mask`` is empty.
    """
    box = _box_or_none(mask)
    if box is None:
        return np.zeros((0, 0, 0), np.int32), 0, None
    comp, n = _components(mask[box])
    return comp, n, box


def _shift(box: tuple[slice, ...] | None, origin: tuple[slice, ...]) -> tuple[slice, ...] | None:
    """A box of a sub-array starting at ``origin`` as a box of the whole array."""
    if box is None:
        return None
    return tuple(slice(b.start + o.start, b.stop + o.start) for b, o in zip(box, origin))


def _relative(box: tuple[slice, ...], outer: tuple[slice, ...]) -> tuple[slice, ...]:
    """A box of the whole array as a box of its sub-array ``outer`` (which holds it)."""
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))


def _masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values[mask]`` (the same elements in the same order) for a same-shaped 3-D mask: as 1-D
    arrays, several times faster than numpy's 3-D boolean indexing.
    """
    return np.compress(np.ravel(mask), np.ravel(values))


def _pool_or(arr: np.ndarray, f: tuple[int, ...], dtype, flags: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """OR-pool ``flags(part)`` of each strided part of ``arr``'s pooling cells by integer factors
    (padding at the far edges): one part at a time, never a transform of the whole array.
    """
    shape = tuple(-(-n // k) for n, k in zip(arr.shape, f))
    out = np.zeros(shape, dtype)
    for a in range(f[0]):
        for b in range(f[1]):
            for c in range(f[2]):
                part = arr[a :: f[0], b :: f[1], c :: f[2]]
                view = out[: part.shape[0], : part.shape[1], : part.shape[2]]
                np.bitwise_or(view, flags(part), out=view)
    return out


def _pool_any(mask: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    """Max-pool a boolean (or bit-flag) mask by integer factors (padding at the far edges)."""
    if f == (1, 1, 1):
        return mask
    return _pool_or(mask, f, mask.dtype, lambda part: part)


def _class_bits(sem: np.ndarray) -> np.ndarray:
    """``1 << sem`` as uint8 bit flags (bit ``c`` for class ``c``)."""
    return np.left_shift(np.uint8(1), sem, dtype=np.uint8)


def _pool_bits(sem: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    """``_pool_any(1 << sem, f)``: bit ``c`` set where class ``c`` occurs in the pooled cell.

    The bit flags are made one strided part of the pooling cell at a time (a quarter of the crop
    for 2 x 2 pooling), never for the whole crop at once.
    """
    if f == (1, 1, 1):
        return _class_bits(sem)
    return _pool_or(sem, f, np.uint8, _class_bits)


def _write_class(labels: np.ndarray, sem: np.ndarray, cls: int, value: int) -> None:
    """``labels[sem == cls] = value``, a few slices at a time (no crop-sized mask)."""
    step = max(1, _CHUNK_VOXELS // max(1, sem[0].size))
    for k in range(0, sem.shape[0], step):
        np.copyto(labels[k:k + step], value, where=sem[k:k + step] == cls, casting="unsafe")


def _scaled_box(box: tuple[slice, ...], f: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A bounding box on the pooled grid as a box on the full grid."""
    return tuple(slice(x.start * k, min(x.stop * k, n)) for x, k, n in zip(box, f, shape))


def _union_box(boxes: list[tuple[slice, ...] | None]) -> tuple[slice, ...] | None:
    """The smallest box holding every given box (None when none is given)."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[k].start for b in boxes), max(b[k].stop for b in boxes)) for k in range(3))


def _unpool(arr: np.ndarray, f: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling by integer factors, cropped to ``shape``.

    The last axis is repeated first (for one-byte values and a factor of 2, by widening each byte
    to two equal bytes), then whole rows are copied: a 6-D broadcast with a 2-element inner axis
    copies element by element, an order of magnitude slower.
    """
    if f == (1, 1, 1):
        return arr
    a, b, c = arr.shape
    if f[2] == 2 and arr.dtype.itemsize == 1:
        pairs = np.ascontiguousarray(arr).view(np.uint8).astype(np.uint16) * np.uint16(257)  # byte v -> v, v
        rows = pairs.view(np.uint8).view(arr.dtype).reshape(a, b, 2 * c)
    else:
        rows = np.repeat(arr, f[2], axis=2) if f[2] > 1 else arr
    big = np.broadcast_to(rows[:, None, :, None, :], (a, f[0], b, f[1], rows.shape[2]))
    return big.reshape(a * f[0], b * f[1], rows.shape[2])[: shape[0], : shape[1], : shape[2]]
