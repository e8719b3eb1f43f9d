"""Reading, canonical orientation, DICOM and validation: every refusal and the geometry round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import write_series
from orientations import axis_orientations

from lvp.errors import InputError
from lvp.io.read import read_volume
from lvp.io.volume import canonical_volume


def _spine_like(size=(20, 120, 100), spacing=(1.0, 1.5, 1.2), seed=0) -> np.ndarray:
    """A canonical [lr, si, ap] array with structure (not constant, not CT-like)."""
    rng = np.random.default_rng(seed)
    lr, si, ap = np.meshgrid(*[np.arange(n) for n in size], indexing="ij")
    arr = 200 + 100 * np.sin(si / 7.0) * np.cos(ap / 9.0) + 20 * lr / size[0] + rng.normal(0, 5, size)
    return arr.astype(np.float32)


def _image_from_canonical(arr: np.ndarray, spacing, direction_cols, origin=(10.0, -20.0, 35.0)) -> sitk.Image:
    """An ITK image whose axes point along ``direction_cols`` (columns, LPS) holding ``arr``.

    ``arr`` is given in ITK (z, y, x) order of the new image.
    """
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(np.asarray(direction_cols, dtype=float).ravel()))
    return img


ORIENTATIONS = axis_orientations()


@pytest.mark.parametrize("cols", ORIENTATIONS, ids=[f"o{i}" for i in range(len(ORIENTATIONS))])
def test_canonical_round_trip_is_exact_for_every_axis_aligned_orientation(cols):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 1000, size=(7, 9, 11)).astype(np.int16)
    img = _image_from_canonical(arr, (0.7, 1.1, 2.3), cols)
    vol = canonical_volume(img)
    # The canonical axes point left, inferior, posterior.
    unit = vol.affine[:3, :3] / np.asarray(vol.spacing)
    assert np.allclose(unit, np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]))
    # Every canonical voxel sits at the same physical point as the source voxel with that value.
    for idx in [(0, 0, 0), tuple(n - 1 for n in vol.shape), (1, 2, 3)]:
        p = vol.index_to_lps(np.array(idx))
        src_index = img.TransformPhysicalPointToIndex(tuple(float(v) for v in p))
        assert img[src_index] == vol.array[idx]
    # Back onto the source grid: identical voxels and geometry.
    back = vol.to_source_image()
    assert np.array_equal(sitk.GetArrayFromImage(back), arr)
    assert np.allclose(back.GetDirection(), img.GetDirection())
    assert np.allclose(back.GetOrigin(), img.GetOrigin())
    # to_sitk describes the same physical voxels.
    canon_img = vol.to_sitk()
    q = canon_img.TransformIndexToPhysicalPoint((3, 2, 1))
    assert np.allclose(q, vol.index_to_lps(np.array([1, 2, 3])))
    assert np.allclose(vol.lps_to_index(vol.index_to_lps(np.array([1.5, 2.25, 3.0]))), [1.5, 2.25, 3.0])


def test_oblique_but_dominant_orientation_keeps_physical_points():
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    cols = rot @ np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
    arr = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    img = _image_from_canonical(arr, (0.5, 0.5, 3.0), cols)
    vol = canonical_volume(img)
    for idx in [(0, 0, 0), (4, 3, 2), (6, 5, 4)]:
        idx = tuple(min(i, n - 1) for i, n in zip(idx, vol.shape))
        p = vol.index_to_lps(np.array(idx))
        cont = img.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in p))
        assert np.allclose(cont, np.round(cont), atol=1e-6)
        assert img[tuple(int(round(c)) for c in cont)] == vol.array[idx]


def _sagittal_image(arr_canonical: np.ndarray, spacing_canon=(3.0, 0.6, 0.6)) -> sitk.Image:
    """A sagittal image in DICOM-like axes: x → P (rows), y → I (columns), z → L (slices)."""
    cols = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)  # columns: P, I, L
    itk_arr = np.ascontiguousarray(arr_canonical)  # (z=lr, y=si, x=ap)
    return _image_from_canonical(itk_arr, (spacing_canon[2], spacing_canon[1], spacing_canon[0]), cols)


@pytest.fixture()
def sagittal_image() -> sitk.Image:
    return _sagittal_image(_spine_like(size=(12, 300, 200)))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_read_file_formats_keep_geometry(tmp_path, sagittal_image, suffix):
    path = tmp_path / f"case{suffix}"
    sitk.WriteImage(sagittal_image, str(path))
    vol = read_volume(path)
    assert vol.shape == (12, 300, 200)
    assert np.allclose(vol.spacing, (3.0, 0.6, 0.6))
    assert vol.meta["format"] in ("nifti", "nrrd", "mha")
    assert np.allclose(vol.to_source_array(), sitk.GetArrayFromImage(sagittal_image), atol=1e-3)


def test_dicom_round_trip_sub_voxel(tmp_path, sagittal_image):
    uid = write_series(sagittal_image, tmp_path / "dcm")
    vol = read_volume(tmp_path / "dcm")
    assert vol.meta["series_uid"] == uid
    assert vol.meta["format"] == "dicom"
    ref = canonical_volume(sagittal_image)
    assert vol.shape == ref.shape
    # Geometry to sub-voxel precision: every corner maps to the same physical point.
    for idx in [(0, 0, 0), tuple(n - 1 for n in ref.shape)]:
        d = np.linalg.norm(vol.index_to_lps(np.array(idx)) - ref.index_to_lps(np.array(idx)))
        assert d < 0.01 * min(ref.spacing)
    # Intensities survive the 16-bit storage with rescale to within its quantisation.
    span = float(ref.array.max() - ref.array.min())
    assert np.max(np.abs(vol.array - ref.array)) <= span / 65535 + 1e-3


def test_dicom_from_real_nifti_sample(tmp_path, sample_case):
    img = sitk.ReadImage(str(sample_case))
    write_series(img, tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    ref = read_volume(sample_case)
    assert vol.shape == ref.shape
    assert np.allclose(vol.affine, ref.affine, atol=1e-3)
    assert np.array_equal(np.round(vol.array), ref.array.astype(np.float32))


def _write_two_series(tmp_path, sagittal_image):
    sag = write_series(sagittal_image, tmp_path / "study" / "sag", series_description="SAG T2 TSE")
    axial_cols = np.eye(3)  # slices stacked along S: axial
    ax_img = _image_from_canonical(_spine_like(size=(10, 80, 90)), (0.7, 0.7, 4.0), axial_cols)
    ax = write_series(ax_img, tmp_path / "study" / "ax", series_description="AX T2")
    return sag, ax


def test_dicom_folder_with_several_series_picks_sagittal_t2(tmp_path, sagittal_image):
    sag, ax = _write_two_series(tmp_path, sagittal_image)
    assert read_volume(tmp_path / "study").meta["series_uid"] == sag
    # The axial one can be read when asked for and not required to be sagittal.
    assert read_volume(tmp_path / "study", ax, require_sagittal=False).meta["series_uid"] == ax


def test_ambiguous_series_are_listed(tmp_path, sagittal_image):
    a = write_series(sagittal_image, tmp_path / "f" / "a", series_description="SAG T2 A")
    b = write_series(sagittal_image, tmp_path / "f" / "b", series_description="SAG T2 B")
    with pytest.raises(InputError, match="--series") as err:
        read_volume(tmp_path / "f")
    assert a in str(err.value) and b in str(err.value)
    assert read_volume(tmp_path / "f", b).meta["series_uid"] == b


def test_named_series_missing(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    with pytest.raises(InputError, match="not in the folder"):
        read_volume(tmp_path / "d", "1.2.3.4")


def test_corrupt_dicom_header_named(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    bad = sorted((tmp_path / "d").iterdir())[3]
    data = bad.read_bytes()
    bad.write_bytes(data[:132] + b"\xff\xff\xff\xff garbage" * 8)
    with pytest.raises(InputError, match=bad.name):
        read_volume(tmp_path / "d")


def test_truncated_dicom_pixel_data_named(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    bad = sorted((tmp_path / "d").iterdir())[5]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 5000])
    with pytest.raises(InputError, match=f"{bad.name}.*(corrupt|truncated)"):
        read_volume(tmp_path / "d")


def test_missing_slice_is_a_gap(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    sorted((tmp_path / "d").iterdir())[6].unlink()
    with pytest.raises(InputError, match="missing slices"):
        read_volume(tmp_path / "d")


def test_mixed_series_refused(tmp_path, sagittal_image):
    uid = write_series(sagittal_image, tmp_path / "d")
    other = sitk.Resample(sagittal_image, [100, 150, 12], sitk.Transform(), sitk.sitkLinear,
                          sagittal_image.GetOrigin(), (1.2, 1.2, 3.0), sagittal_image.GetDirection())
    write_series(other, tmp_path / "x", series_uid=uid)
    (tmp_path / "x" / "IM0003.dcm").rename(tmp_path / "d" / "extra.dcm")
    with pytest.raises(InputError, match="mixed series"):
        read_volume(tmp_path / "d")


def test_ct_modality_refused(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d", modality="CT")
    with pytest.raises(InputError, match="modality CT"):
        read_volume(tmp_path / "d")


def test_no_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM files"):
        read_volume(tmp_path)


def test_dicom_written_files_are_valid_dicom(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    ds = pydicom.dcmread(sorted((tmp_path / "d").iterdir())[0])
    assert ds.Modality == "MR" and ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


# ---- refusals of unusable images -------------------------------------------------------------


def _write(tmp_path, img, name="x.nii.gz") -> Path:
    path = tmp_path / name
    sitk.WriteImage(img, str(path))
    return path


def test_not_3d(tmp_path):
    img = sitk.GetImageFromArray(np.ones((50, 60), np.float32))
    with pytest.raises(InputError, match="2-D"):
        read_volume(_write(tmp_path, img))


def test_single_slice(tmp_path):
    arr = _spine_like(size=(1, 300, 200))
    with pytest.raises(InputError, match="only 1 slice"):
        read_volume(_write(tmp_path, _sagittal_image(arr)))


@pytest.mark.parametrize("spacing,match", [((3.0, 0.0001, 0.6), "outside the plausible"),
                                           ((3.0, 40.0, 0.6), "outside the plausible")])
def test_absurd_spacing(tmp_path, spacing, match):
    img = _sagittal_image(_spine_like(size=(12, 300, 200)), spacing)
    with pytest.raises(InputError, match=match):
        read_volume(_write(tmp_path, img, "s.nrrd"))


def test_zero_spacing_in_header(tmp_path, sagittal_image):
    path = _write(tmp_path, sagittal_image, "z.nhdr")
    text = path.read_text().replace("space directions: (0,0.59999999999999998,0)", "space directions: (0,0,0)")
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("space directions")]
    assert lines, "NRRD header must carry space directions"
    text = path.read_text().replace(lines[0], "space directions: (0,0,0) (0,0,-0.6) (3,0,0)")
    path.write_text(text)
    with pytest.raises(InputError):
        read_volume(path)


def test_axial_acquisition_refused_with_plane_named(tmp_path):
    img = _image_from_canonical(_spine_like(size=(20, 200, 200)), (0.7, 0.7, 4.0), np.eye(3))
    with pytest.raises(InputError, match="axial acquisition"):
        read_volume(_write(tmp_path, img))


def test_coronal_acquisition_refused(tmp_path):
    cols = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float)  # slices along P: coronal
    img = _image_from_canonical(_spine_like(size=(15, 300, 200)), (0.6, 0.6, 4.0), cols)
    with pytest.raises(InputError, match="coronal acquisition"):
        read_volume(_write(tmp_path, img))


def test_field_of_view_too_small(tmp_path):
    img = _sagittal_image(_spine_like(size=(12, 60, 200)), (3.0, 0.6, 0.6))  # 36 mm cranio-caudal
    with pytest.raises(InputError, match="too small for a lumbar spine"):
        read_volume(_write(tmp_path, img))


def test_field_of_view_too_large(tmp_path):
    img = _sagittal_image(_spine_like(size=(12, 1600, 100)), (3.0, 0.6, 0.6))  # 960 mm
    with pytest.raises(InputError, match="larger than a body"):
        read_volume(_write(tmp_path, img))


@pytest.mark.parametrize("name", ["nan.mha", "nan.nii.gz", "nan.nii", "nan.nrrd"])
def test_partly_nan_image_is_read_with_the_count_in_a_warning(tmp_path, name):
    """ITK turns NaN voxels of a NIfTI file into 0 silently: LVP counts them in the file and says so."""
    arr = _spine_like(size=(12, 300, 200))
    arr[3, 10, 10] = np.nan
    arr[4, 11, 12] = np.nan
    arr[5, 20, 30] = np.inf
    vol = read_volume(_write(tmp_path, _sagittal_image(arr), name))
    assert np.isfinite(vol.array).all()
    assert vol.meta["nonfinite_voxels"] == 3
    (warning,) = [w for w in vol.meta["warnings"] if w["code"] == "nonfinite_voxels"]
    assert warning["message"].startswith("3 voxel(s)") and "read as 0" in warning["message"]
    assert vol.array[3, 10, 10] == 0


def test_mostly_nan_image_refused(tmp_path):
    arr = _spine_like(size=(12, 300, 200))
    arr[:2] = np.nan  # 2 of 12 slices: 17 % undefined
    with pytest.raises(InputError, match="NaN or infinite voxels"):
        read_volume(_write(tmp_path, _sagittal_image(arr), "nan.nii.gz"))


def test_constant_refused(tmp_path):
    arr = np.full((12, 300, 200), 7, np.float32)
    with pytest.raises(InputError, match="constant"):
        read_volume(_write(tmp_path, _sagittal_image(arr)))


def test_ct_like_intensities_refused(tmp_path):
    arr = _spine_like(size=(12, 300, 200)) - 1200
    with pytest.raises(InputError, match="Hounsfield"):
        read_volume(_write(tmp_path, _sagittal_image(arr)))


@pytest.mark.parametrize("name,match", [("t.nii.gz", "truncated"), ("t.mha", "cannot be read"),
                                        ("t.nii", "truncated")])
def test_truncated_image_file(tmp_path, sagittal_image, name, match):
    path = _write(tmp_path, sagittal_image, name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=match):
        read_volume(path)


def test_unknown_format(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unknown image format"):
        read_volume(p)


def test_shared_data_sets_read_and_pass_validation(shared_data):
    for pattern in ["spider-t2-space/spider1*_t2.nii.gz", "mrs-ivd-t2/*_image.nii.gz",
                    "chu-vb-t2/*0*_image.nii.gz", "sct-t2-lumbar/*.nii.gz"]:
        paths = sorted(shared_data.glob(pattern))
        assert paths, pattern
        vol = read_volume(paths[0])
        assert vol.shape[0] == min(vol.shape), "the thin slab axis must become left-right"


def test_cli_user_error_has_no_traceback(tmp_path):
    img = _image_from_canonical(_spine_like(size=(20, 200, 200)), (0.7, 0.7, 4.0), np.eye(3))
    path = _write(tmp_path, img)
    proc = subprocess.run([sys.executable, "-m", "lvp", "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "axial acquisition" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_check_ok(sample_case):
    proc = subprocess.run([sys.executable, "-m", "lvp", "check", str(sample_case)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout and "sagittal slices" in proc.stdout


# ---- headers checked by LVP before ITK reads them (issue 16 items 3 and 4) ---------------------


def _nifti1_bytes(tmp_path, img) -> bytearray:
    path = tmp_path / "plain.nii"
    sitk.WriteImage(img, str(path))
    return bytearray(path.read_bytes())


def _to_nifti2(n1: bytes) -> bytes:
    """The same image as a NIfTI-2 file (540-byte header with 64-bit fields), built field by field."""
    import struct

    h = bytearray(544)
    struct.pack_into("<i", h, 0, 540)
    h[4:12] = b"n+2\0\r\n\x1a\n"
    datatype, bitpix = struct.unpack_from("<2h", n1, 70)
    struct.pack_into("<2h", h, 12, datatype, bitpix)
    struct.pack_into("<8q", h, 16, *struct.unpack_from("<8h", n1, 40))
    struct.pack_into("<8d", h, 104, *struct.unpack_from("<8f", n1, 76))
    struct.pack_into("<q", h, 168, 544)
    struct.pack_into("<2d", h, 176, *struct.unpack_from("<2f", n1, 112))  # scl_slope, scl_inter
    struct.pack_into("<2i", h, 344, *struct.unpack_from("<2h", n1, 252))  # qform_code, sform_code
    struct.pack_into("<6d", h, 352, *struct.unpack_from("<6f", n1, 256))  # quatern b c d, qoffset
    struct.pack_into("<12d", h, 400, *struct.unpack_from("<12f", n1, 280))  # srow x y z
    struct.pack_into("<i", h, 500, n1[123])  # xyzt_units
    vox_offset = int(struct.unpack_from("<f", n1, 108)[0])
    return bytes(h) + bytes(n1[vox_offset:])


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("bad", [0.0, float("nan"), -0.6])
def test_zero_nan_or_negative_nifti_pixdim_refused(tmp_path, sagittal_image, version, bad):
    """ITK replaces a zero/NaN pixdim with 1 mm (disc heights came out 3.6 times too large): refuse it."""
    import gzip
    import struct

    n1 = _nifti1_bytes(tmp_path, sagittal_image)
    good = n1 if version == 1 else _to_nifti2(n1)
    path = tmp_path / f"v{version}.nii.gz"
    path.write_bytes(gzip.compress(bytes(good)))
    if version == 1:
        assert np.allclose(read_volume(path).spacing, (3.0, 0.6, 0.6))
    else:  # ITK 5.4 reads NIfTI-1 only; LVP's own header parser must agree field by field
        from lvp.io.headers import inspect_nifti, parse_nifti_header

        h1, h2 = parse_nifti_header(bytes(n1), path), inspect_nifti(path).header
        assert (h2.version, h2.dims, h2.datatype, h2.pixdim, h2.sform_code) == (
            2, h1.dims, h1.datatype, h1.pixdim, h1.sform_code)
        assert np.allclose(h2.srow, h1.srow) and np.allclose(h2.quatern, h1.quatern)
    broken = bytearray(good)
    if version == 1:
        struct.pack_into("<f", broken, 76 + 4 * 2, bad)  # pixdim[2]
    else:
        struct.pack_into("<d", broken, 104 + 8 * 2, bad)
    path.write_bytes(gzip.compress(bytes(broken)))
    with pytest.raises(InputError, match=r"voxel spacing \(pixdim\).*zero, negative or undefined"):
        read_volume(path)


def test_nan_in_nifti_sform_refused(tmp_path, sagittal_image):
    import struct

    n1 = _nifti1_bytes(tmp_path, sagittal_image)
    assert struct.unpack_from("<h", n1, 254)[0] > 0, "ITK writes an sform"
    struct.pack_into("<f", n1, 280 + 4, float("nan"))
    path = tmp_path / "sform.nii"
    path.write_bytes(bytes(n1))
    with pytest.raises(InputError, match="sform"):
        read_volume(path)


def test_oversized_nifti_refused_from_its_header_before_decompressing(tmp_path, sagittal_image):
    """A 3 MB .nii.gz declaring 1024x1024x400 float64 (3.4 GB) took 61 s and 6.7 GB before being refused."""
    import gzip
    import struct
    import time
    import tracemalloc

    n1 = _nifti1_bytes(tmp_path, sagittal_image)[:352]
    struct.pack_into("<8h", n1, 40, 3, 1024, 1024, 400, 1, 1, 1, 1)
    struct.pack_into("<2h", n1, 70, 64, 64)  # float64
    path = tmp_path / "bomb.nii.gz"
    zeros = bytes(1 << 22)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(bytes(n1))
        for _ in range(64):  # 256 MiB of zeros (the header promises 3.4 GB), about 1 MB compressed
            fh.write(zeros)
    assert path.stat().st_size < 3_000_000
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"header declares 1024 x 1024 x 400 = 419,430,400 voxels"):
        read_volume(path)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 50_000_000, (seconds, peak)


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_oversized_nrrd_or_mha_refused_from_its_header(tmp_path, sagittal_image, suffix):
    path = tmp_path / f"big{suffix}"
    sitk.WriteImage(sagittal_image, str(path))
    data = path.read_bytes()
    if suffix in (".nrrd", ".nhdr"):
        data = data.replace(b"sizes: 200 300 12", b"sizes: 2000 3000 120")
    else:
        data = data.replace(b"DimSize = 200 300 12", b"DimSize = 2000 3000 120")
    assert data != path.read_bytes(), "the header must carry the size"
    path.write_bytes(data)
    with pytest.raises(InputError, match="header declares 2000 x 3000 x 120"):
        read_volume(path)


def test_oversized_dicom_series_refused_before_reading_pixels(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    first = sorted((tmp_path / "d").iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.Rows = ds.Columns = 60000  # the pixel data no longer fits: it must never be decoded
    ds.save_as(first)
    with pytest.raises(InputError, match="declares 12 slices of 60000 x 60000"):
        read_volume(tmp_path / "d")


# ---- DICOM series missing slices at an end (issue 16 item 6) -----------------------------------


@pytest.mark.parametrize("which", [0, -1])
def test_dicom_first_or_last_slice_missing_refused(tmp_path, sagittal_image, which):
    write_series(sagittal_image, tmp_path / "d")
    files = sorted((tmp_path / "d").iterdir())
    assert pydicom.dcmread(files[0]).ImagesInAcquisition == len(files) == 12
    files[which].unlink()
    with pytest.raises(InputError, match=r"11 slices where its header says the acquisition has 12 "
                                         r"\(ImagesInAcquisition\): 1 slice\(s\) are missing"):
        read_volume(tmp_path / "d")


def _drop_images_in_acquisition(folder: Path) -> None:
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.ImagesInAcquisition
        ds.save_as(f)


def test_dicom_first_slices_missing_without_declared_count_is_a_warning(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    _drop_images_in_acquisition(tmp_path / "d")
    assert "warnings" not in read_volume(tmp_path / "d").meta or not read_volume(tmp_path / "d").meta["warnings"]
    for f in sorted((tmp_path / "d").iterdir())[:2]:  # instance numbers 1 and 2
        f.unlink()
    vol = read_volume(tmp_path / "d")
    (warning,) = vol.meta["warnings"]
    assert warning["code"] == "slices_may_be_missing"
    assert "run 3-12" in warning["message"] and "first 2 slice(s)" in warning["message"]


def test_dicom_complete_series_has_no_end_warning(tmp_path, sagittal_image):
    write_series(sagittal_image, tmp_path / "d")
    assert read_volume(tmp_path / "d").meta["warnings"] == []
