"""Compressed DICOM (JPEG Lossless, JPEG-LS) and enhanced multi-frame MR are read, with the checks kept.

Real files written at test time from the bundled sample: JPEG-LS encoded by pydicom with pyjpegls,
JPEG Lossless (process 14, SV1) encoded by GDCM, an enhanced MR built by highdicom's legacy
converter. The reader decodes them with the project's own dependencies (pylibjpeg + libjpeg).
"""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import seg_label_values, write_series
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, generate_uid

from lvp.errors import InputError
from lvp.io import dicom
from lvp.io.read import read_volume


@pytest.fixture(scope="module")
def plain_series(sample_case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    write_series(sitk.ReadImage(str(sample_case)), folder)
    return folder


def _files(folder):
    return sorted(folder.glob("*.dcm"))


def _assert_same_volume(a, b):
    assert a.shape == b.shape
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    np.testing.assert_array_equal(a.array, b.array)


def _assert_compressed_copy_reads_the_same(plain_series, out, syntax, plugin) -> None:
    """Compress every file of ``plain_series`` to ``syntax`` (encoder ``plugin``) into ``out``; read both."""
    out.mkdir()
    for path in _files(plain_series):
        ds = pydicom.dcmread(path)
        ds.compress(syntax, encoding_plugin=plugin)
        ds.save_as(out / path.name)
    assert pydicom.dcmread(_files(out)[0]).file_meta.TransferSyntaxUID == syntax
    _assert_same_volume(read_volume(out), read_volume(plain_series))


def test_project_decoder_reads_jpeg_lossless_and_jpeg_ls():
    """pylibjpeg (a project dependency) is the decoder, not only an optional test-time plugin."""
    from pydicom.pixels import get_decoder

    for ts in (JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless):
        assert "pylibjpeg" in get_decoder(ts).available_plugins, ts.name


def test_jpeg_ls_series_reads_like_the_uncompressed_one(plain_series, tmp_path):
    import jpeg_ls  # noqa: F401 - pyjpegls, the encoder pydicom uses (a test dependency)

    _assert_compressed_copy_reads_the_same(plain_series, tmp_path / "jls", JPEGLSLossless, "pyjpegls")


def test_jpeg_2000_series_reads_like_the_uncompressed_one(plain_series, tmp_path):
    """JPEG 2000 (lossless), common in PACS archives: encoded and decoded by pylibjpeg-openjpeg."""
    _assert_compressed_copy_reads_the_same(plain_series, tmp_path / "j2k", JPEG2000Lossless, "pylibjpeg")


def _jpeg_lossless_copy(src, dst) -> None:
    """``src`` re-encoded as JPEG Lossless SV1 by GDCM, the rest of the header kept by pydicom."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    encoded = pydicom.dcmread(dst)
    ds = pydicom.dcmread(src)
    ds.PixelData = encoded.PixelData
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.save_as(dst)


def test_jpeg_lossless_series_reads_like_the_uncompressed_one(plain_series, tmp_path):
    out = tmp_path / "jll"
    out.mkdir()
    for path in _files(plain_series):
        _jpeg_lossless_copy(path, out / path.name)
    assert pydicom.dcmread(_files(out)[0]).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    _assert_same_volume(read_volume(out), read_volume(plain_series))


@pytest.mark.parametrize(("syntax", "plugin"), [(JPEGLSLossless, "pyjpegls"), (JPEG2000Lossless, "pylibjpeg")])
def test_damaged_compressed_data_is_still_corrupt(plain_series, tmp_path, syntax, plugin):
    """A codestream cut in half: some decoders return an image for it; the reader must not."""
    out = tmp_path / "bad"
    out.mkdir()
    for i, path in enumerate(_files(plain_series)):
        ds = pydicom.dcmread(path)
        ds.compress(syntax, encoding_plugin=plugin)
        if i == 4:  # cut the codestream in half: a truncated transfer
            frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
            ds.PixelData = encapsulate([frame[: len(frame) // 2]])
        ds.save_as(out / path.name)
    with pytest.raises(InputError, match="IM0004.dcm is corrupt or truncated"):
        read_volume(out)


def test_unsupported_transfer_syntax_is_named(plain_series, tmp_path):
    out = tmp_path / "mpeg"
    out.mkdir()
    for path in _files(plain_series):
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.save_as(out / path.name)
    with pytest.raises(InputError) as err:
        read_volume(out)
    text = str(err.value)
    assert "MPEG2" in text and str(MPEG2MPML) in text and "corrupt" not in text
    assert "Explicit VR Little Endian" in text


def _enhanced(sources, path, *, series_uid=None) -> None:
    import highdicom as hd

    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=sources, series_instance_uid=series_uid or generate_uid(), series_number=5,
        sop_instance_uid=generate_uid(), instance_number=1)
    mf.save_as(path)


def test_enhanced_multiframe_mr_reads_like_the_classic_series(plain_series, tmp_path):
    sources = [pydicom.dcmread(p) for p in _files(plain_series)]
    random.Random(3).shuffle(sources)  # frame order in the file is not the stack order
    (tmp_path / "mf").mkdir()
    _enhanced(sources, tmp_path / "mf" / "enhanced.dcm")
    ds = pydicom.dcmread(tmp_path / "mf" / "enhanced.dcm", stop_before_pixels=True)
    assert int(ds.NumberOfFrames) == len(sources) and "PerFrameFunctionalGroupsSequence" in ds
    (info,) = dicom.scan_folder(tmp_path / "mf")
    assert info.plane == "sagittal" and info.frames == len(sources)
    enhanced = read_volume(tmp_path / "mf")
    _assert_same_volume(enhanced, read_volume(plain_series))
    assert enhanced.meta["study"]["StudyInstanceUID"] == sources[0].StudyInstanceUID


def test_enhanced_mr_with_two_stacks_is_refused(plain_series, tmp_path):
    sources = [pydicom.dcmread(p) for p in _files(plain_series)]
    repeat = []
    for ds in sources[:3]:  # three frames repeated at the same positions (a second acquisition)
        copy = pydicom.dcmread(ds.filename)
        copy.SOPInstanceUID = generate_uid()
        copy.AcquisitionNumber = 2
        repeat.append(copy)
    (tmp_path / "mf").mkdir()
    _enhanced(sources + repeat, tmp_path / "mf" / "enhanced.dcm")
    with pytest.raises(InputError, match="several frames at the same position"):
        read_volume(tmp_path / "mf")


def test_enhanced_mr_with_a_missing_frame_is_refused(plain_series, tmp_path):
    sources = [pydicom.dcmread(p) for p in _files(plain_series)]
    del sources[6]
    (tmp_path / "mf").mkdir()
    _enhanced(sources, tmp_path / "mf" / "enhanced.dcm")
    with pytest.raises(InputError, match="missing frames"):
        read_volume(tmp_path / "mf")


def test_classic_and_enhanced_readers_find_the_same_gap(plain_series, tmp_path):
    # One stack check (lvp.io.slice_stack) behind both readers: the same missing slice is the same
    # gap against the same slice step, whether the slices are files or frames.
    import re
    import shutil

    files = _files(plain_series)
    (tmp_path / "classic").mkdir()
    for p in files[:6] + files[7:]:
        shutil.copy(p, tmp_path / "classic" / p.name)
    (tmp_path / "mf").mkdir()
    _enhanced([pydicom.dcmread(p) for p in files[:6] + files[7:]], tmp_path / "mf" / "enhanced.dcm")
    found = []
    for folder, what in (("classic", "missing slices"), ("mf", "missing frames")):
        with pytest.raises(InputError, match=what) as err:
            read_volume(tmp_path / folder)
        found.append(re.search(r"a gap of ([\d.]+) mm.* step is ([\d.]+) mm", str(err.value)).groups())
    assert found[0] == found[1]
    gap, step = map(float, found[0])
    assert gap == pytest.approx(2 * step, rel=0.01)


def test_enhanced_mr_is_chosen_among_several_series(plain_series, tmp_path):
    """A one-file enhanced series counts its frames, so it is a candidate like a classic series."""
    sources = [pydicom.dcmread(p) for p in _files(plain_series)]
    folder = tmp_path / "study"
    folder.mkdir()
    _enhanced(sources, folder / "enhanced.dcm")
    loc = pydicom.dcmread(_files(plain_series)[0])  # a one-slice localiser beside it
    loc.SeriesInstanceUID = generate_uid()
    loc.SOPInstanceUID = generate_uid()
    loc.SeriesDescription = "LOCALIZER"
    loc.save_as(folder / "loc.dcm")
    assert read_volume(folder).meta["frames"] == len(sources)


def test_enhanced_mr_gets_seg_and_sr(plain_series, tmp_path, sample_case):
    """The DICOM outputs follow an enhanced input: the SEG references its frames."""
    import highdicom as hd

    from lvp.pipeline import MaskSegmenter, run_inference

    sources = [pydicom.dcmread(p) for p in _files(plain_series)]
    random.Random(5).shuffle(sources)
    (tmp_path / "mf").mkdir()
    _enhanced(sources, tmp_path / "mf" / "enhanced.dcm")
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(tmp_path / "mf", tmp_path / "out", segmenter=MaskSegmenter(mask), html=False)
    assert report["status"] == "complete", report["error"]
    from dciodvfy_helpers import dciodvfy_errors

    assert dciodvfy_errors(tmp_path / "out" / "segmentation.dcm") == []
    assert dciodvfy_errors(tmp_path / "out" / "report.sr.dcm") == []
    seg = hd.seg.segread(tmp_path / "out" / "segmentation.dcm")
    src = pydicom.dcmread(tmp_path / "mf" / "enhanced.dcm", stop_before_pixels=True)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "segmentation.nii.gz")))
    iop = np.asarray(src.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
                     if "PlaneOrientationSequence" in src.SharedFunctionalGroupsSequence[0]
                     else src.PerFrameFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
                     float)
    normal = np.cross(iop[:3], iop[3:])
    heights = [float(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float) @ normal)
               for item in src.PerFrameFunctionalGroupsSequence]
    rank = np.argsort(np.argsort(heights))  # frame f of the source is slice rank[f] of the label map
    numbers = seg.get_pixels_by_source_frame(source_sop_instance_uid=src.SOPInstanceUID,
                                             source_frame_numbers=list(range(1, len(heights) + 1)),
                                             combine_segments=True, skip_overlap_checks=True)
    np.testing.assert_array_equal(seg_label_values(seg, numbers), labels[rank])
