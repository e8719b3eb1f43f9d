"""The fast paths of issue 13 give what the direct paths give.

* a NIfTI file decompressed once by LVP's header check (:func:`lvp.io.read._read_file`) yields
  the voxels and geometry ITK's own read yields, and files ITK would rescale still go to ITK;
* the restored probability (:class:`lvp.preprocess.GridProbability`), held at the working grid's
  size, reads back as the full-size array, region by region;
* the structure table's canal/sacrum centres (profile sums, crop only) equal ``np.argwhere``'s.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lvp.io.read import ImageGeometry, _read_file, read_volume
from lvp.io.volume import canonical_volume


def _itk_volume(path):
    return canonical_volume(sitk.ReadImage(str(path)))


def _same(a, b) -> None:
    assert a.array.dtype == b.array.dtype
    assert np.array_equal(a.array, b.array, equal_nan=a.array.dtype.kind == "f")
    assert np.array_equal(a.affine, b.affine) and a.source == b.source and a.spacing == b.spacing


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.47, 0.52, 3.3))
    img.SetOrigin((-12.5, 40.0, 7.25))
    # A sagittal series stored with its slices along ITK's z, tilted a little.
    c, s = np.cos(0.1), np.sin(0.1)
    img.SetDirection((0, 0, 1, c, -s, 0, s, c, 0))
    return img


def test_sample_read_once_equals_itk(sample_case):
    image, _ = _read_file(sample_case)
    assert isinstance(image, ImageGeometry)  # the single-decompression path was taken
    _same(canonical_volume(image), _itk_volume(sample_case))


@pytest.mark.parametrize("dtype,suffix", [(np.int16, ".nii"), (np.uint16, ".nii.gz"), (np.float32, ".nii.gz"),
                                          (np.float64, ".nii")])
def test_plain_nifti_read_once_equals_itk(tmp_path, dtype, suffix):
    arr = (np.random.default_rng(0).random((12, 90, 70)) * 3000).astype(dtype)
    if arr.dtype.kind == "f":
        arr[3, 4, 5] = np.nan  # ITK reads it as 0; LVP counts it and reads it as 0 too
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(_image(arr), str(path))
    image, nonfinite = _read_file(path)
    assert isinstance(image, ImageGeometry)
    assert nonfinite == (1 if arr.dtype.kind == "f" else 0)
    vol = read_volume(path, validate=False, require_sagittal=False)
    ref = _itk_volume(path)
    if arr.dtype == np.float64:
        # float64 is held as float32 (the precision every later step computes in): ITK's values rounded.
        ref.array = ref.array.astype(np.float32)
    _same(vol, ref)
    if arr.dtype.kind == "f":
        assert vol.meta["nonfinite_voxels"] == 1


def test_scaled_nifti_is_left_to_itk(tmp_path):
    """A file with scl_slope/scl_inter is read by ITK (it applies the scaling)."""
    arr = np.arange(12 * 90 * 70, dtype=np.int16).reshape(12, 90, 70) % 1000
    plain = tmp_path / "plain.nii"
    sitk.WriteImage(_image(arr), str(plain))
    raw = bytearray(plain.read_bytes())
    struct.pack_into("<2f", raw, 112, 2.0, 5.0)  # NIfTI-1 scl_slope, scl_inter
    scaled = tmp_path / "scaled.nii.gz"
    scaled.write_bytes(gzip.compress(bytes(raw)))
    image, _ = _read_file(scaled)
    assert isinstance(image, sitk.Image)
    vol = read_volume(scaled, validate=False, require_sagittal=False)
    _same(vol, _itk_volume(scaled))
    assert float(vol.array.max()) == pytest.approx(2.0 * 999 + 5.0)


def test_truncated_nifti_still_refused(tmp_path):
    from lvp.errors import InputError

    arr = np.ones((12, 90, 70), np.uint8)
    path = tmp_path / "img.nii"
    sitk.WriteImage(_image(arr), str(path))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(path.read_bytes()[:-500]))
    with pytest.raises(InputError, match="truncated"):
        read_volume(cut, validate=False, require_sagittal=False)


def _grid_case():
    from lvp.preprocess import GridInfo

    info = GridInfo((15, 200, 150), (8, 94, 70), (8, 96, 96), (0, 1, 13))
    g = np.zeros((4, 8, 96, 96), np.float32)
    g[0] = 3
    g[1, 2:6, 30:60, 30:60] = 6
    g[2, 3:5, 40:50, 35:55] = 8
    g += np.random.default_rng(0).normal(size=g.shape).astype(np.float32) * 0.3
    return g, info


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_grid_probability_regions_equal_the_full_array(mode):
    from lvp.preprocess import _nearest_index, crop_padding, restore, softmax

    g, info = _grid_case()
    sem, prob = restore(g, info, mode)
    full = np.asarray(prob)
    assert full.shape == prob.shape == sem.shape and full.dtype == np.float32
    # Far from the structures every voxel holds its nearest grid voxel's probability.
    p_g = softmax(crop_padding(g, info)).max(axis=0)
    near = p_g[np.ix_(*[_nearest_index(s, n) for s, n in zip(info.source_shape, info.grid_shape)])]
    if mode == "nearest":
        assert np.array_equal(full, near)
    else:
        assert np.array_equal(full[:, :30], near[:, :30]) and np.array_equal(full[:, -20:], near[:, -20:])
        assert not np.array_equal(full, near)  # the interpolated box is in there
    rng = np.random.default_rng(1)
    for _ in range(25):
        key = []
        for n in prob.shape:
            a, b = sorted(rng.integers(0, n + 1, 2))
            key.append(slice(int(a), int(b)))
        assert np.array_equal(prob[tuple(key)], full[tuple(key)])
    assert np.array_equal(prob[2:9], full[2:9]) and np.array_equal(prob[:, 50:], full[:, 50:])
    assert prob[sem > 0].shape == (int((sem > 0).sum()),)
    assert prob.nbytes < full.nbytes // 2


def test_structure_centres_equal_argwhere(sample_case):
    from lvp.labelling.types import Labelling
    from lvp.labels import CANAL_LABEL, SACRUM_LABEL
    from lvp.report.build import structure_entries

    vol = read_volume(sample_case)
    labels = np.zeros(vol.shape, np.int16)
    labels[3:9, 100:400, 200:260] = CANAL_LABEL
    labels[5:7, 420:470, 100:180] = SACRUM_LABEL
    labels[4, 410, 90] = SACRUM_LABEL
    crop = (slice(2, 11), slice(90, 480), slice(80, 270))
    got = {e["label"]: e for e in structure_entries(vol, labels, Labelling(labels, crop=crop))}
    for value in (CANAL_LABEL, SACRUM_LABEL):
        idx = np.argwhere(labels == value)
        assert got[value]["center_lps"] == [float(v) for v in vol.index_to_lps(idx.mean(axis=0))]
        assert got[value]["volume_mm3"] == len(idx) * float(np.prod(vol.spacing))


def test_one_label_image_serves_both_writes(tmp_path):
    """to_source_image(dtype=uint8) equals astype + map back; the seg.nrrd of either image is the same file."""
    from seg_nrrd_reader import read_seg_nrrd

    from lvp.io.seg_nrrd import write_seg_nrrd
    from lvp.labels import CANAL_LABEL

    arr = (np.random.default_rng(4).random((12, 90, 70)) * 1000).astype(np.int16)
    path = tmp_path / "img.nii"
    sitk.WriteImage(_image(arr), str(path))  # slices along ITK z, tilted: a permutation and a flip
    vol = read_volume(path, validate=False, require_sagittal=False)
    assert vol.source.perm != (0, 1, 2) or any(vol.source.flip)
    labels = np.zeros(vol.shape, np.int16)
    labels[2:5, 10:40, 20:30] = CANAL_LABEL
    labels[6:9, 50:60, 5:15] = 41
    one = vol.to_source_image(labels, dtype=np.uint8)
    ref = vol.to_source_image(labels.astype(np.uint8))
    assert one.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayViewFromImage(one), sitk.GetArrayViewFromImage(ref))
    write_seg_nrrd(ref, tmp_path / "copy.seg.nrrd")
    sitk.WriteImage(one, str(tmp_path / "first.nii.gz"))  # the pipeline's order: NIfTI, then seg.nrrd
    write_seg_nrrd(one, tmp_path / "inplace.seg.nrrd")
    assert (tmp_path / "copy.seg.nrrd").read_bytes() == (tmp_path / "inplace.seg.nrrd").read_bytes()
    back = sitk.ReadImage(str(tmp_path / "first.nii.gz"))
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(ref))
    assert not back.HasMetaDataKey("Segment0_ID")
    image, segments = read_seg_nrrd(tmp_path / "inplace.seg.nrrd")
    assert sorted(s["label_value"] for s in segments) == sorted([CANAL_LABEL, 41])
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(ref))


def test_grid_argmax_by_slabs_equals_whole_softmax():
    """Restore's slab-wise softmax/argmax gives the whole grid's values, bit for bit."""
    from lvp.preprocess import _argmax, _grid_argmax, softmax

    logits = np.random.default_rng(5).normal(size=(5, 19, 40, 30)).astype(np.float32) * 4
    logits[:, 3] = logits[:, 3].mean(axis=0)  # ties: the first class wins in both
    lab, p = _argmax(softmax(logits))
    for slab in (1, 4, 8, 19, 64):
        lab2, p2 = _grid_argmax(logits, slab)
        assert np.array_equal(lab, lab2) and np.array_equal(p, p2)


def test_big_endian_nifti_read_once_equals_itk(tmp_path):
    """A big-endian NIfTI-1 file (header and voxels swapped) reads as ITK reads it."""
    layout = "i10s18sihcc8h3fhhhh8f3fhccffffii80s24shh6f12f16s4s"  # the 348-byte NIfTI-1 header
    arr = (np.random.default_rng(6).random((12, 90, 70)) * 3000).astype(np.int16)
    little = tmp_path / "le.nii"
    sitk.WriteImage(_image(arr), str(little))
    raw = little.read_bytes()
    offset = int(struct.unpack_from("<f", raw, 108)[0])
    big = struct.pack(">" + layout, *struct.unpack("<" + layout, raw[:348])) + raw[348:offset]
    big += np.frombuffer(raw[offset:], "<i2").astype(">i2").tobytes()
    path = tmp_path / "be.nii.gz"
    path.write_bytes(gzip.compress(big))
    image, _ = _read_file(path)
    assert isinstance(image, ImageGeometry) and image.array.dtype.isnative
    vol = read_volume(path, validate=False, require_sagittal=False)
    _same(vol, _itk_volume(path))
    _same(vol, _itk_volume(little))


def test_reading_a_large_nifti_holds_one_copy(tmp_path):
    """Peak memory of read_volume on a 96 M-voxel file: one copy of the voxels, not two or three.

    Run in a fresh interpreter (``ru_maxrss`` is a high-water mark); the baseline is that
    interpreter after the imports. The old path held ITK's buffer and the canonical copy (2x).
    """
    import subprocess
    import sys

    if not Path("/proc/self/status").is_file():
        pytest.skip("needs Linux /proc for the peak of one address space")
    shape = (32, 1536, 1952)  # (z, y, x): 96 M voxels of uint8, sagittal slices along z
    arr = np.zeros(shape, np.uint8)
    arr[:, 200:1300, 300:1700] = 90
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.2, 0.2, 1.0))
    img.SetDirection((0, 0, 1, 1, 0, 0, 0, -1, 0))  # x -> P, y -> I, z -> L: LVP's canonical order
    path = tmp_path / "large.nii.gz"
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.UseCompressionOn()
    writer.SetCompressionLevel(1)
    writer.Execute(img)
    del arr, img
    # VmHWM (the peak of this address space): ru_maxrss would carry the parent's peak across exec.
    code = (
        "from lvp.io.read import read_volume\n"
        "def hwm():\n"
        "    return int(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1]) * 1024\n"
        "base = hwm()\n"
        f"v = read_volume({str(path)!r})\n"
        "print(v.array.nbytes, hwm() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    nbytes, grew = (int(v) for v in out.stdout.split())
    assert nbytes == int(np.prod(shape))
    print(f"read_volume: {nbytes / 2**20:.0f} MiB of voxels, peak grew {grew / 2**20:.0f} MiB")
    assert grew < 1.3 * nbytes
