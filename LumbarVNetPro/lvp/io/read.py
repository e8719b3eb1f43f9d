"""Read any supported input into a validated canonical :class:`~lvp.io.volume.Volume`."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lvp.errors import InputError
from lvp.io.validate import validate_volume
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


def _stream_length(path: Path) -> tuple[bytes, int]:
    """First 348 bytes and total (decompressed) length of a file; refuse broken gzip streams."""
    if not path.name.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            return fh.read(348), path.stat().st_size
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    head, total = b"", 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                out = decomp.decompress(chunk)
                if len(head) < 348:
                    head += out[: 348 - len(head)]
                total += len(out)
    except zlib.error as err:
        raise InputError(f"{path} is corrupt (gzip stream error: {err}); copy the file again") from None
    if not decomp.eof:
        raise InputError(f"{path} is truncated: the compressed data ends before the image does; "
                         "copy the file again")
    return head, total


def _check_complete(path: Path) -> None:
    """Refuse truncated NIfTI files: ITK's reader silently fills the missing voxels with zeros."""
    head, total = _stream_length(path)
    if len(head) < 348:
        raise InputError(f"{path} is truncated: shorter than a NIfTI header")
    for order in ("<", ">"):
        if np.frombuffer(head[:4], dtype=f"{order}i4")[0] == 348:  # NIfTI-1
            dims = np.frombuffer(head[40:56], dtype=f"{order}i2")
            bitpix = int(np.frombuffer(head[72:74], dtype=f"{order}i2")[0])
            vox_offset = float(np.frombuffer(head[108:112], dtype=f"{order}f4")[0])
            ndim = int(dims[0])
            if not 1 <= ndim <= 7:
                break
            expected = int(vox_offset) + int(np.prod(dims[1 : ndim + 1].astype(np.int64))) * bitpix // 8
            if total < expected:
                raise InputError(f"{path} is truncated: {total:,} bytes of image data where the header "
                                 f"promises {expected:,}; copy the file again")
            break


def _read_file(path: Path) -> sitk.Image:
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise InputError(f"{path} cannot be read as an image (truncated or corrupt file?): {first}") from None


def read_volume(path: str | Path, series_uid: str | None = None, *, require_sagittal: bool = True,
                validate: bool = True) -> Volume:
    """Read a DICOM folder or an image file, bring it to canonical orientation and validate it.

    ``series_uid`` picks a series in a DICOM folder holding several. ``require_sagittal=False``
    accepts other planes (for an optional axial series).
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
        meta.update(extra)
        # The slice normal is the third column of the direction: remember which canonical axis it became.
        slice_itk_axis = 2
    else:
        image = _read_file(path)
        slice_itk_axis = None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() == 2:
        raise InputError(f"{path} is a single 2-D image; LVP needs a 3-D series")
    volume = canonical_volume(image, meta)
    if slice_itk_axis is not None:
        volume.meta["slice_axis"] = volume.source.perm.index(2 - slice_itk_axis)
    if validate:
        validate_volume(volume, require_sagittal=require_sagittal)
    return volume
