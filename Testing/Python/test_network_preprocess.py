"""Preprocessing shared by training and inference: grid mapping, normalisation, restore."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lvp.preprocess import (
    _argmax,
    normalise_intensity,
    normalise_intensity_np,
    pad_to_multiple,
    resample,
    resample_image,
    restore,
    to_network_grid,
)


def test_network_grid_shape_and_range():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4096, (15, 128, 100)).astype(np.uint16)  # 12-bit input
    x, info = to_network_grid(arr, (1.0, 0.5, 0.5), (2.0, 1.0, 1.0), (4, 32, 32))
    assert info.grid_shape == (8, 64, 50)
    assert x.shape == (1, 1, 8, 64, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert all(p % d == 0 for p, d in zip(x.shape[2:], (4, 32, 32)))


def test_normalisation_ignores_intensity_scale():
    arr = np.random.default_rng(1).gamma(2.0, 40.0, (6, 60, 50)).astype(np.float32)
    a = normalise_intensity(arr)
    b = normalise_intensity(arr * 16.0 + 300.0)  # a 12-16 bit scanner's scale
    assert torch.allclose(a, b, atol=1e-5)


def test_linear_restore_equals_full_trilinear():
    """The boxed, separable restore gives the labels of a whole-volume trilinear resize."""
    from lvp.preprocess import GridInfo

    info = GridInfo((15, 200, 150), (8, 94, 70), (8, 96, 96), (0, 1, 13))
    g = torch.zeros(4, 8, 96, 96)
    g[0] = 3
    g[1, 2:6, 30:60, 30:60] = 6
    g[2, 3:5, 40:50, 35:55] = 8
    g += torch.randn(g.shape, generator=torch.Generator().manual_seed(0)) * 0.3
    sem, prob = restore(g, info, "linear")
    full = F.interpolate(torch.softmax(g[:, :, 1:95, 13:83], 0)[None], size=(15, 200, 150), mode="trilinear",
                         align_corners=False)[0]
    lab, p = _argmax(full.numpy())
    assert np.array_equal(sem, lab)
    fg = sem > 0
    assert np.abs(prob[fg] - p[fg]).max() < 1e-4
    near, _ = restore(g, info, "nearest")
    assert near.shape == sem.shape and 0 < np.mean(near != sem) < 0.05


def test_nearest_restore_takes_the_nearest_grid_voxel():
    from lvp.preprocess import GridInfo, _nearest_index

    info = GridInfo((7, 50, 41), (4, 24, 20), (4, 32, 32), (0, 4, 6))
    g = np.random.default_rng(3).normal(size=(4, 4, 32, 32)).astype(np.float32)
    sem, prob = restore(g, info, "nearest")
    crop = torch.softmax(torch.from_numpy(g[:, :, 4:28, 6:26]), 0).numpy()
    ix = np.ix_(*[_nearest_index(s, n) for s, n in zip(info.source_shape, info.grid_shape)])
    assert np.array_equal(sem, crop.argmax(0)[ix])
    assert np.allclose(prob, crop.max(0)[ix], atol=1e-6)


def test_numpy_grid_mapping_equals_torch():
    """Inference's numpy resize / normalise / pad equals training's torch versions."""
    rng = np.random.default_rng(2)
    for shape, out in [((15, 128, 100), (8, 60, 47)), ((5, 40, 30), (9, 90, 20)), ((6, 60, 50), (6, 60, 80)),
                       ((15, 640, 512), (8, 300, 240))]:
        arr = rng.integers(0, 255, shape).astype(np.uint8)
        ref = resample(arr.astype(np.float32), out).numpy()
        got = resample_image(arr, out)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-4 * 255  # float32 rounding of the two kernels
        norm = normalise_intensity_np(got.copy())
        assert np.abs(norm - normalise_intensity(ref).numpy()).max() < 1e-4
    x, info = to_network_grid(arr, (1.0, 0.46875, 0.46875), (2.0, 1.0, 1.0), (4, 32, 32))
    t, before = pad_to_multiple(normalise_intensity(resample(arr.astype(np.float32), info.grid_shape)),
                                (4, 32, 32))
    assert before == info.pad_before and x.shape[2:] == tuple(t.shape)
    assert np.abs(x[0, 0] - t.numpy()).max() < 1e-4
