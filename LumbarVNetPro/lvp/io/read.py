"""Read any supported input into a validated canonical :class:`~lvp.io.volume.Volume`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lvp.errors import InputError
from lvp.io.headers import check_text_header, inspect_nifti
from lvp.io.validate import nonfinite_warning, validate_volume
from lvp.io.volume import Volume, canonical_volume

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def input_format(path: Path) -> str:
    """Name the format of ``path``: "dicom", "nifti", "nrrd" or "mha"."""
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith((".mha", ".mhd")):
        return "mha"
    if name.endswith(".dcm"):
        return "dicom"
    raise InputError(f"{path}: unknown image format; LVP reads a DICOM folder, NIfTI (.nii, .nii.gz), "
                     "NRRD (.nrrd) or MetaImage (.mha, .mhd)")


def _read_file(path: Path) -> tuple[sitk.Image, int]:
    """Read an image file after checking its header; also return its count of NaN/inf voxels."""
    nonfinite = 0
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        # ITK zeroes NaN voxels of NIfTI files: count them in the file itself.
        nonfinite = inspect_nifti(path).nonfinite
    elif name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
        check_text_header(path)
    try:
        return sitk.ReadImage(str(path)), nonfinite
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise InputError(f"{path} cannot be read as an image (truncated or corrupt file?): {first}") from None


def _undefined_voxels(volume: Volume, counted: int) -> None:
    """Report (or refuse) NaN/inf voxels; those still in the array become 0, as ITK does for NIfTI."""
    arr = volume.array
    in_array = 0
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        in_array = int(np.count_nonzero(bad))
        if in_array:
            arr[bad] = 0
    count = max(counted, in_array)
    if count:
        warning = nonfinite_warning(count, arr.size, str(volume.meta.get("path", "the image")))
        volume.meta.setdefault("warnings", []).append(warning)
        volume.meta["nonfinite_voxels"] = count


def read_volume(path: str | Path, series_uid: str | None = None, *, require_sagittal: bool = True,
                validate: bool = True) -> Volume:
    """Read a DICOM folder or an image file, bring it to canonical orientation and validate it.

    ``series_uid`` picks a series in a DICOM folder holding several. ``require_sagittal=False``
    accepts other planes (for an optional axial series). What the report must say about the
    input (undefined voxels read as 0, slices that may be missing) is listed in
    ``volume.meta["warnings"]`` as ``{"code", "message"}`` objects.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    fmt = input_format(path)
    meta: dict = {"path": str(path), "format": fmt, "series_uid": None}
    if fmt == "dicom":
        from lvp.io import dicom  # pydicom costs ~0.1 s to import: only for DICOM input

        folder = path if path.is_dir() else path.parent
        series = dicom.scan_folder(folder)
        plane = "sagittal" if require_sagittal else "axial"
        info = dicom.choose_series(series, series_uid, plane=plane)
        image, extra = dicom.read_series(info)
        nonfinite = 0
        meta.update(extra)
        # The slice normal is the third column of the direction: remember which canonical axis it became.
        slice_itk_axis = 2
    else:
        image, nonfinite = _read_file(path)
        slice_itk_axis = None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() == 2:
        raise InputError(f"{path} is a single 2-D image; LVP needs a 3-D series")
    volume = canonical_volume(image, meta)
    _undefined_voxels(volume, nonfinite)
    if slice_itk_axis is not None:
        volume.meta["slice_axis"] = volume.source.perm.index(2 - slice_itk_axis)
    if validate:
        validate_volume(volume, require_sagittal=require_sagittal)
    return volume
