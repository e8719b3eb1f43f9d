"""Grid helpers: bounding boxes, connected components, pooling to the ~1 mm grid and back."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _bbox(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    m0 = mask.any(axis=0)  # one pass over the volume; the other projections come from it and a row test
    idx = [np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0], np.nonzero(m0.any(axis=1))[0],
           np.nonzero(m0.any(axis=0))[0]]
    return tuple(slice(max(int(x[0]) - margin, 0), int(x[-1]) + margin + 1) for x in idx)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def _pool_any(mask: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    """Max-pool a boolean (or bit-flag) mask by integer factors (padding at the far edges)."""
    if f == (1, 1, 1):
        return mask
    shape = tuple(-(-n // k) for n, k in zip(mask.shape, f))
    out = np.zeros(shape, mask.dtype)
    for a in range(f[0]):
        for b in range(f[1]):
            for c in range(f[2]):
                part = mask[a :: f[0], b :: f[1], c :: f[2]]
                np.bitwise_or(out[: part.shape[0], : part.shape[1], : part.shape[2]], part,
                              out=out[: part.shape[0], : part.shape[1], : part.shape[2]])
    return out


def _scaled_box(box: tuple[slice, ...], f: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A bounding box on the pooled grid as a box on the full grid."""
    return tuple(slice(x.start * k, min(x.stop * k, n)) for x, k, n in zip(box, f, shape))


def _unpool(arr: np.ndarray, f: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling by integer factors, cropped to ``shape``."""
    if f == (1, 1, 1):
        return arr
    a, b, c = arr.shape
    big = np.broadcast_to(arr[:, None, :, None, :, None], (a, f[0], b, f[1], c, f[2]))
    return big.reshape(a * f[0], b * f[1], c * f[2])[: shape[0], : shape[1], : shape[2]]
