"""The labelling's speed and memory mechanisms (issue 13): each fast path equals the straightforward
computation it replaced, on random and adversarial inputs, and the label map is uint8 and sized
by the spine's region rather than the input's voxel count. (Timings live in benchmarks/.)
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from phantom_helpers import read
from scipy import ndimage

from lvp.io.volume import Volume
from lvp.labelling import grid as grid_mod
from lvp.labelling import label_levels
from lvp.labelling.canal_axis import _near_line, _off_axis_mm
from lvp.labelling.discs import _disc_instances
from lvp.labelling.from_labels import labelling_from_labels
from lvp.labelling.grid import (
    _components,
    _components_in_box,
    _one_blas_thread,
    _pool_any,
    _pool_bits,
    _unpool,
    _write_class,
)
from lvp.labelling.vertebrae import _below_disc, _index_sums
from lvp.planes import DiscPlane, in_plane_axes
from lvp.validation.phantom import make_phantom

FACTORS = [(1, 2, 2), (2, 2, 2), (1, 1, 2), (2, 1, 1), (1, 2, 1), (3, 1, 2), (1, 1, 1)]


def _unpool_reference(arr, f, shape):
    """Nearest-neighbour upsampling as the labelling did it before (one 6-D broadcast)."""
    a, b, c = arr.shape
    big = np.broadcast_to(arr[:, None, :, None, :, None], (a, f[0], b, f[1], c, f[2]))
    return big.reshape(a * f[0], b * f[1], c * f[2])[: shape[0], : shape[1], : shape[2]]


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16, np.int32])
def test_unpool_equals_the_broadcast_upsampling(dtype):
    rng = np.random.default_rng(13)
    for f in FACTORS:
        for _ in range(15):
            arr = rng.integers(0, 200, tuple(rng.integers(1, 9, 3))).astype(dtype)
            if rng.random() < 0.4:  # a strided view, as a box of a larger map is
                arr = arr[:, ::2]
            shape = tuple(int(n * k - rng.integers(0, k)) for n, k in zip(arr.shape, f))  # cut at the far edge
            got, want = _unpool(arr, f, shape), _unpool_reference(arr, f, shape)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want), (dtype, f, arr.shape)


def _pool_reference(arr, f):
    """OR-pooling by padding to whole cells and reducing a reshaped 6-D view (no strided parts)."""
    padded_shape = tuple(-(-n // k) * k for n, k in zip(arr.shape, f))
    padded = np.zeros(padded_shape, arr.dtype)
    padded[: arr.shape[0], : arr.shape[1], : arr.shape[2]] = arr
    a, b, c = (n // k for n, k in zip(padded_shape, f))
    return np.bitwise_or.reduce(padded.reshape(a, f[0], b, f[1], c, f[2]), axis=(1, 3, 5))


@pytest.mark.parametrize("dtype", [bool, np.uint8])
def test_pool_any_equals_pooling_whole_padded_cells(dtype):
    rng = np.random.default_rng(21)
    for f in FACTORS:
        for _ in range(10):
            arr = rng.integers(0, 2 if dtype is bool else 32, tuple(rng.integers(1, 12, 3))).astype(dtype)
            if rng.random() < 0.4:  # a strided view
                arr = arr[:, ::2]
            got, want = _pool_any(arr, f), _pool_reference(arr, f)
            assert got.dtype == want.dtype and np.array_equal(got, want), (dtype, f, arr.shape)


def test_pooled_class_bits_equal_pooling_the_shifted_classes():
    rng = np.random.default_rng(1)
    for f in FACTORS:
        sem = rng.integers(0, 5, tuple(rng.integers(1, 12, 3))).astype(np.uint8)
        want = _pool_any(np.left_shift(np.uint8(1), sem, dtype=np.uint8), f)
        assert np.array_equal(_pool_bits(sem, f), want)
        assert np.array_equal(_pool_bits(sem[::2, 1:], f), _pool_any(np.left_shift(np.uint8(1), sem[::2, 1:],
                                                                                   dtype=np.uint8), f))


def test_components_on_the_box_have_the_ids_of_the_whole_grid():
    rng = np.random.default_rng(2)
    for _ in range(20):
        mask = np.zeros((20, 40, 30), bool)
        for _ in range(int(rng.integers(1, 7))):  # blobs anywhere, touching the edges too
            lo = rng.integers(0, [18, 36, 27])
            mask[tuple(slice(int(a), int(a + rng.integers(1, 6))) for a in lo)] = True
        mask &= rng.random(mask.shape) < 0.8  # ragged, so blobs split and merge
        whole, n_whole = _components(mask)
        comp, n, box = _components_in_box(mask)
        assert n == n_whole
        assert np.array_equal(whole[box], comp) and not whole[~np.pad(np.ones(comp.shape, bool), [
            (b.start, s - b.stop) for b, s in zip(box, mask.shape)])].any()
    empty, n, box = _components_in_box(np.zeros((4, 5, 6), bool))
    assert n == 0 and box is None and empty.size == 0


def test_bone_near_the_line_equals_the_offsets_of_every_point():
    rng = np.random.default_rng(3)
    shape = (15, 60, 40)
    mask = rng.random(shape) < 0.3
    rows = np.arange(shape[1])
    axis = (7 + 3 * np.sin(rows / 9.0), 20 + 8 * np.cos(rows / 13.0), (10, 45))
    sp = np.array([3.3, 0.94, 0.94])
    near, lr, ap = _near_line(mask, axis, sp, 12.0, 9.0, 7.0, 10.0)
    idx = np.nonzero(mask)
    d_lr, d_ap, d_si = _off_axis_mm(np.stack(idx, axis=1).astype(float), axis, sp)
    ok = (np.abs(d_lr) <= 12.0) & (d_ap >= -9.0) & (d_ap <= 7.0) & (d_si <= 10.0)
    want = np.zeros(shape, bool)
    want[tuple(x[ok] for x in idx)] = True
    assert np.array_equal(near, want)
    kept = np.nonzero(near)
    # The offsets read from the grids are the points' own, to the bit.
    assert np.array_equal(lr[kept[0], kept[1]], d_lr[ok]) and np.array_equal(ap[kept[1], kept[2]], d_ap[ok])


def test_writing_a_class_in_chunks_equals_a_masked_assignment(monkeypatch):
    monkeypatch.setattr(grid_mod, "_CHUNK_VOXELS", 50)  # several slices per chunk, and a ragged last chunk
    rng = np.random.default_rng(4)
    sem = rng.integers(0, 4, (13, 9, 8)).astype(np.uint8)
    labels = rng.integers(0, 3, (20, 9, 12)).astype(np.uint8)
    want = labels.copy()
    crop = (slice(3, 16), slice(None), slice(2, 10))
    want[crop][sem == 3] = 2
    _write_class(labels[crop], sem, 3, 2)
    assert np.array_equal(labels, want)


def test_disc_sizes_and_boxes_are_those_of_the_final_map():
    rng = np.random.default_rng(5)
    for _ in range(10):
        mask = np.zeros((8, 120, 30), bool)
        for k in range(int(rng.integers(3, 8))):  # discs along SI, fragments beside them
            r = 5 + 15 * k
            mask[2:6, r:r + int(rng.integers(2, 5)), 5:25] = True
            if rng.random() < 0.6:
                mask[int(rng.integers(0, 8)), r + int(rng.integers(-3, 6)), int(rng.integers(0, 30))] = True
        out = _disc_instances(mask, np.array([3.0, 2.0, 2.0]), None)
        assert out.box is not None
        full = np.zeros(mask.shape, np.int32)
        full[out.box] = out.comp
        assert np.array_equal(out.sizes[1:], np.bincount(full.ravel(), minlength=out.sizes.size)[1:])
        assert out.objects == ndimage.find_objects(full)


def test_index_sums_equal_weighted_bincounts():
    rng = np.random.default_rng(6)
    for n_pts in (0, 1, 500, 20000):
        n_ids = int(rng.integers(0, 40))
        ids = rng.integers(0, n_ids + 1, n_pts).astype(np.intp)
        idx = tuple(rng.integers(lo, lo + w, n_pts) for lo, w in ((0, 30), (100, 600), (7, 300)))
        flag = rng.random(n_pts) < 0.3
        sums, flagged, count, _ = _index_sums(ids, idx, n_ids, flag)
        want = np.stack([np.bincount(ids, weights=x, minlength=n_ids + 1) for x in idx], 1)
        want_f = np.stack([np.bincount(ids[flag], weights=x[flag], minlength=n_ids + 1) for x in idx], 1)
        assert np.array_equal(sums, want) and np.array_equal(flagged, want_f)
        assert np.array_equal(count, np.bincount(ids[flag], minlength=n_ids + 1))
        assert _index_sums(ids, idx, n_ids, None)[1] is None
        boxes = _index_sums(ids, idx, n_ids, flag).boxes
        for i in range(n_ids + 1):  # each id's points' box, as find_objects would give it on a map
            at = ids == i
            want_box = tuple(slice(int(x[at].min()), int(x[at].max()) + 1) for x in idx) if at.any() else None
            assert boxes[i] == want_box


def test_distance_below_a_bent_disc_equals_the_formula_on_every_row():
    """Computing the outer distance only for points beyond the disc's extent gives, to the bit,
    what computing it for every point and choosing did."""
    rng = np.random.default_rng(7)
    inferior = np.array([0.0, 0.0, -1.0])
    for _ in range(10):
        normal = inferior + rng.normal(0, 0.3, 3)
        normal /= np.linalg.norm(normal)
        u, v = in_plane_axes(normal)
        plane = DiscPlane(rng.normal(0, 20, 3), normal, u, v, 40.0, float(rng.uniform(20, 50)), 8.0)
        pts = rng.normal(0, 40, (5000, 3)).astype(np.float32)
        w = pts - plane.center_lps.astype(np.float32)
        v32 = plane.axis_v_lps.astype(np.float32)
        vc = w @ v32
        half = np.float32(plane.extent_v_mm / 2)
        vcl = np.clip(vc, -half, half)
        want = np.where(vc == vcl, w @ plane.normal_lps.astype(np.float32),
                        (w - vcl[:, None] * v32) @ inferior.astype(np.float32))
        assert np.array_equal(_below_disc(pts, plane, inferior), want)


def test_label_map_is_uint8_and_holds_only_the_crop():
    ph = make_phantom(spacing=(1.5, 1.0, 1.0))
    vol, sem, lev = read(ph)
    lab = label_levels(sem, vol, sacrum_class=False)
    assert lab.labels.dtype == np.uint8 and lab.labels.shape == sem.shape
    outside = np.ones(sem.shape, bool)
    outside[lab.crop] = False
    assert not lab.labels[outside].any()
    edited = labelling_from_labels(lab.labels.astype(np.int16), vol)  # a reader's map, read as int16
    assert edited.labels.dtype == np.uint8 and np.array_equal(edited.labels, lab.labels)


def _peak_beyond_the_map(sem: np.ndarray, vol: Volume) -> tuple[int, object]:
    tracemalloc.start()
    try:
        lab = label_levels(sem, vol, sacrum_class=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - lab.labels.nbytes, lab


def test_memory_grows_with_the_spine_not_with_the_input():
    """The same spine in a field of view 27 times larger (zero padding): the labelling allocates the
    output map for the whole grid (1 byte a voxel) and nothing else that grows with it (a full-size
    mask, 1 byte a voxel, would add 39 MB here)."""
    ph = make_phantom(spacing=(1.5, 1.0, 1.0))
    vol, sem, _ = read(ph)
    pad = [(int(n), int(n)) for n in sem.shape]  # three times each side's length
    big_sem = np.pad(sem, pad)
    origin = vol.index_to_lps(-np.array([p[0] for p in pad], float))
    affine = vol.affine.copy()
    affine[:3, 3] = origin
    big = Volume(np.pad(vol.array, pad), vol.spacing, affine, vol.source, dict(vol.meta))
    small_extra, small = _peak_beyond_the_map(sem, vol)
    big_extra, large = _peak_beyond_the_map(big_sem, big)
    assert big_sem.size == 27 * sem.size
    # Same result, in place.
    assert [d.name for d in large.discs] == [d.name for d in small.discs]
    assert np.array_equal(large.labels[tuple(slice(p[0], p[0] + n) for p, n in zip(pad, sem.shape))], small.labels)
    # Beyond the map, the working memory is that of the crop (2 MB for allocator noise).
    assert big_extra <= small_extra + 2 * 2**20, (small_extra, big_extra, big_sem.nbytes)


def test_blas_runs_on_one_thread_during_labelling_and_is_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not before:
        pytest.skip("no BLAS library that threadpoolctl knows")
    with _one_blas_thread():
        inside = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert inside == [1] * len(before) and after == before
