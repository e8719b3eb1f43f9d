"""Read any supported input into a validated canonical :class:`~lvp.io.volume.Volume`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lvp.errors import InputError
from lvp.io.headers import PLAIN_TYPES, NiftiHeader, check_text_header, inspect_nifti
from lvp.io.validate import check_image_bytes, nonfinite_warning, validate_volume
from lvp.io.volume import ArrayImage, CanonicalLayout, Volume, canonical_layout, canonical_volume

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


# SimpleITK pixel type -> numpy type, for the voxels LVP decompresses itself (see _read_nifti).
_SITK_NUMPY = {sitk.sitkUInt8: "u1", sitk.sitkInt8: "i1", sitk.sitkUInt16: "u2", sitk.sitkInt16: "i2",
               sitk.sitkUInt32: "u4", sitk.sitkInt32: "i4", sitk.sitkUInt64: "u8", sitk.sitkInt64: "i8",
               sitk.sitkFloat32: "f4", sitk.sitkFloat64: "f8"}


def _read_file(path: Path) -> tuple[sitk.Image | ImageGeometry, int]:
    """Read an image file after checking its header; also return its count of NaN/inf voxels.

    A plain 3-D NIfTI file is decompressed once, by the header check, straight into its
    canonical order (an :class:`ImageGeometry` with ITK's own reading of the header's geometry);
    anything else is read by ITK, after its size as decoded is checked on the header.
    """
    nonfinite = 0
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        # ITK zeroes NaN voxels of NIfTI files: count them in the file itself.
        readers: list[sitk.ImageFileReader] = []
        scan = inspect_nifti(path, keep_data=True, layout=lambda header: _nifti_layout(path, header, readers))
        nonfinite = scan.nonfinite
        if scan.data is not None and scan.layout is not None:
            return ImageGeometry(readers[0], scan.data, canonical=True), nonfinite
        _check_itk_size(path, readers[0] if readers else None)  # the header ITK read already
    else:
        if name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
            check_text_header(path)
        _check_itk_size(path)
    try:
        return sitk.ReadImage(str(path)), nonfinite
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise InputError(f"{path} cannot be read as an image (truncated or corrupt file?): {first}") from None


def _itk_header(path: Path) -> sitk.ImageFileReader | None:
    """ITK's reading of ``path``'s header (geometry and pixel type, no voxels).

    None when ITK cannot read it: its full read then names the problem.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def _itk_layout(reader: sitk.ImageFileReader) -> CanonicalLayout | None:
    """The canonical layout of a 3-D header.

    None for an orientation :func:`canonical_volume` refuses (it names the problem after ITK's read).
    """
    try:
        return canonical_layout(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin(),
                                tuple(int(n) for n in reader.GetSize()))
    except InputError:
        return None


def _check_itk_size(path: Path, reader: sitk.ImageFileReader | None = None) -> None:
    """Refuse a file ITK would decode to more than the image memory limit (from its header only).

    ITK holds the voxels in the file's type (float64 too); a file stored in another axis order
    than the canonical one is held twice while it is reordered. ``reader``: :func:`_itk_header`
    of ``path`` when the caller has it.
    """
    reader = reader if reader is not None else _itk_header(path)
    if reader is None:
        return
    size = tuple(int(n) for n in reader.GetSize())
    voxels = int(np.prod(np.asarray(size, dtype=np.int64))) * int(reader.GetNumberOfComponents())
    dtype = np.dtype(_SITK_NUMPY.get(reader.GetPixelID(), "f8"))
    layout = _itk_layout(reader) if reader.GetDimension() == 3 else None
    copies = 2 if layout is not None and layout.perm != (0, 1, 2) else 1
    check_image_bytes(voxels, dtype.itemsize * copies, f"{path}: the header declares {' x '.join(map(str, size))} =",
                      dtype)


class ImageGeometry(ArrayImage):
    """ITK's header geometry (``reader``, information only) with the voxels LVP decompressed.

    A NIfTI file is so decompressed once instead of twice (once to check it, once by ITK).
    """

    def __init__(self, reader: sitk.ImageFileReader, array: np.ndarray, canonical: bool = False) -> None:
        super().__init__(array, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(),
                         size=reader.GetSize(), canonical=canonical)


def _nifti_layout(path: Path, header: NiftiHeader, readers: list) -> CanonicalLayout | None:
    """ITK's geometry of the NIfTI ``path`` as a canonical layout; None if ITK would read other voxels.

    Called by the header check once the header passed it, before the body is decompressed; the
    ITK reader (geometry only) is appended to ``readers`` (whether or not the layout is usable).
    """
    reader = _itk_header(path)
    if reader is None:
        return None
    readers.append(reader)
    size = tuple(int(n) for n in reader.GetSize())
    pixel = _SITK_NUMPY.get(reader.GetPixelID())
    plain = PLAIN_TYPES.get(header.datatype)
    if (reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or size != tuple(header.dims)
            or pixel is None or plain is None or np.dtype(pixel) != np.dtype(plain)):
        return None
    return _itk_layout(reader)


def _undefined_voxels(volume: Volume, counted: int) -> None:
    """Report (or refuse) NaN/inf voxels; those still in the array become 0, as ITK does for NIfTI."""
    arr = volume.array
    in_array = 0
    if arr.dtype.kind == "f":
        for plane in arr:  # slice by slice: no full-size boolean temporary
            bad = ~np.isfinite(plane)
            n = int(np.count_nonzero(bad))
            if n:
                plane[bad] = 0
                in_array += n
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
    volume = canonical_volume(image, meta, consume=True)  # the reader's image: its buffer may be kept
    _undefined_voxels(volume, nonfinite)
    if slice_itk_axis is not None:
        volume.meta["slice_axis"] = volume.source.perm.index(2 - slice_itk_axis)
    if validate:
        validate_volume(volume, require_sagittal=require_sagittal)
    return volume
