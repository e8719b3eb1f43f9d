"""The fast paths of the measurement and figure stages (issue 13) give what the direct paths give.

Each vectorised or narrowed helper is checked against the straightforward version it replaced
(written out here) on adversarial inputs; the whole stage is checked to make no float copy of the
image (a read-only memory-mapped uint8 image, peak allocation by tracemalloc) and to give the same
measurements for int16 and uint8 label maps.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from phantom_helpers import labelled
from scipy import ndimage

from lvp.measure import FOV_MARGIN_MM, _cut_by_fov, _Faces, measure_levels
from lvp.measure.reformat import (
    first_run_end,
    first_run_ends,
    first_runs,
    interpolate_at,
    label_mask,
    sample_plane,
)

RNG = np.random.default_rng(13)


# --- row runs -------------------------------------------------------------------------------------


def _masks() -> list[np.ndarray]:
    """Random masks of several densities, and the edge cases: empty, full, one row, one column."""
    out = [RNG.random((37, 53)) < p for p in (0.02, 0.3, 0.5, 0.8, 0.98)]
    stripes = np.zeros((6, 20), bool)
    stripes[0, :] = True  # a full row
    stripes[1, 5:9] = True  # one run
    stripes[2, [0, 2, 4, 19]] = True  # runs of one, one at the last column
    stripes[3, 19] = True  # only the last column
    stripes[4, :19] = True  # up to the last column but one
    return out + [stripes, np.zeros((4, 7), bool), np.ones((4, 7), bool), np.ones((1, 9), bool),
                  RNG.random((9, 1)) < 0.5]


@pytest.mark.parametrize("mask", _masks())
def test_first_runs_equal_row_by_row(mask):
    body = np.zeros_like(mask)
    ends = []
    for i in range(mask.shape[0]):
        e = first_run_end(mask[i])
        ends.append(-1 if e is None else e)
        if e is not None:
            body[i, np.flatnonzero(mask[i])[0]: e + 1] = True
    assert np.array_equal(first_runs(mask), body)
    assert first_run_ends(mask).tolist() == ends


# --- label lookup ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64])
def test_label_mask_equals_isin(dtype):
    info = np.iinfo(dtype)
    values = RNG.integers(max(info.min, -300), min(info.max, 300) + 1, (41, 29)).astype(dtype)
    values[0, :4] = [info.min, info.max, 0, 1]
    # Labels inside and outside the dtype's range, negative ones, repeats.
    labels = np.array([1, 31, 50, 100, 255, 256, 300, -1, -128, 32767, 40000, 31])
    assert np.array_equal(label_mask(values, labels), np.isin(values, labels))
    assert not label_mask(values, np.array([], int)).any()
    swapped = values.astype(values.dtype.newbyteorder())  # same values, other byte order
    assert np.array_equal(label_mask(swapped, labels), np.isin(values, labels))


# --- plane sampling -------------------------------------------------------------------------------


class _Grid:
    """A minimal stand-in for :class:`lvp.io.volume.Volume`: what sample_plane reads (its affine)."""

    def __init__(self, affine: np.ndarray) -> None:
        self.affine = affine


def _old_sample_plane(array, volume, origin, e1, e2, r1, r2, order=0):
    """sample_plane as it was (whole-array float conversion by the caller, three index arrays)."""
    inv = np.linalg.inv(volume.affine)
    o = inv[:3, :3] @ np.asarray(origin, float) + inv[:3, 3]
    d1, d2 = inv[:3, :3] @ np.asarray(e1, float), inv[:3, :3] @ np.asarray(e2, float)
    a1, a2 = np.asarray(r1, np.float32), np.asarray(r2, np.float32)
    idx = [np.float32(o[k]) + a1[:, None] * np.float32(d1[k]) + a2[None, :] * np.float32(d2[k]) for k in range(3)]
    valid = np.ones((a1.size, a2.size), bool)
    for k in range(3):
        valid &= (idx[k] > -0.5) & (idx[k] < array.shape[k] - 0.5)
    if order == 0:
        vals = np.zeros(valid.shape, array.dtype)
        ii = tuple(np.rint(idx[k][valid]).astype(np.intp) for k in range(3))
        vals[valid] = array[ii]
    else:
        coords = np.stack([x.ravel() for x in idx])
        vals = ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0, prefilter=False)
    return vals.reshape(valid.shape), valid


def _planes(shape):
    """Oblique planes through, across and beyond a volume (some wholly outside)."""
    centre = np.array(shape, float) / 2
    out = []
    for _ in range(12):
        e1, e2 = np.linalg.qr(RNG.normal(size=(3, 2)))[0].T
        origin = centre + RNG.normal(scale=max(shape) * 0.6, size=3)
        out.append((origin, e1, e2))
    out.append((np.array([-0.5, 3.0, 3.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])))  # on a face
    out.append((np.array([shape[0] + 9.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])))
    return out


@pytest.mark.parametrize("dtype", [np.int16, np.uint8])
@pytest.mark.parametrize("contiguous", [True, False])
def test_sample_plane_labels_equal_the_direct_version(dtype, contiguous):
    shape = (11, 40, 33)
    labels = RNG.integers(0, 101, shape).astype(dtype)
    if not contiguous:
        labels = np.asfortranarray(labels)[::-1, :, ::-1]  # a flipped, non-contiguous view
    affine = np.eye(4)
    affine[:3, :3] = np.diag([3.3, 0.6, 0.7]) @ np.linalg.qr(RNG.normal(size=(3, 3)))[0]
    affine[:3, 3] = [12.0, -40.0, 7.5]
    grid = _Grid(affine)
    r1, r2 = np.arange(-20, 20.25, 0.5), np.arange(-25, 30.25, 0.5)
    for origin_idx, e1, e2 in _planes(shape):
        origin = affine[:3, :3] @ origin_idx + affine[:3, 3]
        got = sample_plane(labels, grid, origin, e1, e2, r1, r2)
        vals, valid = _old_sample_plane(labels, grid, origin, e1, e2, r1, r2)
        assert got.values.dtype == labels.dtype
        assert np.array_equal(got.valid, valid) and np.array_equal(got.values, vals)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.int32, bool])
@pytest.mark.parametrize("shape", [(9, 30, 25), (1, 12, 14), (2, 3, 40)])
def test_interpolation_equals_the_float32_copy(dtype, shape):
    """interpolate_at (in place or block-wise) == map_coordinates on the whole float32 copy,
    for points inside, on and beyond every face, and for axes of one or two voxels."""
    scale = 2**20 if dtype in (np.int32, np.float64) else 200  # values float32 cannot hold exactly
    image = (RNG.random(shape) * scale).astype(dtype)
    lo, hi = -2.0, np.array(shape, float) + 1.0
    coords = RNG.uniform(lo, hi[:, None], size=(3, 4000))
    coords[:, :20] = np.round(coords[:, :20])  # integer positions, the faces among them
    coords[:, 20:40] = hi[:, None] - 1.5  # the last voxel's centre (half beyond the ends)
    coords = coords.astype(np.float32)
    expected = ndimage.map_coordinates(image.astype(np.float32), coords, order=1, mode="constant", cval=0,
                                       prefilter=False)
    got = interpolate_at(image, coords)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    # A small cluster far from the faces: the block-wise path reads a small block only.
    cluster = (np.array(shape, float)[:, None] / 2 + RNG.uniform(-0.7, 0.7, (3, 50))).astype(np.float32)
    assert np.array_equal(interpolate_at(image, cluster), ndimage.map_coordinates(
        image.astype(np.float32), cluster, order=1, mode="constant", cval=0, prefilter=False))


# --- field-of-view faces --------------------------------------------------------------------------


def _old_cut_by_fov(labels, value, spacing) -> bool:
    if (labels[:, :, 0] == value).any() or (labels[:, :, -1] == value).any():
        return True
    rows = np.flatnonzero((labels == value).any(axis=(0, 2)))
    if rows.size == 0:
        return False
    margin = FOV_MARGIN_MM / float(spacing[1])
    return bool(rows[0] < margin or labels.shape[1] - 1 - rows[-1] < margin)


def _bbox(mask):
    return tuple(slice(int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k)))[0]),
                       int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != k)))[-1]) + 1)
                 for k in range(3))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8])
@pytest.mark.parametrize("si_spacing", [0.09, 0.5, 0.625, 1.0, 1.25, 5.0 / 7, 3.3])
def test_fov_faces_equal_whole_map_passes(dtype, si_spacing):
    """Blobs of label values near and on every face and margin; the crop (the labels' bounding box)
    or none; margins of a whole number of rows (5 / 0.625 = 8), just off one, and deeper than the map."""
    shape = (7, 48, 30)
    for trial in range(25):
        labels = np.zeros(shape, dtype)
        for value in range(1, 9):
            lo = [int(RNG.integers(-2, n)) for n in shape]
            size = RNG.integers(1, 5, 3)
            box = tuple(slice(max(a, 0), max(min(a + s, n), 0)) for a, s, n in zip(lo, size, shape))
            labels[box] = value
        labels[0, 0, 0] = 9 if trial % 3 == 0 else labels[0, 0, 0]
        spacing = (3.3, si_spacing, 0.7)
        crop = _bbox(labels > 0) if (labels > 0).any() and trial % 2 else None
        faces = _Faces(labels, crop, spacing)
        for value in range(1, 11):
            assert _cut_by_fov(faces, value) == _old_cut_by_fov(labels, value, spacing), (trial, value)
            old_lr = bool((labels[0] == value).any() or (labels[-1] == value).any())
            assert (value in faces.lr_faces) == old_lr, (trial, value)


# --- the whole stage --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom_case():
    spec = {"stenoses": {"L3-L4": 8.0}, "disc_heights": {"L5-S": (12.0, 7.0)}}
    _, vol, lab, _ = labelled(spacing=(1.5, 0.8, 0.8), **spec)
    return vol, lab


def _as_dicts(levels: dict) -> dict:
    return {k: (m.to_dict(), m.notes, m.section, m.cut_by_fov, m.canal_visualised, m.evidence)
            for k, m in levels.items()}


def test_measurements_equal_for_uint8_and_int16_labels_and_a_mapped_image(phantom_case, tmp_path):
    from dataclasses import replace

    vol, lab = phantom_case
    image = np.clip(vol.array, 0, None)
    image = (image * (250.0 / max(float(image.max()), 1e-6))).astype(np.uint8)
    ref = measure_levels(vol.with_array(image), replace(lab, labels=lab.labels.astype(np.int16)))
    assert ref, "the phantom has measured levels"
    mapped = np.lib.format.open_memmap(tmp_path / "image.npy", mode="w+", dtype=np.uint8, shape=image.shape)
    mapped[...] = image
    mapped.flush()
    del mapped
    read_only = np.load(tmp_path / "image.npy", mmap_mode="r")
    assert not read_only.flags.writeable
    for labels in (lab.labels.astype(np.uint8), lab.labels.astype(np.int16)):
        got = measure_levels(vol.with_array(read_only), replace(lab, labels=labels))
        assert _as_dicts(got) == _as_dicts(ref)


def _padded(vol, lab, pad_px: int, tmp_path):
    """The phantom in a larger field of view (zeros around it), its image a read-only memory-mapped
    uint8 array and its labels uint8, as a full-FOV series would come."""
    from dataclasses import replace

    pad = ((6, 6), (pad_px, pad_px), (pad_px, pad_px))
    image = np.pad(np.clip(vol.array, 0, 255).astype(np.uint8), pad)
    labels = np.pad(lab.labels.astype(np.uint8), pad)
    shift = np.array([p[0] for p in pad], float)
    affine = vol.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ shift
    path = tmp_path / f"image{pad_px}.npy"
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=image.shape)
    mapped[...] = image
    mapped.flush()
    del mapped
    big = type(vol)(np.load(path, mmap_mode="r"), vol.spacing, affine, vol.source, dict(vol.meta))
    crop = tuple(slice(s.start + int(o), s.stop + int(o)) for s, o in zip(lab.crop, shift)) if lab.crop else None
    return big, replace(lab, labels=labels, crop=crop)


def _peak(fn) -> int:
    fn()  # warm caches and lazy imports
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_no_whole_volume_copy_in_measure(phantom_case, tmp_path):
    """measure_levels' peak allocation does not grow with the field of view: no float32 copy of
    the image (it used to make one, 4 bytes per voxel) and no whole-grid temporaries; the same
    levels are measured in the small and the padded volume."""
    vol, lab = phantom_case
    small, small_lab = _padded(vol, lab, 0, tmp_path)
    big, big_lab = _padded(vol, lab, 150, tmp_path)
    assert not big.array.flags.writeable
    peak_small = _peak(lambda: measure_levels(small, small_lab))
    peak_big = _peak(lambda: measure_levels(big, big_lab))
    grown = big.array.nbytes - small.array.nbytes
    assert peak_big - peak_small < 0.02 * grown, (peak_small, peak_big, grown)
    assert peak_big < big.array.nbytes / 4
    assert list(measure_levels(big, big_lab)) == list(measure_levels(small, small_lab))


def test_reformat_points_equal_the_array_expression():
    """Reformat.lps on Python floats gives the array expression's float64 values; other dtypes
    (a float32 frame) keep the array expression."""
    from lvp.measure.reformat import Reformat

    for dtype in (np.float64, np.float32):
        origin, e1, e2 = (RNG.normal(scale=80, size=3).astype(dtype) for _ in range(3))
        plane = Reformat(origin, e1, e2, np.arange(3.0), np.arange(3.0), np.zeros((3, 3)), np.ones((3, 3), bool))
        for x1, x2 in RNG.normal(scale=40, size=(200, 2)):
            for a, b in ((x1, x2), (np.float32(x1), np.float64(x2)), (float(x1), int(x2))):
                expected = [float(v) for v in origin + a * e1 + b * e2]
                assert plane.lps(a, b) == expected


def test_inner_columns_equal_the_erosion():
    """The columns at least a margin inside the slab (a window count) equal the binary erosion
    of the padded column mask, for slabs of every width, steps and margins."""
    from lvp.measure.disc import _inner_columns
    from lvp.measure.reformat import Reformat

    for trial in range(600):
        n = int(RNG.integers(1, 40))
        step = float(RNG.choice([0.25, 0.5, 1.0, 3.0]))
        valid = RNG.random((n, 3)) < (1.0 if trial % 4 == 0 else RNG.random())
        r1 = np.arange(n) * step
        plane = Reformat(np.zeros(3), np.eye(3)[0], np.eye(3)[1], r1, np.arange(3.0), np.zeros((n, 3)), valid)
        margin = float(RNG.choice([0.0, 0.3, 1.0, 2.0, 2.6, 7.0]))
        inside = valid.any(axis=1)
        k = int(np.ceil(margin / plane.step)) if n > 1 else 0
        padded = np.concatenate([np.zeros(k, bool), inside, np.zeros(k, bool)])
        expected = ndimage.binary_erosion(padded, np.ones(2 * k + 1, bool))[k:-k] if k else inside
        if n > 1:
            assert np.array_equal(_inner_columns(plane, margin), expected), (trial, n, margin)
