"""Preprocessing shared by training and inference: grid mapping, normalisation, restore."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lvp.preprocess import _argmax, normalise_intensity, restore, to_network_grid


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
    lab, p = _argmax(full)
    assert np.array_equal(sem, lab.numpy())
    fg = sem > 0
    assert np.abs(prob[fg] - p.numpy()[fg]).max() < 1e-4
    near, _ = restore(g, info, "nearest")
    assert near.shape == sem.shape and 0 < np.mean(near != sem) < 0.05
