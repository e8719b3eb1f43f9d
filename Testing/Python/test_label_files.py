"""The streamed label files (issue 13): the same voxels and headers as the SimpleITK writes they
replace, for every axis-aligned storage orientation, obliques, slab boundaries; bounded memory.

The reference is what the pipeline wrote before: ``Volume.to_source_image(labels, np.uint8)``
written by SimpleITK's NIfTI writer and, with the seg.nrrd fields as metadata, by its NRRD writer.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from orientations import axis_orientations
from seg_nrrd_reader import read_seg_nrrd

from lvp.io.label_files import itk_geometry, nifti1_header, source_slabs, write_label_files
from lvp.io.read import read_volume
from lvp.io.seg_nrrd import seg_nrrd_fields, segments_of_canonical
from lvp.io.volume import canonical_volume
from lvp.labels import CANAL_LABEL

NIFTI1 = struct.Struct("<i10s18sihcc8h3fhhhh8f3fhccffffii80s24shh6f12f16s4s")
VALUES = (CANAL_LABEL, 41, 42, 45, 50, 92, 95, 100)

ORIENTATIONS = axis_orientations()


def _volume(cols: np.ndarray, shape=(9, 11, 13), spacing=(0.47, 0.52, 3.3), origin=(-12.5, 40.0, 7.25)):
    """A volume read from an image whose axes point along ``cols`` (LPS columns), and its labels."""
    img = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(np.asarray(cols, float).ravel()))
    vol = canonical_volume(img)
    rng = np.random.default_rng(int(abs(cols).argmax(axis=0) @ [1, 3, 9]))
    labels = np.zeros(vol.shape, np.int16)
    for v in VALUES:
        lo = [int(rng.integers(0, n - 2)) for n in vol.shape]
        box = tuple(slice(a, a + int(rng.integers(1, 4))) for a in lo)
        labels[box] = v
    labels[0, 0, 0] = 41  # a voxel in every corner region: extents reach the grid's edges
    labels[-1, -1, -1] = CANAL_LABEL
    return vol, labels


def _itk_writes(vol, labels, folder: Path) -> tuple[Path, Path]:
    """The previous pipeline's two files, written by SimpleITK."""
    img = vol.to_source_image(labels, dtype=np.uint8)
    sitk.WriteImage(img, str(folder / "ref.nii.gz"), True, 1)
    segs = segments_of_canonical(labels, vol.source)
    for key, value in seg_nrrd_fields(img, segs).items():
        img.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(folder / "ref.seg.nrrd"))
    writer.SetImageIO("NrrdImageIO")
    writer.UseCompressionOn()
    writer.Execute(img)
    return folder / "ref.nii.gz", folder / "ref.seg.nrrd"


def _nrrd_parts(path: Path) -> tuple[bytes, bytes]:
    data = path.read_bytes()
    end = data.index(b"\n\n") + 2
    return data[:end], gzip.decompress(data[end:])


def _same_header_values(ours: bytes, ref: bytes, rel: float = 0.0) -> None:
    """Every NIfTI-1 header field equal (floats as values: -0.0 == 0.0; ``rel``: float32 rounding)."""
    for i, (a, b) in enumerate(zip(NIFTI1.unpack(ours[:348]), NIFTI1.unpack(ref[:348]))):
        if isinstance(a, float):
            assert a == pytest.approx(b, rel=rel, abs=rel), f"field {i}: {a} != {b}"
        else:
            assert a == b, f"field {i}: {a!r} != {b!r}"
    assert ours[348:352] == ref[348:352]


@pytest.mark.parametrize("cols", ORIENTATIONS, ids=[f"o{i}" for i in range(len(ORIENTATIONS))])
def test_streamed_files_equal_the_simpleitk_writes(tmp_path, cols):
    vol, labels = _volume(cols)
    ref_nii, ref_nrrd = _itk_writes(vol, labels, tmp_path)
    segments = write_label_files(labels, vol.source, tmp_path / "s.nii.gz", tmp_path / "s.seg.nrrd")
    ours, ref = gzip.open(tmp_path / "s.nii.gz").read(), gzip.open(ref_nii).read()
    assert ours[352:] == ref[352:]  # the voxels, byte for byte
    _same_header_values(ours, ref)
    a, b = sitk.ReadImage(str(tmp_path / "s.nii.gz")), sitk.ReadImage(str(ref_nii))
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert (a.GetSize(), a.GetSpacing(), a.GetOrigin(), a.GetDirection(), a.GetPixelID()) == \
           (b.GetSize(), b.GetSpacing(), b.GetOrigin(), b.GetDirection(), b.GetPixelID())
    # seg.nrrd: the header text ITK wrote, byte for byte, and the same voxels.
    (head, data), (ref_head, ref_data) = _nrrd_parts(tmp_path / "s.seg.nrrd"), _nrrd_parts(ref_nrrd)
    assert head == ref_head
    assert data == ref_data == ours[352:]
    image, read_segments = read_seg_nrrd(tmp_path / "s.seg.nrrd")
    assert [s["label_value"] for s in read_segments] == sorted(VALUES)
    assert [tuple(s["extent"]) for s in read_segments] == [tuple(s["extent"]) for s in segments]
    # The extents are those of the source-grid array (ITK x, y, z order, inclusive).
    src = vol.to_source_array(labels)
    for seg in segments:
        z, y, x = np.nonzero(src == seg["label_value"])
        assert seg["extent"] == (x.min(), x.max(), y.min(), y.max(), z.min(), z.max())


def test_oblique_headers_equal_itk_to_float32_rounding(tmp_path):
    rng = np.random.default_rng(7)
    for k in range(20):
        # An axis-aligned orientation turned by up to ~25 degrees about a random axis.
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        angle = rng.uniform(-0.45, 0.45)
        turn = np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
        q = turn @ ORIENTATIONS[k % len(ORIENTATIONS)]
        spacing = tuple(float(s) for s in rng.uniform(0.2, 4.0, 3))
        vol, labels = _volume(q, spacing=spacing, origin=tuple(float(o) for o in rng.normal(0, 100, 3)))
        img = vol.to_source_image(labels, dtype=np.uint8)
        sitk.WriteImage(img, str(tmp_path / "ref.nii"))
        _same_header_values(nifti1_header(itk_geometry(vol.source)), (tmp_path / "ref.nii").read_bytes()[:352],
                            rel=1e-6)
        write_label_files(labels, vol.source, tmp_path / "s.nii.gz", None)
        back = sitk.ReadImage(str(tmp_path / "s.nii.gz"))
        np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), rtol=1e-6)
        assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))


@pytest.mark.parametrize("slab_bytes", [1, 150, 10_000, 1 << 30])
def test_slabs_together_are_the_source_array(slab_bytes):
    vol, labels = _volume(ORIENTATIONS[9], shape=(7, 12, 10))
    slabs = [s.copy() for s in source_slabs(labels, vol.source, slab_bytes)]
    assert np.array_equal(np.concatenate(slabs), vol.to_source_array(labels, dtype=np.uint8))
    assert len(slabs) == (7 if slab_bytes <= 150 else 1)


def test_each_file_is_one_gzip_member_and_the_voxel_blocks_are_shared(tmp_path):
    vol, labels = _volume(ORIENTATIONS[0])
    write_label_files(labels, vol.source, tmp_path / "s.nii.gz", tmp_path / "s.seg.nrrd")
    nii = (tmp_path / "s.nii.gz").read_bytes()
    nrrd = (tmp_path / "s.seg.nrrd").read_bytes()
    nrrd = nrrd[nrrd.index(b"\n\n") + 2:]
    for member in (nii, nrrd):
        d = zlib.decompressobj(31)
        d.decompress(member)
        assert d.eof and d.unused_data == b""  # one member, nothing after it; its CRC and size checked
    # The NRRD's deflate blocks (after its 10-byte gzip header, before the 8-byte trailer) are
    # the tail of the NIfTI's.
    assert nii[:-8].endswith(nrrd[10:-8])


def test_values_outside_uint8_or_not_lvp_labels_are_refused_before_writing(tmp_path):
    vol, labels = _volume(ORIENTATIONS[0])
    for bad, message in ((300, "0..255"), (-1, "0..255"), (7, "not LVP output labels")):
        wrong = labels.copy()
        wrong[1, 1, 1] = bad
        with pytest.raises(ValueError, match=message):
            write_label_files(wrong, vol.source, tmp_path / "s.nii.gz", tmp_path / "s.seg.nrrd")
        assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="integers"):
        write_label_files(labels.astype(float), vol.source, tmp_path / "s.nii.gz", None)


def _write_peak(tmp_path: Path, shape: tuple[int, int, int]) -> tuple[int, int]:
    """Peak Python-heap bytes (numpy arrays and zlib's state included) of one write, and one copy's size."""
    vol, _ = _volume(ORIENTATIONS[5], shape=shape)
    labels = np.zeros(vol.shape, np.int16)
    n0, n1, n2 = shape
    labels[n0 // 8: n0 * 3 // 4, n1 // 10: n1 * 3 // 4, n2 // 5: n2 * 3 // 4] = 41
    tracemalloc.start()
    try:
        write_label_files(labels, vol.source, tmp_path / "s.nii.gz", tmp_path / "s.seg.nrrd", slab_bytes=50_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(sitk.GetArrayViewFromImage(sitk.ReadImage(str(tmp_path / "s.nii.gz"))),
                          vol.to_source_array(labels, dtype=np.uint8))
    return peak, labels.size


def test_the_write_holds_a_slab_not_a_source_grid_copy(tmp_path):
    """Memory of the write does not grow with the grid: no full-size array is allocated.

    What it holds is a slab (here <= 50 kB) and the deflate state of zlib (~0.6 MB, fixed).
    """
    small, _ = _write_peak(tmp_path, (40, 200, 160))
    big, full = _write_peak(tmp_path, (80, 400, 160))  # one uint8 copy: 5.1 MB
    assert big < full // 4, big
    assert big < small + 64_000, (small, big)


def test_sample_labels_written_as_the_pipeline_wrote_them(tmp_path, sample_case):
    """The bundled sample's reference labels on its own (SPIDER-stored) grid: byte-identical headers."""
    vol = read_volume(sample_case.with_name("spider_sample_labels.nii.gz"), validate=False)
    lut = np.zeros(256, np.int16)
    lut[1], lut[2], lut[3] = 41, 92, CANAL_LABEL
    labels = lut[np.asarray(vol.array)]
    ref_nii, ref_nrrd = _itk_writes(vol, labels, tmp_path)
    write_label_files(labels, vol.source, tmp_path / "s.nii.gz", tmp_path / "s.seg.nrrd")
    assert gzip.open(tmp_path / "s.nii.gz").read() == gzip.open(ref_nii).read()
    assert _nrrd_parts(tmp_path / "s.seg.nrrd") == _nrrd_parts(ref_nrrd)


def test_failed_labelling_streams_the_network_classes(sample_case, tmp_path, monkeypatch):
    """Without a labelling the classes go to semantic.nii.gz (values 1..3 are no LVP labels: no seg.nrrd)."""
    import lvp.pipeline as pipeline
    from lvp.pipeline import MaskSegmenter, run_inference

    def broken(*args, **kwargs):  # fault injection: a real labelling failure cannot be provoked on demand
        raise ValueError("labelling exploded")

    monkeypatch.setattr(pipeline, "_label", broken)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask))
    assert report["status"] == "partial" and report["failed_stage"] == "labelling"
    assert report["outputs"]["semantic"] == "semantic.nii.gz" and report["outputs"]["segmentation"] is None
    assert not (tmp_path / "out" / "segmentation.seg.nrrd").exists()
    written, ref = sitk.ReadImage(str(tmp_path / "out" / "semantic.nii.gz")), sitk.ReadImage(str(mask))
    assert written.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(ref))
    assert np.allclose(written.GetDirection(), ref.GetDirection()) and np.allclose(written.GetOrigin(), ref.GetOrigin())


def test_a_nifti_alone_takes_any_uint8_values(tmp_path):
    vol, labels = _volume(ORIENTATIONS[3])
    labels[2, 2, 2] = 7  # not an LVP label: fine without a seg.nrrd
    assert write_label_files(labels, vol.source, tmp_path / "s.nii.gz", None) == []
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s.nii.gz")))
    assert np.array_equal(back, vol.to_source_array(labels, dtype=np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        write_label_files(labels - 1, vol.source, tmp_path / "t.nii.gz", None)


@pytest.mark.parametrize("k", [0, 7, 13, 22])
def test_slicer_reads_the_streamed_seg_nrrd_of_a_reoriented_volume(tmp_path, k):
    """Slicer's own storage node and export logic (slicer-core) give back the source grid and voxels."""
    pytest.importorskip("slicer")
    from test_seg_nrrd_reference_geometry import _export, _ijk_to_ras

    vol, labels = _volume(ORIENTATIONS[k], shape=(12, 30, 20))
    write_label_files(labels, vol.source, tmp_path / "s.nii.gz", tmp_path / "s.seg.nrrd")
    dims, arr, ijk_to_ras, names, _ = _export(tmp_path / "s.seg.nrrd", "EXTENT_REFERENCE_GEOMETRY")
    ref = vol.to_source_image(labels, dtype=np.uint8)
    assert dims == ref.GetSize()
    np.testing.assert_allclose(ijk_to_ras, _ijk_to_ras(ref), atol=1e-6)
    src = sitk.GetArrayFromImage(ref)
    expected = np.zeros_like(src)
    for number, value in enumerate(sorted(VALUES), start=1):  # Slicer numbers segments 1..N in order
        expected[src == value] = number
    np.testing.assert_array_equal(arr, expected)
    assert len(names) == len(VALUES)


@pytest.mark.parametrize("k", range(0, 24, 5))
def test_boxes_searched_in_the_labelled_rows_equal_the_whole_search(k, monkeypatch):
    """Large grids search bounding boxes only in the slices and rows that hold labels: same extents."""
    import lvp.io.seg_nrrd as seg_nrrd

    vol, labels = _volume(ORIENTATIONS[k], shape=(14, 16, 18))
    labels[[0, -1]] = 0  # the labelled rows start and end inside the grid
    labels[:, :2] = 0
    labels[5, 3, 7] = 41
    whole = segments_of_canonical(labels, vol.source)
    monkeypatch.setattr(seg_nrrd, "_BOX_FIRST_VOXELS", 0)
    assert segments_of_canonical(labels, vol.source) == whole
    src = vol.to_source_array(labels)
    for seg in whole:
        z, y, x = np.nonzero(src == seg["label_value"])
        assert seg["extent"] == (x.min(), x.max(), y.min(), y.max(), z.min(), z.max())
    assert segments_of_canonical(np.zeros_like(labels), vol.source) == []
