"""Shared by training and inference: canonical volume -> network grid, and network output -> back.

The network works on a fixed physical spacing (``models.json`` ``input_spacing``, along the
canonical axes lr, si, ap). Resampling is separable: an anti-aliased bilinear resize of each
sagittal slice (in-plane) followed by a linear resize across slices. Both map the same physical
extent (``align_corners=False``), so :func:`restore` is the exact inverse of the grid mapping.

Intensities are normalised from robust percentiles of the volume itself (never a fixed 8-bit or
12-bit range): ``(clip(x, p_lo, p_hi) - p_lo) / (p_hi - p_lo)``. This is invariant to any
positive affine change of the scanner's intensity scale.

Inference (:func:`to_network_grid`, :func:`restore`) runs on numpy alone: every resize is a
product with small separable weight matrices that reproduce torch's ``F.interpolate`` kernels
(anti-aliased bilinear / linear, ``align_corners=False``) to float32 rounding, so a CPU run never
imports torch (about 1 s of start-up). Training uses the torch versions (:func:`resample`,
:func:`normalise_intensity`, :func:`pad_to_multiple`), which import torch when first called. No
SimpleITK here, so this also runs on training machines that lack it.

Over 400 lines on purpose: the numpy inference path and the torch training path of each
resize must stay side by side, since tests hold the two to the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

PERCENTILES = (0.5, 99.5)
# Percentiles are taken on a strided subsample: a few 100k voxels give the same figures to
# well under 1 % and cost a fraction of a full sort.
_PERCENTILE_SAMPLES = 200_000


@dataclass
class GridInfo:
    """How a canonical array was mapped onto the network grid (needed to map back)."""

    source_shape: tuple[int, int, int]
    grid_shape: tuple[int, int, int]  # resampled, before padding
    padded_shape: tuple[int, int, int]
    pad_before: tuple[int, int, int]


def grid_shape_for(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple:
    """Size of the resampled grid: the same physical extent at the target spacing."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample(array: np.ndarray | torch.Tensor, out_shape: tuple[int, int, int], labels: bool = False) -> torch.Tensor:
    """Resample a 3-D array (lr, si, ap) or a (C, lr, si, ap) stack to ``out_shape`` (torch, for training).

    Images: anti-aliased bilinear in-plane, then linear across slices. Labels: nearest.
    :func:`resample_image` is the numpy equivalent used at inference.
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(array)
    squeeze = t.ndim == 3
    if squeeze:
        t = t[None]
    if labels:
        out = F.interpolate(t[None].float(), size=out_shape, mode="nearest-exact")[0]
        out = out.to(torch.as_tensor(array).dtype)
        return out[0] if squeeze else out
    t = t.float()
    c, d, h, w = t.shape
    if (h, w) != tuple(out_shape[1:]):
        # Each sagittal slice as one image of the batch: (C*lr, 1, si, ap).
        antialias = out_shape[1] < h or out_shape[2] < w
        t = F.interpolate(t.reshape(c * d, 1, h, w), size=out_shape[1:], mode="bilinear",
                          align_corners=False, antialias=antialias).reshape(c, d, *out_shape[1:])
    if d != out_shape[0]:
        h2, w2 = t.shape[2:]
        t = F.interpolate(t.reshape(c, d, h2 * w2)[None], size=(out_shape[0], h2 * w2), mode="bilinear",
                          align_corners=False)[0].reshape(c, out_shape[0], h2, w2)
    return t[0] if squeeze else t


def _percentile_range(flat: np.ndarray) -> tuple[float, float]:
    step = max(1, flat.size // _PERCENTILE_SAMPLES)
    # np.percentile partitions (linear time) where torch.quantile sorts.
    lo, hi = (float(v) for v in np.percentile(flat[::step], PERCENTILES))
    return lo, hi


def normalise_intensity(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Robust percentile scaling to about [0, 1] (see module docstring); torch, for training."""
    import torch

    t = torch.as_tensor(array).float()
    lo, hi = _percentile_range(t.reshape(-1).numpy())
    if hi - lo <= 1e-6:
        return torch.zeros_like(t)
    return ((t.clamp(lo, hi) - lo) / (hi - lo)).contiguous()


def normalise_intensity_np(array: np.ndarray) -> np.ndarray:
    """:func:`normalise_intensity` in numpy (float32, in place on a float32 input)."""
    a = np.asarray(array, dtype=np.float32)
    lo, hi = _percentile_range(a.reshape(-1))
    if hi - lo <= 1e-6:
        return np.zeros_like(a)
    np.clip(a, lo, hi, out=a)
    a -= np.float32(lo)
    a /= np.float32(hi - lo)
    return a


def _pad_widths(shape: tuple[int, ...], divisor: tuple[int, int, int]) -> list[tuple[int, int]]:
    target = [int(np.ceil(n / d) * d) for n, d in zip(shape, divisor)]
    return [((T - n) // 2, T - n - (T - n) // 2) for T, n in zip(target, shape)]


def pad_to_multiple(t: torch.Tensor, divisor: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Zero-pad the last three axes symmetrically up to multiples of ``divisor`` (torch)."""
    import torch.nn.functional as F

    widths = _pad_widths(tuple(t.shape[-3:]), divisor)
    pads: list[int] = []
    for b, a in reversed(widths):
        pads += [b, a]
    if any(pads):
        t = F.pad(t, pads)
    return t, tuple(b for b, _ in widths)  # type: ignore[return-value]


# --- numpy inference path -------------------------------------------------------------------------

@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, antialias: bool) -> np.ndarray:
    """``(n_out, n_in)`` weights of torch's 1-D (anti-aliased) linear resize, ``align_corners=False``.

    The same kernel as ``F.interpolate(mode="bilinear", antialias=...)`` (PIL's triangle filter
    widened by the down-sampling factor when anti-aliasing; plain linear otherwise).
    """
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float64)
    if antialias:
        support = scale if scale >= 1.0 else 1.0
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), n_in)
            j = np.arange(lo, hi)
            w = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) * invscale))
            total = w.sum()
            if total > 0:
                m[i, lo:hi] = w / total
        return m.astype(np.float32)
    pos = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    return _linear_matrix(pos, n_in)


def _linear_matrix(pos: np.ndarray, n_in: int) -> np.ndarray:
    """``(len(pos), n_in)`` linear-interpolation weights at fractional indices (border-clamped)."""
    p = np.clip(np.asarray(pos, dtype=np.float64), 0, n_in - 1)
    i0 = np.floor(p).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = p - i0
    m = np.zeros((len(p), n_in), dtype=np.float64)
    rows = np.arange(len(p))
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m.astype(np.float32)


def resample_image(array: np.ndarray, out_shape: tuple[int, int, int]) -> np.ndarray:
    """The numpy twin of :func:`resample` for images (float32 result, equal to float rounding).

    The weights are banded (a few taps per output voxel), so sparse products do a few
    multiply-adds per voxel where dense matrix products would do hundreds. In-plane work goes
    slice by slice, so the transposes it needs stay in the cache.
    """
    from scipy import sparse  # loaded by the post-processing (scipy.ndimage) anyway

    a = np.asarray(array)
    d, h, w = a.shape
    out_d, out_h, out_w = (int(n) for n in out_shape)
    if (h, w) != (out_h, out_w):
        antialias = out_h < h or out_w < w
        s_si = sparse.csr_array(resize_matrix(h, out_h, antialias))
        s_ap = sparse.csr_array(resize_matrix(w, out_w, antialias))
        plane = np.empty((d, out_h, out_w), dtype=np.float32)
        for k in range(d):
            t = s_si @ a[k].astype(np.float32)  # (out_h, w)
            plane[k] = (s_ap @ np.ascontiguousarray(t.T)).T
    else:
        plane = a.astype(np.float32)
    if d != out_d:
        s_lr = sparse.csr_array(resize_matrix(d, out_d, False))
        plane = (s_lr @ plane.reshape(d, -1)).reshape(out_d, out_h, out_w)
    return np.ascontiguousarray(plane, dtype=np.float32)


def to_network_grid(
    array: np.ndarray, spacing: tuple[float, float, float], target_spacing: tuple[float, float, float],
    divisor: tuple[int, int, int],
) -> tuple[np.ndarray, GridInfo]:
    """Canonical image -> normalised, resampled, padded float32 array ``(1, 1, lr, si, ap)`` (numpy)."""
    shape = tuple(array.shape)
    gshape = grid_shape_for(shape, spacing, target_spacing)
    t = normalise_intensity_np(resample_image(array, gshape))
    widths = _pad_widths(gshape, divisor)
    if any(b or a for b, a in widths):
        t = np.pad(t, widths)
    info = GridInfo(shape, gshape, tuple(t.shape), tuple(b for b, _ in widths))  # type: ignore[arg-type]
    return t[None, None], info


def crop_padding(out: np.ndarray, info: GridInfo) -> np.ndarray:
    """Remove the padding of a ``(C, *padded_shape)`` network output."""
    sl = tuple(slice(b, b + n) for b, n in zip(info.pad_before, info.grid_shape))
    return np.asarray(out)[(slice(None), *sl)]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 in float32."""
    t = np.asarray(logits, dtype=np.float32)
    e = t - t.max(axis=0, keepdims=True)
    np.exp(e, out=e)  # in place: one full-size temporary fewer
    e /= e.sum(axis=0, keepdims=True)
    return e


def restore(logits: np.ndarray, info: GridInfo, mode: str = "linear",
            out: np.ndarray | None = None) -> tuple[np.ndarray, GridProbability]:
    """Network logits ``(C, *padded_shape)`` -> (semantic uint8, probability) on the source grid.

    ``mode="linear"`` interpolates the class probabilities onto the source grid (smooth borders,
    about 1 Dice point better on SPIDER than nearest); ``mode="nearest"`` takes the label and
    probability of the nearest network voxel (cheapest). The probability (of the chosen class) is
    a :class:`GridProbability`: indexed like a float32 array of the source shape, but held as the
    grid's values plus the interpolated box, so it costs memory on the working grid only.
    ``out``: an all-zero uint8 array of the source shape (a view is fine) to write the classes
    into; only the structures' box is written (the rest of a fresh ``np.zeros`` stays unpaged).
    """
    logits = crop_padding(np.asarray(logits), info)
    if out is not None and tuple(out.shape) != tuple(info.source_shape):
        raise ValueError(f"out has shape {out.shape}, the source grid {info.source_shape}")
    lab_g, p_g = _grid_argmax(logits)
    # Nearest: each source voxel takes the grid voxel nearest to it.
    nearest = [_nearest_index(n_src, n_grid) for n_src, n_grid in zip(info.source_shape, info.grid_shape)]
    if mode == "nearest":
        counts = [np.bincount(ix, minlength=n) for ix, n in zip(nearest, info.grid_shape)]
        if out is None:
            return _repeat3(lab_g, counts), GridProbability(p_g, nearest)
        out[...] = _repeat3(lab_g, counts)
        return out, GridProbability(p_g, nearest)
    # Linear: interpolate the probabilities only inside the box around the structures (grown by a
    # background margin); outside it every label is background with or without interpolation
    # (most of a sagittal field of view), so only the box is filled in.
    semantic = np.zeros(info.source_shape, dtype=np.uint8) if out is None else out
    box = _foreground_box(lab_g, margin=2)
    if box is None:
        return semantic, GridProbability(p_g, nearest)
    src_box, positions = [], []
    for (lo, hi), n_src, n_grid in zip(box, info.source_shape, info.grid_shape):
        # Source voxels whose linear interpolation reads only grid voxels inside [lo, hi)
        # (the whole axis when the box touches both ends).
        first = int(np.ceil((lo + 0.5) * n_src / n_grid - 0.5)) if lo > 0 else 0
        last = int(np.floor((hi - 1 + 0.5) * n_src / n_grid - 0.5)) + 1 if hi < n_grid else n_src
        first, last = max(first, 0), min(last, n_src)
        src_box.append((first, last))
        # Same align_corners=False mapping as a whole-volume resize, in sub-box index units.
        positions.append((np.arange(first, last) + 0.5) * n_grid / n_src - 0.5 - lo)
    # The class probabilities of the box only (softmax is per voxel: the same values as on the grid).
    t = softmax(logits[:, box[0][0]:box[0][1], box[1][0]:box[1][1], box[2][0]:box[2][1]])
    # Per source slice: across slices first (at the grid's in-plane size), then the slice is
    # brought to full in-plane size and reduced to (label, probability) at once: neither the
    # class stack at full size nor one at the source's slice count ever exists, every step works
    # on one slice that stays in the cache.
    lr = _lerp_taps(positions[0], t.shape[1])
    ap = _lerp_taps(positions[2], t.shape[3])
    si = _lerp_taps(positions[1], t.shape[2])
    (z0, z1), (y0, y1), (x0, x1) = src_box
    p_box = np.empty((z1 - z0, y1 - y0, x1 - x0), dtype=np.float32)
    for k in range(z1 - z0):
        plane = _lerp_axis(t, positions[0][k:k + 1], 1, tuple(taps[k:k + 1] for taps in lr))[:, 0]
        plane = _lerp_axis(plane, positions[2], 2, ap)
        plane = _lerp_axis(plane, positions[1], 1, si)
        lab, p = _argmax(plane)
        semantic[z0 + k, y0:y1, x0:x1] = lab
        p_box[k] = p
    return semantic, GridProbability(p_g, nearest, tuple(slice(a, b) for a, b in src_box), p_box)


class _RegionArray:
    """Read like a float32 array of ``shape``, region by region (subclasses give ``region``)."""

    dtype = np.dtype(np.float32)
    ndim = 3
    shape: tuple[int, int, int]

    def region(self, key: tuple[slice, ...]) -> np.ndarray:  # pragma: no cover - abstract
        """The float32 array of a box given as one step-1 slice per axis."""
        raise NotImplementedError

    def __getitem__(self, key):  # numpy indexing semantics
        if not isinstance(key, tuple):
            key = (key,)
        if (len(key) <= 3 and all(isinstance(k, slice) and k.step in (None, 1) for k in key)):
            return self.region(tuple(key) + (slice(None),) * (3 - len(key)))
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):  # the numpy protocol
        full = self.region((slice(None),) * 3)
        if not full.flags.writeable:  # a view of the values held: the caller gets its own array
            full = full.copy()
        return full if dtype is None else full.astype(dtype, copy=False)

    def min(self) -> np.float32:
        """Smallest probability."""
        return np.asarray(self).min()

    def max(self) -> np.float32:
        """Largest probability."""
        return np.asarray(self).max()


class GridProbability(_RegionArray):
    """The chosen class's probability on the source grid, kept at the working grid's size.

    Outside ``box`` each source voxel holds the probability of its nearest grid voxel; inside it,
    ``values`` (the interpolated probabilities). Reading a region (``prob[z0:z1, y0:y1, x0:x1]``)
    builds just that region; ``np.asarray(prob)`` builds the whole array (equal, value for value,
    to the full-size array :func:`restore` used to return). This keeps a full-field-of-view input
    from costing 4 bytes per input voxel for a map only the spine's box is read from.
    """

    def __init__(self, grid: np.ndarray, nearest: list[np.ndarray], box: tuple[slice, ...] | None = None,
                 values: np.ndarray | None = None) -> None:
        self.grid = grid
        self.nearest = nearest
        self.box = box
        self.values = values

    @property
    def shape(self) -> tuple[int, int, int]:
        """Source grid shape ``(lr, si, ap)``."""
        return tuple(len(ix) for ix in self.nearest)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Bytes held (the grid values and the box), not the size of the full array."""
        return self.grid.nbytes + (self.values.nbytes if self.values is not None else 0)

    def region(self, key: tuple[slice, ...]) -> np.ndarray:
        """The float32 array of a box given as one step-1 slice per axis."""
        ranges = [range(*s.indices(n)) for s, n in zip(key, self.shape)]
        if any(len(r) == 0 for r in ranges):
            return np.zeros(tuple(len(r) for r in ranges), np.float32)
        if self.box is not None and all(b.start <= r.start and r.stop <= b.stop for r, b in zip(ranges, self.box)):
            # Inside the interpolated box (what the labelling reads): a read-only view, no copy.
            view = self.values[tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(ranges, self.box))]
            view.flags.writeable = False
            return view
        # The nearest-index maps are monotone: the region is a sub-block of the grid with each
        # voxel repeated (contiguous copies, cheaper than a 3-D fancy index).
        sub = [ix[r.start:r.stop] for ix, r in zip(self.nearest, ranges)]
        block = self.grid[tuple(slice(int(s[0]), int(s[-1]) + 1) for s in sub)]
        out = _repeat3(block, [np.bincount(s - s[0]) for s in sub])
        overlap = _overlap(ranges, self.box) if self.box is not None else None
        if overlap is not None:
            out[overlap[0]] = self.values[overlap[1]]
        return out


def _overlap(ranges: list[range], box: tuple[slice, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Where a region (``ranges`` of the grid) and ``box`` meet: (in the region, in the box), or None."""
    dst, src = [], []
    for r, b in zip(ranges, box):
        lo, hi = max(r.start, b.start), min(r.stop, b.stop)
        if hi <= lo:
            return None
        dst.append(slice(lo - r.start, hi - r.start))
        src.append(slice(lo - b.start, hi - b.start))
    return tuple(dst), tuple(src)


class PlacedProbability(_RegionArray):
    """A probability map made for a box of a larger grid, read on the whole grid.

    Outside ``box`` it reads 1.0: those voxels are background because their slices of the image
    are empty (:func:`lvp.segmenter.clear_empty_slices`), not because a network scored them.
    """

    def __init__(self, inner: _RegionArray, box: tuple[slice, ...], shape: tuple[int, ...]) -> None:
        self.inner = inner
        self.box = box
        self.shape = tuple(int(n) for n in shape)  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        """Bytes held by the box's map."""
        return int(self.inner.nbytes)

    def region(self, key: tuple[slice, ...]) -> np.ndarray:
        """The float32 array of a box given as one step-1 slice per axis."""
        ranges = [range(*k.indices(n)) for k, n in zip(key, self.shape)]
        if all(b.start <= r.start and r.stop <= b.stop for r, b in zip(ranges, self.box)):
            inner = tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(ranges, self.box))
            return self.inner.region(inner)
        out = np.ones(tuple(len(r) for r in ranges), np.float32)
        overlap = _overlap(ranges, self.box)
        if overlap is not None:
            out[overlap[0]] = self.inner.region(overlap[1])
        return out


def _grid_argmax(logits: np.ndarray, slab: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Class and its softmax probability on the grid, a few slices at a time.

    The softmax of the whole ``(C, D, H, W)`` grid never exists at once (a full field of view's
    grid is ~180 MB per copy); per voxel the values are those of :func:`softmax` + :func:`_argmax`.
    """
    shape = logits.shape[1:]
    lab = np.empty(shape, np.uint8)
    best = np.empty(shape, np.float32)
    for k in range(0, shape[0], slab):
        lab[k:k + slab], best[k:k + slab] = _argmax(softmax(logits[:, k:k + slab]))
    return lab, best


def _repeat3(a: np.ndarray, counts: list[np.ndarray]) -> np.ndarray:
    for axis, c in enumerate(counts):
        a = np.repeat(a, c, axis=axis)
    return np.ascontiguousarray(a)


def _lerp_taps(pos: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower / upper index and upper weight of linear interpolation at ``pos`` (border-clamped)."""
    p = np.clip(pos, 0, size - 1)
    i0 = np.floor(p).astype(np.intp)
    return i0, np.minimum(i0 + 1, size - 1), (p - i0).astype(np.float32)


def _lerp_axis(t: np.ndarray, pos: np.ndarray, axis: int,
               taps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Linear interpolation of ``t`` along ``axis`` at fractional indices ``pos`` (border-clamped)."""
    i0, i1, frac = taps if taps is not None else _lerp_taps(pos, t.shape[axis])
    shape = [1] * t.ndim
    shape[axis] = -1
    a = np.take(t, i0, axis=axis)
    b = np.take(t, i1, axis=axis)
    b -= a
    b *= frac.reshape(shape)
    a += b
    return a


def _foreground_box(lab: np.ndarray, margin: int) -> list[tuple[int, int]] | None:
    """Index box (per axis, [lo, hi)) around the non-background voxels, grown by ``margin``."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(lab.any(axis=other))
        if nz.size == 0:
            return None
        box.append((max(int(nz[0]) - margin, 0), min(int(nz[-1]) + 1 + margin, lab.shape[axis])))
    return box


def _nearest_index(n_src: int, n_grid: int) -> np.ndarray:
    """Grid index nearest to each source voxel centre (align_corners=False mapping)."""
    pos = (np.arange(n_src) + 0.5) * n_grid / n_src - 0.5
    return np.clip(np.round(pos), 0, n_grid - 1).astype(np.intp)


def _argmax(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class index (uint8) and its probability over axis 0 (first maximum wins, as ``argmax``).

    A running comparison over the few classes: contiguous passes instead of a strided reduction.
    """
    prob = np.asarray(prob)
    best = prob[0].copy()
    lab = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, prob.shape[0]):
        better = prob[c] > best
        np.copyto(best, prob[c], where=better)
        lab[better] = c
    return lab, best
