"""A DICOM series is held in its stored integer type when that is exact, its size as held is
checked on the headers before any pixel is decoded, and the read holds one full-size array
(issue 13: a case in 1 GB for any input the validator accepts).

Real files throughout: the bundled sample written as DICOM series with chosen rescales
(``dicom_writer``), read by the real reader; the expected values come from the same voxels
written as a NIfTI file and read by LVP's NIfTI path.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import write_series

from lvp.errors import InputError
from lvp.io.dicom_pixels import stack_type
from lvp.io.read import read_volume
from lvp.io.validate import MAX_IMAGE_BYTES


def _image(sample_case, scale: int = 1, offset: int = 0) -> sitk.Image:
    """The sample's voxels (0-255) as int32, times ``scale`` plus ``offset``."""
    image = sitk.Cast(sitk.ReadImage(str(sample_case)), sitk.sitkInt32)
    return image * scale + offset


def _turned(image: sitk.Image) -> sitk.Image:
    """Stored with x and z reversed and rows and columns swapped: the canonical grid needs flips
    and a transposition (a permutation that used to cost a second full-size copy)."""
    return sitk.PermuteAxes(sitk.Flip(image, [True, False, True]), [1, 0, 2])


def _expected(image: sitk.Image, tmp_path) -> np.ndarray:
    """The canonical voxels of ``image`` as LVP's NIfTI reader gives them."""
    path = tmp_path / "reference.nii.gz"
    sitk.WriteImage(image, str(path))
    return read_volume(path, validate=False, require_sagittal=False).array


# (rescale written, signed storage, image scale and offset, type held)
CASES = {
    "identity": ((1, 0), False, 1, 0, np.uint16),
    "identity_signed": ((1, 0), True, 1, 0, np.int16),
    "integer_slope_and_intercept": ((3, 7), False, 3, 7, np.uint32),  # 0..65535 * 3 + 7 needs 32 bits
    "integer_intercept_into_int16": ((1, -32768), False, 1, -32768, np.int16),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_integer_rescale_keeps_an_integer_type_with_exact_values(case, sample_case, tmp_path):
    rescale, signed, scale, offset, held = CASES[case]
    image = _turned(_image(sample_case, scale, offset))
    write_series(image, tmp_path / "series", rescale=rescale, signed=signed)
    volume = read_volume(tmp_path / "series", validate=False)
    assert volume.array.dtype == held
    assert volume.array.flags.c_contiguous
    np.testing.assert_array_equal(volume.array, _expected(image, tmp_path))


def test_fractional_rescale_is_float32_computed_as_before(sample_case, tmp_path):
    """The writer's default: a fractional slope. float32, each voxel stored * slope + intercept in float32."""
    image = _image(sample_case)
    write_series(image, tmp_path / "series")
    files = sorted((tmp_path / "series").glob("*.dcm"))
    volume = read_volume(tmp_path / "series", validate=False)
    assert volume.array.dtype == np.float32
    stack = []
    for path in files:
        ds = pydicom.dcmread(path)
        plane = ds.pixel_array.astype(np.float32)
        plane *= float(ds.RescaleSlope)
        plane += float(ds.RescaleIntercept)
        stack.append(plane)
    reference = sitk.GetImageFromArray(np.stack(stack))
    reference.CopyInformation(image)
    np.testing.assert_array_equal(volume.array, _expected(reference, tmp_path))
    assert not np.array_equal(volume.array, np.round(volume.array))  # truly fractional values


def test_rescale_differing_between_files_is_float32(sample_case, tmp_path):
    image = _image(sample_case)
    write_series(image, tmp_path / "series", rescale=(1, 0))
    files = sorted((tmp_path / "series").glob("*.dcm"))
    ds = pydicom.dcmread(files[3])
    ds.RescaleIntercept = "5"
    ds.save_as(files[3], enforce_file_format=True)
    volume = read_volume(tmp_path / "series", validate=False)
    assert volume.array.dtype == np.float32
    values = sitk.GetArrayFromImage(image)
    values[3] += 5  # file k is ITK slice z = k
    reference = sitk.GetImageFromArray(values)
    reference.CopyInformation(image)
    np.testing.assert_array_equal(volume.array, _expected(reference, tmp_path))


def test_stack_type_from_headers():
    """The choice on headers alone: per-file types and rescales."""
    def header(bits=16, signed=0, slope=None, intercept=None, samples=1):
        ds = pydicom.Dataset()
        ds.BitsAllocated, ds.PixelRepresentation, ds.SamplesPerPixel = bits, signed, samples
        if slope is not None:
            ds.RescaleSlope = slope
        if intercept is not None:
            ds.RescaleIntercept = intercept
        return ds

    assert stack_type([header(), header()]) == np.uint16  # no rescale tags: identity
    assert stack_type([header(8)]) == np.uint8
    assert stack_type([header(slope="1.0", intercept="0.0")]) == np.uint16
    assert stack_type([header(slope="0")]) == np.uint16  # a zero slope is read as 1, as always
    assert stack_type([header(8, slope="2", intercept="-100")]) == np.int16  # -100..410
    assert stack_type([header(16, 1), header(16, 0)]) == np.int32  # mixed signedness: both ranges
    assert stack_type([header(slope="0.5")]) == np.float32
    assert stack_type([header(intercept="0.25")]) == np.float32
    assert stack_type([header(intercept="1"), header(intercept="2")]) == np.float32
    assert stack_type([header(32)]) == np.float32
    assert stack_type([header(samples=3)]) == np.float32
    assert stack_type([header(slope="70000", intercept="0")]) == np.float32  # beyond 32-bit integers


def _declare_rows(folder, size: int) -> None:
    """Rewrite every file's header to declare ``size`` x ``size`` pixels (the pixel data stays small)."""
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = size
        ds.save_as(path, enforce_file_format=True)


def test_size_as_held_refused_before_any_pixel_is_decoded(sample_case, tmp_path, monkeypatch):
    """15 slices of 4096 x 4096 declared: 1.0 GB as float32 (fractional rescale) is refused from
    the headers; the same as 16-bit integers (503 MB) passes the check and only then fails on the
    pixel data, which does not hold what the header declares."""
    image = _image(sample_case)
    write_series(image, tmp_path / "fractional")
    write_series(image, tmp_path / "integer", rescale=(1, 0))
    for name in ("fractional", "integer"):
        _declare_rows(tmp_path / name, 4096)
    assert 15 * 4096 * 4096 * 2 < MAX_IMAGE_BYTES < 15 * 4096 * 4096 * 4

    full_reads: list[str] = []
    real = pydicom.dcmread

    def counted(path, *args, **kwargs):
        if not kwargs.get("stop_before_pixels"):
            full_reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counted)  # the real reader, counted
    with pytest.raises(InputError, match=r"of 32-bit float data: 1\.01 GB once decoded"):
        read_volume(tmp_path / "fractional")
    assert full_reads == []  # refused on the scan's headers: no file read for its pixels
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_volume(tmp_path / "integer")
    assert len(full_reads) == 1


@pytest.mark.parametrize("rescale,held", [((1, 0), np.uint16), (None, np.float32)])
def test_read_holds_one_array(rescale, held, sample_case, tmp_path):
    """tracemalloc's peak while reading a series whose canonical grid needs flips and a
    transposition: the array itself and a few slices (the file being decoded, its rescale),
    never a second full-size copy."""
    image = _turned(_image(sample_case))
    write_series(image, tmp_path / "series", rescale=rescale)
    files = len(list((tmp_path / "series").glob("*.dcm")))
    tracemalloc.start()
    try:
        volume = read_volume(tmp_path / "series")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.array.dtype == held
    nbytes = volume.array.nbytes
    plane = nbytes // files  # one file's slice as held
    print(f"held {nbytes / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, slice {plane / 2**10:.0f} KiB")
    # The scan's headers and a few slices of decoding on top of the array; a permutation copy
    # would add a second array.
    assert peak < nbytes + 6 * plane, (peak, nbytes, plane)


def _enhanced(folder, path) -> None:
    """The classic series in ``folder`` as one enhanced (multi-frame) MR file, frames shuffled."""
    import random

    import highdicom as hd
    from pydicom.uid import generate_uid

    sources = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    random.Random(5).shuffle(sources)  # frame order in the file is not the stack order
    path.parent.mkdir()
    hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=sources, series_instance_uid=generate_uid(), series_number=5,
        sop_instance_uid=generate_uid(), instance_number=1).save_as(path)


@pytest.mark.parametrize("rescale,held", [((1, 0), np.uint16), (None, np.float32)])
def test_enhanced_image_held_like_the_classic_series(rescale, held, sample_case, tmp_path):
    """Frames rescaled by their functional groups into the same type and values as the classic files."""
    write_series(_turned(_image(sample_case)), tmp_path / "classic", rescale=rescale)
    _enhanced(tmp_path / "classic", tmp_path / "mf" / "enhanced.dcm")
    classic, enhanced = read_volume(tmp_path / "classic"), read_volume(tmp_path / "mf")
    assert enhanced.array.dtype == classic.array.dtype == held
    np.testing.assert_array_equal(enhanced.array, classic.array)
    np.testing.assert_array_equal(enhanced.affine, classic.affine)


def test_enhanced_image_size_refused_before_decoding(sample_case, tmp_path):
    """15 frames of 4096 x 4096 declared: 16-bit stored and held is 1.0 GB while decoding, refused
    from the header (the pixel data, which does not hold that, is never decoded)."""
    write_series(_image(sample_case), tmp_path / "classic", rescale=(1, 0))
    path = tmp_path / "mf" / "enhanced.dcm"
    _enhanced(tmp_path / "classic", path)
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 4096
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match=r"declares 15 frames of 4096 x 4096 = 251,658,240 voxels of 16-bit integer"):
        read_volume(tmp_path / "mf")


def test_seg_frames_of_unlabelled_slices_cost_no_memory():
    """A zero-padded full field of view: the SEG frames of the slices without labels are left as
    the system's zero pages (never written), so making the frames costs about the labelled
    slices only (fresh interpreter, VmRSS). The frames themselves are checked value by value."""
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/proc/self/status").is_file():
        pytest.skip("needs Linux /proc for the resident memory of one process")
    code = (
        "import numpy as np\n"
        "from lvp.io.dicom_seg import SourceSeries, segment_frames\n"
        "def rss():\n"
        "    return int(next(x for x in open('/proc/self/status') if x.startswith('VmRSS')).split()[1]) * 1024\n"
        "n, rows, cols = 160, 512, 1024\n"
        "labels = np.zeros((n, rows, cols), np.uint8)\n"
        "labels[70:82, 100:400, 200:700] = 31\n"
        "labels[74:78, 150:250, 300:400] = 2\n"
        "source = SourceSeries(datasets=[], slice_of_frame={(k, 0): k for k in range(n)})\n"
        "before = rss()\n"
        "frames, values = segment_frames(labels, source)\n"
        "grew = rss() - before\n"
        "lut = np.zeros(256, np.uint8); lut[values] = np.arange(1, len(values) + 1)\n"
        "assert values == [2, 31] and np.array_equal(frames, lut[labels])\n"
        "print(frames.nbytes, grew)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    nbytes, grew = (int(v) for v in out.stdout.split())
    print(f"frames {nbytes / 2**20:.0f} MiB, resident growth {grew / 2**20:.1f} MiB")
    assert grew < 0.2 * nbytes, (grew, nbytes)  # 12 of 160 slices are labelled


def test_series_listed_without_headers_reads_the_same(sample_case, tmp_path):
    """A series described without its headers (a DICOMweb listing) has them read before the pixels."""
    from lvp.io.dicom import SeriesInfo, read_series, scan_folder

    write_series(_turned(_image(sample_case)), tmp_path / "series", rescale=(1, 0))
    (scanned,) = scan_folder(tmp_path / "series")
    listed = SeriesInfo(uid=scanned.uid, files=list(scanned.files), modality="MR", frames=len(scanned.files))
    a, meta_a = read_series(scanned)
    b, meta_b = read_series(listed)
    assert a.array.dtype == b.array.dtype == np.uint16
    np.testing.assert_array_equal(a.array, b.array)
    assert (a.GetSpacing(), a.GetOrigin(), a.GetDirection(), a.GetSize()) == \
        (b.GetSpacing(), b.GetOrigin(), b.GetDirection(), b.GetSize())
    assert meta_a["study"] == meta_b["study"] and meta_a["warnings"] == meta_b["warnings"]


def test_dicom_input_and_outputs_counted_in_the_working_memory():
    """A DICOM input holds its headers through the case; its SEG and SR are written after the image
    is released, so they count only where the image is smaller than they are. A case that fits as
    NIfTI can be refused as DICOM, naming the outputs."""
    from lvp.io import validate

    content, grid, extent = 24_117_248, 983_040, (23.0, 300.0, 240.0)  # the padded full FOVs' content
    image = 1024 * 1024 * 280 * 2
    plain = validate.working_memory(image, content, grid)
    assert validate.working_memory(image, content, grid, dicom_output=True) == plain + validate.DICOM_INPUT_BYTES
    assert validate.working_memory(image, content, grid, dicom_input=True) == plain + validate.DICOM_INPUT_BYTES
    # The SEG/SR moment: no image held then; it decides for a tiny image only.
    seg_moment = (validate.RUNTIME_BYTES + validate.DICOM_INPUT_BYTES + validate.DICOM_OUTPUT_BYTES
                  + validate.BYTES_PER_CONTENT_VOXEL * content)
    assert validate.working_memory(0, content, grid, dicom_output=True) == seg_moment
    assert validate.working_memory(0, content, grid, dicom_input=True) < seg_moment  # --no-dicom
    fits = validate.MEMORY_BUDGET_BYTES - validate.working_memory(0, content, grid)  # largest image fitting as NIfTI
    assert validate.check_working_memory(fits, content, grid, extent) == validate.MEMORY_BUDGET_BYTES
    with pytest.raises(InputError, match="with DICOM SEG and SR outputs"):
        validate.check_working_memory(fits, content, grid, extent, dicom_output=True)
    # 16-bit 1024 x 1024 x 200 and x 280 fit with their DICOM outputs (measured 821 and 983-993 MiB
    # peaks); content in every slice of x 280 does not.
    validate.check_working_memory(1024 * 1024 * 200 * 2, content, grid, extent, dicom_output=True)
    validate.check_working_memory(image, content, grid, extent, dicom_output=True)
    with pytest.raises(InputError, match="in an image of 560 MiB with DICOM SEG and SR outputs"):
        validate.check_working_memory(image, 1024 * 1024 * 280, 12 * grid, (300.0, 300.0, 240.0), dicom_output=True)
