"""The report figure's fast paths (issue 13) against the direct computations they replaced.

* the banded resize is a float32 fused multiply-add per tap, in tap order, and equals the dense
  product ``m_si @ slice @ m_ap.T`` up to float32 rounding (the dense product's own rounding
  depends on the BLAS build and thread count);
* blending only the labelled pixels gives, byte for byte, what blending every pixel gives;
* the mid-sagittal slice found inside the labelling's crop, a few slices at a time, is the one
  found over the whole map;
* the figure's peak allocation does not grow with the field of view, and uint8 and int16 label
  maps draw the same PNG.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from phantom_helpers import labelled

import lvp.report.html as report_html
from lvp.labels import CANAL_LABEL
from lvp.preprocess import resize_matrix
from lvp.report.html import (
    _LUT,
    _slice_pixels,
    _taps,
    _window,
    mid_sagittal_index,
    resize_slice,
    sagittal_figure_png,
)

RNG = np.random.default_rng(31)


@pytest.mark.parametrize("n_in,n_out", [(640, 360), (512, 288), (100, 360), (37, 36), (5, 1), (1, 4), (288, 288)])
def test_taps_rebuild_the_resize_matrix(n_in, n_out):
    idx, w = _taps(n_in, n_out)
    dense = np.zeros((n_out, n_in), np.float32)
    np.add.at(dense, (np.arange(n_out)[:, None].repeat(idx.shape[1], 1), idx), w)
    assert np.array_equal(dense, resize_matrix(n_in, n_out, n_out < n_in))


@pytest.mark.parametrize("shape,out", [((640, 512), (360, 288)), ((240, 200), (360, 300)), ((53, 71), (40, 90))])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64])
def test_banded_resize_equals_the_dense_product(shape, out, dtype):
    image = (RNG.random(shape) * (255 if dtype == np.uint8 else 3000)).astype(dtype)
    image[:, :3] = 0  # flat regions and sharp edges
    image[10:12] = image.max()
    m_si = resize_matrix(shape[0], out[0], out[0] < shape[0])
    m_ap = resize_matrix(shape[1], out[1], out[1] < shape[1])
    dense = m_si @ image.astype(np.float32) @ m_ap.T
    got = resize_slice(image, *out)
    assert got.dtype == np.float32 and got.shape == out
    np.testing.assert_allclose(got, dense, rtol=2e-6, atol=float(np.abs(dense).max()) * 2e-6)


def test_banded_resize_is_a_fused_multiply_add_per_tap():
    """Each output value: acc = float32(w * x + acc) over the taps in order, the product and sum
    exact before the one rounding (checked element by element on a small slice)."""
    image = (RNG.random((23, 17)) * 255).astype(np.uint8)
    got = resize_slice(image, 9, 7)

    def one_axis(a, n_out):
        idx, w = _taps(a.shape[0], n_out)
        out = np.zeros((n_out, a.shape[1]), np.float32)
        for i in range(n_out):
            for j in range(a.shape[1]):
                acc = np.float32(0)
                for t in range(idx.shape[1]):
                    acc = np.float32(float(w[i, t]) * float(a[idx[i, t], j]) + float(acc))
                out[i, j] = acc
        return out

    expected = one_axis(one_axis(image, 9).T, 7).T
    assert np.array_equal(got, expected)


def _volume(shape=(9, 120, 96), seed=0):
    from lvp.io.volume import Volume

    rng = np.random.default_rng(seed)
    image = (rng.random(shape) * 220).astype(np.uint8)
    labels = np.zeros(shape, np.int16)
    labels[3:6, 20:100, 60:70] = CANAL_LABEL
    labels[2:7, 30:40, 20:50] = 41
    labels[2:7, 41:45, 20:50] = 92
    labels[4, 50:52, 10:12] = 250  # a value without a colour
    affine = np.diag([3.0, 0.7, 0.8, 1.0])
    vol = Volume.__new__(Volume)
    vol.array, vol.spacing, vol.affine, vol.meta = image, (3.0, 0.7, 0.8), affine, {}
    return vol, labels


def test_blending_labelled_pixels_only_equals_blending_all():
    vol, labels = _volume()
    for k in range(vol.array.shape[0]):
        width, height = 110, 140
        got = _slice_pixels(vol, labels, k, width, height)
        # The direct version: every pixel blended (alpha 0 where unlabelled).
        image = resize_slice(vol.array[k], height, width)
        lo, hi = _window(image)
        grey = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
        n_si, n_ap = vol.array.shape[1:]
        r = np.minimum(((np.arange(height) + 0.5) * n_si / height).astype(np.intp), n_si - 1)
        c = np.minimum(((np.arange(width) + 0.5) * n_ap / width).astype(np.intp), n_ap - 1)
        over = _LUT[labels[k][np.ix_(r, c)].astype(np.intp)]
        alpha = over[..., 3:]
        direct = np.round((grey[..., None] * (1.0 - alpha) + over[..., :3] * alpha) * 255.0).astype(np.uint8)
        assert np.array_equal(got, direct)


def _old_mid_sagittal_index(labels):
    canal_per_slice = np.count_nonzero(labels == CANAL_LABEL, axis=(1, 2))
    if canal_per_slice.sum() == 0:
        fg = np.count_nonzero(labels, axis=(1, 2))
        if fg.sum() == 0:
            return labels.shape[0] // 2
        canal_per_slice = fg
    return int(round(float(np.average(np.arange(labels.shape[0]), weights=canal_per_slice))))


def _bbox(mask):
    if not mask.any():
        return (slice(0, 0),) * 3
    out = []
    for k in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


@pytest.mark.parametrize("chunk", [1, 50, 1 << 22])
def test_mid_sagittal_index_in_the_crop_equals_the_whole_map(monkeypatch, chunk):
    monkeypatch.setattr(report_html, "_COUNT_CHUNK_VOXELS", chunk)
    for trial in range(40):
        shape = (int(RNG.integers(1, 14)), 30, 25)
        labels = np.zeros(shape, np.uint8 if trial % 2 else np.int16)
        n_blobs = int(RNG.integers(0, 4))
        for _ in range(n_blobs):
            a = [int(RNG.integers(0, n)) for n in shape]
            b = [min(x + int(RNG.integers(1, 8)), n) for x, n in zip(a, shape)]
            labels[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = RNG.choice([CANAL_LABEL, 41, 92])
        if trial % 5 == 0:  # two canal pieces of equal size: a half-way centre (round to even)
            labels[:] = 0
            labels[0, :3, :3] = labels[min(3, shape[0] - 1), :3, :3] = CANAL_LABEL
        expected = _old_mid_sagittal_index(labels)
        assert mid_sagittal_index(labels) == expected
        assert mid_sagittal_index(labels, _bbox(labels != 0)) == expected


def _pixels(png: bytes) -> np.ndarray:
    i = png.index(b"IDAT")
    n = struct.unpack(">I", png[i - 4:i])[0]
    w, h = struct.unpack(">II", png[16:24])
    return np.frombuffer(zlib.decompress(png[i + 4:i + 4 + n]), np.uint8).reshape(h, 1 + 3 * w)


def test_figure_same_for_label_dtypes_and_box():
    vol, labels = _volume()
    ref = sagittal_figure_png(vol, labels, height_px=200)
    rows = _pixels(ref)
    assert rows.shape[0] == 200 and not rows[:, 0].any()  # filter byte 0 on every scanline
    assert sagittal_figure_png(vol, labels.astype(np.uint8), height_px=200) == ref
    assert sagittal_figure_png(vol, labels, height_px=200, box=_bbox(labels != 0)) == ref


@pytest.fixture(scope="module")
def phantom_case():
    _, vol, lab, _ = labelled(spacing=(1.5, 0.8, 0.8))
    return vol, lab


def _padded(vol, labels, pad_lr: int, pad_px: int):
    from lvp.io.volume import Volume

    pad = ((pad_lr, pad_lr), (pad_px, pad_px), (pad_px, pad_px))
    image = np.pad(np.clip(vol.array, 0, 255).astype(np.uint8), pad)
    lab = np.pad(labels, pad)
    shift = np.array([p[0] for p in pad], float)
    affine = vol.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ shift
    return Volume(image, vol.spacing, affine, vol.source, dict(vol.meta)), lab


def _figure_peak(big, labels) -> tuple[int, bytes]:
    box = _bbox(labels != 0)
    sagittal_figure_png(big, labels, height_px=240, box=box)  # warm caches
    tracemalloc.start()
    try:
        png = sagittal_figure_png(big, labels, height_px=240, box=box)
        return tracemalloc.get_traced_memory()[1], png
    finally:
        tracemalloc.stop()


def test_figure_memory_does_not_grow_with_the_slice_count(phantom_case):
    """With the labelling's crop, the figure reads the crop and the three drawn slices: 400 more
    empty sagittal slices (a 9x larger volume) leave its peak allocation and its pixels as they
    were (the old whole-map canal count alone allocated a boolean per voxel)."""
    vol, lab = phantom_case
    labels = lab.labels.astype(np.uint8)
    small, small_labels = _padded(vol, labels, 2, 0)
    big, big_labels = _padded(vol, labels, 202, 0)
    peak_small, png_small = _figure_peak(small, small_labels)
    peak_big, png_big = _figure_peak(big, big_labels)
    assert big.array.nbytes > 8 * small.array.nbytes
    assert np.array_equal(_pixels(png_big), _pixels(png_small))  # panels 12 mm apart in both
    assert peak_big - peak_small < 0.01 * (big.array.nbytes - small.array.nbytes), (peak_small, peak_big)
    assert peak_big < big.array.nbytes / 8
