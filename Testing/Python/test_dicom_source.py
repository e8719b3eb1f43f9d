"""The DICOM path reads its input once: one folder scan, one header read per file, and the SEG/SR
writer works from what the reader kept (issue 13, DICOM input).

Real files throughout: the bundled sample written as a DICOM series (also with a flipped and
permuted geometry), the real reader, pipeline and highdicom writer; pydicom's own reader is
wrapped only to count its calls.
"""

from __future__ import annotations

import builtins
import logging
import random
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import write_series

from lvp.io import dicom_seg
from lvp.io.dicom_sr import write_dicom_sr
from lvp.io.read import read_volume
from lvp.pipeline import MaskSegmenter, run_inference
from lvp.segmenter import SegmentationResult


@pytest.fixture(scope="module")
def series(sample_case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    write_series(sitk.ReadImage(str(sample_case)), folder)
    return folder


@pytest.fixture(scope="module")
def turned_series(sample_case, tmp_path_factory):
    """The sample stored with its x and z axes reversed and its rows and columns swapped: another
    file order, and a canonical grid reached by other flips and a transposition."""
    image = sitk.ReadImage(str(sample_case))
    turned = sitk.PermuteAxes(sitk.Flip(image, [True, False, True]), [1, 0, 2])
    folder = tmp_path_factory.mktemp("turned")
    write_series(turned, folder)
    return folder


# Semantic classes of the reference mask (1 vertebra, 2 disc, 3 canal) -> LVP output values.
_LVP_VALUES = np.array([0, 2, 31, 82, 100], np.int16)


def _lvp_labels(volume, sample_case) -> np.ndarray:
    """An int16 label map of LVP output values on the volume's canonical grid."""
    semantic = MaskSegmenter(sample_case.with_name("spider_sample_labels.nii.gz")).segment(volume).semantic
    return _LVP_VALUES[semantic]


def _count_reads(monkeypatch) -> list[tuple[str, bool]]:
    """Every pydicom.dcmread call as (file, headers only?); the real reader does the reading."""
    calls: list[tuple[str, bool]] = []
    real = pydicom.dcmread

    def counted(path, *args, **kwargs):
        name = path.name if hasattr(path, "read") else path  # a path, or a file the scan opened
        calls.append((str(name), bool(kwargs.get("stop_before_pixels"))))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counted)  # the DICOM modules call pydicom.dcmread
    return calls


def test_reader_scans_once_and_reads_each_file_once_more_for_its_pixels(series, monkeypatch):
    files = sorted(str(p) for p in series.glob("*.dcm"))
    calls = _count_reads(monkeypatch)
    volume = read_volume(series)
    headers = sorted(p for p, header_only in calls if header_only)
    full = sorted(p for p, header_only in calls if not header_only)
    assert headers == files  # the folder scan: each header once (the size check reuses it)
    assert full == files  # the pixels: each file once
    assert volume.meta["dicom_files"] == files
    assert [h.SOPInstanceUID for h in volume.meta["dicom_headers"]] == \
        [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    assert all("PixelData" not in h for h in volume.meta["dicom_headers"])


def test_reader_opens_each_file_twice(series, monkeypatch):
    """Once for the scan (preamble check and header from the same open), once for the pixels."""
    opened: list[str] = []
    real = builtins.open

    def counted(file, *args, **kwargs):
        if str(file).startswith(str(series)):
            opened.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    read_volume(series)
    files = sorted(str(p) for p in series.glob("*.dcm"))
    assert sorted(opened) == sorted(files * 2)


def test_stack_sorted_in_place_equals_the_named_order(series, tmp_path):
    """Files named in a shuffled order: the in-place sort by position gives the same volume."""
    files = sorted(series.glob("*.dcm"))
    names = [f"X{k:04d}.dcm" for k in range(len(files))]
    random.Random(7).shuffle(names)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for path, name in zip(files, names):
        shutil.copy(path, shuffled / name)
    expected, got = read_volume(series), read_volume(shuffled)
    assert got.array.dtype == np.float32
    np.testing.assert_array_equal(got.array, expected.array)
    np.testing.assert_array_equal(got.affine, expected.affine)
    assert got.source == expected.source


def test_writer_reads_no_source_file(series, sample_case, tmp_path, monkeypatch):
    """The SEG and SR are written from the reader's headers with the series folder gone."""
    copy = tmp_path / "series"
    shutil.copytree(series, copy)
    volume = read_volume(copy)
    labels = _lvp_labels(volume, sample_case)
    shutil.rmtree(copy)
    calls = _count_reads(monkeypatch)
    source = dicom_seg.source_series(volume.meta)
    values = dicom_seg.write_dicom_seg(labels, source, tmp_path / "seg.dcm", geometry=volume.source)
    level = {"level": "L4-L5", "grades": {},
             "measurements": {"disc_height_mm": {"value": 9.5, "unit": "mm", "points_lps": [[0, 0, 0], [0, 0, 9.5]]}}}
    write_dicom_sr({"status": "complete", "levels": [level]}, source, tmp_path / "sr.dcm")
    assert calls == []
    assert values == [int(v) for v in np.unique(labels) if v]
    seg = pydicom.dcmread(tmp_path / "seg.dcm", stop_before_pixels=True)
    assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == len(volume.meta["dicom_files"])


class _RemovingSegmenter(MaskSegmenter):
    """The reference mask as the network's output, deleting the input series once it is read."""

    def __init__(self, mask_path, folder):
        super().__init__(mask_path)
        self.folder = folder

    def segment(self, volume) -> SegmentationResult:
        shutil.rmtree(self.folder)
        return super().segment(volume)


def test_pipeline_writes_seg_and_sr_after_the_input_is_gone(series, sample_case, tmp_path):
    copy = tmp_path / "series"
    shutil.copytree(series, copy)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(copy, tmp_path / "out", segmenter=_RemovingSegmenter(mask, copy), html=False)
    assert not copy.exists()
    assert report["status"] == "complete", report["error"]
    assert (tmp_path / "out" / report["outputs"]["dicom_seg"]).is_file()
    assert (tmp_path / "out" / report["outputs"]["dicom_sr"]).is_file()


@pytest.mark.parametrize("which", ["series", "turned_series"])
def test_frames_from_the_canonical_map_equal_those_of_the_source_grid(which, request, sample_case):
    """One pass from the canonical label map makes the frames the source-grid copy made."""
    volume = read_volume(request.getfixturevalue(which))
    labels = _lvp_labels(volume, sample_case)
    source = dicom_seg.source_series(volume.meta)
    frames, values = dicom_seg.segment_frames(labels, source, volume.source)
    on_source = volume.to_source_array(labels)
    expect_values = [int(v) for v in np.unique(on_source) if v]
    assert values == expect_values == [2, 31, 82]
    numbers = np.zeros(256, np.uint8)
    numbers[values] = np.arange(1, len(values) + 1)
    order = sorted(source.slice_of_frame)
    expected = np.stack([numbers[on_source[source.slice_of_frame[key]]] for key in order])
    np.testing.assert_array_equal(frames, expected)
    assert volume.source.perm != (0, 1, 2) or any(volume.source.flip)  # the mapping is not the identity


def test_labels_outside_the_lvp_values_are_refused(series):
    volume = read_volume(series)
    source = dicom_seg.source_series(volume.meta)
    labels = np.zeros(volume.shape, np.int16)
    labels[0, 0, 0] = 300  # would wrap to 44 (a disc) in uint8
    with pytest.raises(ValueError, match="not LVP output labels"):
        dicom_seg.segment_frames(labels, source, volume.source)
    labels[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\] are not LVP output labels"):
        dicom_seg.segment_frames(labels, source, volume.source)


def test_highdicom_module_log_is_quiet_at_info(series, sample_case, tmp_path, caplog):
    """``lvp infer`` logs at INFO: highdicom's line per copied module stays off its terminal."""
    volume = read_volume(series)
    labels = _lvp_labels(volume, sample_case)
    source = dicom_seg.source_series(volume.meta)
    logger = logging.getLogger("highdicom")
    before = logger.level
    with caplog.at_level(logging.INFO):
        dicom_seg.write_dicom_seg(labels, source, tmp_path / "seg.dcm", geometry=volume.source)
    assert not [r for r in caplog.records if r.name.startswith("highdicom")]
    assert logger.level == before  # restored
    with caplog.at_level(logging.DEBUG):  # lvp -v: kept
        dicom_seg.write_dicom_seg(labels, source, tmp_path / "seg2.dcm", geometry=volume.source)
    assert [r for r in caplog.records if r.name.startswith("highdicom")]
