"""DICOM series: find, choose, read (with integrity checks) and write.

A folder may hold several series (localisers, sagittal T1 and T2, axial T2 ...). LVP groups
the files by SeriesInstanceUID, describes each series (plane from ImageOrientationPatient,
weighting from the description and echo/repetition times) and picks the sagittal T2 one. When
that choice is ambiguous it refuses and lists the series, so the user names one
(``--series UID``).

Reading checks what breaks silently elsewhere: unreadable or truncated files, slices with
different size/orientation/spacing (mixed series), missing slices (gaps in the slice
positions, and at the ends where the series states its extent: see :func:`_check_series_ends`),
non-MR modalities, series larger than the validator's voxel or bytes limit (before reading pixels).

The folder is scanned once: the headers read then (without pixel data) stay with the chosen
series, and :func:`read_series` records them and the files in the volume's meta
(``dicom_files``, ``dicom_headers``) for the DICOM SEG/SR writer (:mod:`lvp.io.dicom_seg`), which
therefore neither scans the folder again nor re-reads a file. Everything but the pixels (geometry,
missing slices, the size as held) is checked on those headers before any pixel is decoded; the
slices are then written straight into their place in one array in LVP's canonical orientation,
which the volume takes over (no SimpleITK copy, no reordering copy). That array holds the stored
integer type when the rescale keeps values exact, else float32 (:mod:`lvp.io.dicom_pixels`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from lvp.errors import InputError
from lvp.io.dicom_decode import StackImage, decode_pixels, frame_count, orientation, read_enhanced
from lvp.io.dicom_pixels import rescale_of, stack_type, store_slice
from lvp.io.slice_stack import same_grid, stack_steps

PLANES = ("sagittal", "coronal", "axial")  # by the LPS component of the slice normal


@dataclass
class SeriesInfo:
    """A DICOM series found in a folder (header facts only; pixels not read)."""

    uid: str
    files: list[Path] = field(default_factory=list)
    description: str = ""
    modality: str = ""
    plane: str = "unknown"
    weighting: str = "unknown"  # "T1", "T2", "PD", "STIR" or "unknown"
    frames: int = 0  # slices: one per classic file, NumberOfFrames of an enhanced (multi-frame) file
    # The scan's header of each file (no pixel data), in the order of ``files``; empty when the
    # series was described without reading its files (a DICOMweb listing).
    headers: list[pydicom.Dataset] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One line naming the series for error messages and listings."""
        return (f"{self.uid}  {self.modality or '?'}  {self.plane}  {self.weighting}  "
                f"{len(self.files)} files  '{self.description}'")


def _plane(iop: Iterable[float] | None) -> str:
    if iop is None:
        return "unknown"
    v = np.asarray([float(x) for x in iop], dtype=float)
    if v.size != 6:
        return "unknown"
    normal = np.cross(v[:3], v[3:])
    return PLANES[int(np.argmax(np.abs(normal)))]


def _weighting(ds: pydicom.Dataset) -> str:
    text = " ".join(str(ds.get(tag, "")) for tag in ("SeriesDescription", "SequenceName", "ProtocolName")).upper()
    for key in ("STIR", "TIRM", "FLAIR"):
        if key in text:
            return "STIR"
    for key, name in (("T2", "T2"), ("T1", "T1"), ("PD", "PD")):
        if key in text:
            return name
    te, tr = ds.get("EchoTime"), ds.get("RepetitionTime")
    try:
        if te is not None and tr is not None:
            te, tr = float(te), float(tr)
            if te >= 60 and tr >= 1500:
                return "T2"
            if te <= 30 and tr <= 1000:
                return "T1"
    except (TypeError, ValueError):
        pass
    return "unknown"


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path) -> pydicom.Dataset | None:
    """The header (no pixel data) of a DICOM file, from one open; None without the DICOM preamble.

    A file that carries the preamble but cannot be parsed is corrupt: InputError naming it.
    """
    try:
        fh = open(path, "rb")  # closed below; a file that cannot be opened is not read (as before)
    except OSError:
        return None
    with fh:
        head = fh.read(132)
        if len(head) != 132 or head[128:132] != b"DICM":
            return None
        fh.seek(0)
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as err:
            raise InputError(f"the DICOM file {path} is corrupt or truncated ({err}); "
                             "re-export the series from the PACS") from None
    return ds


def scan_folder(folder: str | Path) -> list[SeriesInfo]:
    """Group the DICOM files under ``folder`` (recursively) by series.

    Files without the DICOM preamble are ignored (README, thumbnails). A file that carries the
    preamble but cannot be parsed is corrupt: it raises InputError naming the file.
    """
    folder = Path(folder)
    series: dict[str, SeriesInfo] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = None if path.name == "DICOMDIR" else _read_header(path)
        if ds is None:
            continue
        if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
            # pydicom parses garbage after a valid preamble into an empty data set.
            raise InputError(f"the DICOM file {path} is corrupt: its header holds no SOP class or series "
                             "identifiers; re-export the series from the PACS")
        uid = str(ds.get("SeriesInstanceUID", "")) or "no-series-uid"
        info = series.get(uid)
        if info is None:
            info = series[uid] = SeriesInfo(
                uid=uid,
                description=str(ds.get("SeriesDescription", "")),
                modality=str(ds.get("Modality", "")),
                plane=_plane(orientation(ds)),
                weighting=_weighting(ds),
            )
        info.files.append(path)
        info.headers.append(ds)
        info.frames += frame_count(ds)
    if not series:
        raise InputError(f"no DICOM files found in {folder}")
    return list(series.values())


def choose_series(series: list[SeriesInfo], uid: str | None = None, *, plane: str = "sagittal") -> SeriesInfo:
    """Pick the series to read: the named one, else the only ``plane`` T2 MR series."""
    if uid is not None:
        for info in series:
            if info.uid == uid:
                return info
        raise InputError(f"series {uid} is not in the folder; it holds:\n  " +
                         "\n  ".join(s.summary() for s in series))
    if len(series) == 1:
        return series[0]
    candidates = [s for s in series if s.modality in ("MR", "") and s.plane == plane
                  and max(len(s.files), s.frames) >= 3]
    t2 = [s for s in candidates if s.weighting == "T2"]
    if len(t2) == 1:
        return t2[0]
    if len(candidates) == 1 and not t2:
        return candidates[0]
    listing = "\n  ".join(s.summary() for s in series)
    reason = (f"{len(t2)} {plane} T2 series" if t2 else f"no clear {plane} T2 series")
    raise InputError(f"the folder holds {len(series)} series and {reason}; choose one with --series UID:\n  {listing}")


_Geometry = tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[int, int]]


def _slice_geometry(ds: pydicom.Dataset, path: Path) -> _Geometry:
    try:
        iop = np.asarray([float(x) for x in ds.ImageOrientationPatient], dtype=float)
        ipp = np.asarray([float(x) for x in ds.ImagePositionPatient], dtype=float)
        spacing = tuple(float(x) for x in ds.PixelSpacing)
        shape = (int(ds.Rows), int(ds.Columns))
    except (AttributeError, TypeError, ValueError) as err:
        raise InputError(f"the DICOM file {path} lacks image geometry ({err}); it is not an image slice") from None
    return iop, ipp, spacing, shape  # type: ignore[return-value]


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value is not None and str(value).strip() else None
    except ValueError:
        return None


def _check_series_ends(info: SeriesInfo, numbers: list[int | None], declared: set[int | None],
                       acquisitions: set[str]) -> list[dict]:
    """Catch slices missing at either end of the stack, where the gap check cannot see them.

    Two kinds of evidence, used by how certain they are:

    * ImagesInAcquisition (0020,1002), the same on every slice of a one-acquisition series,
      larger than the number of slices present: slices are certainly missing, refused.
    * InstanceNumber consecutive along the stack but starting above 1: the first slices may be
      missing (some exports renumber or split series, so this is a warning, not a refusal).

    Slices missing at the end of a series that declares neither cannot be detected.
    """
    n = len(numbers)
    counts = {d for d in declared if d}
    if len(counts) == 1 and None not in declared and len(acquisitions) <= 1:
        expected = counts.pop()
        if n < expected:
            raise InputError(
                f"series {info.uid} has {n} slices where its header says the acquisition has {expected} "
                f"(ImagesInAcquisition): {expected - n} slice(s) are missing at the start or end of the stack "
                "(truncated transfer or export?); re-export the whole series"
            )
    warnings = []
    known = [k for k in numbers if k is not None]
    if len(known) == n and len(set(known)) == n:
        steps = np.diff(np.asarray(known, dtype=np.int64))
        first, last = min(known), max(known)
        if (np.all(steps == 1) or np.all(steps == -1)) and first > 1:
            warnings.append({
                "code": "slices_may_be_missing",
                "message": f"The series' instance numbers run {first}-{last}: the first {first - 1} slice(s) of the "
                           "acquisition may be missing (at one end of the stack). Check that the series is complete; "
                           "levels at that side may be absent or cut.",
            })
    return warnings


def source_record(info: SeriesInfo) -> dict:
    """What the DICOM SEG/SR writer needs of the files read, for the volume's meta.

    ``dicom_files``: the series' files (str, scan order); ``dicom_headers``: their headers from the
    scan, without pixel data (not JSON: meta keys the report copies are named one by one).
    """
    record: dict = {"dicom_files": [str(p) for p in info.files]}
    if len(info.headers) == len(info.files):
        record["dicom_headers"] = list(info.headers)
    return record


def _series_headers(info: SeriesInfo) -> list[pydicom.Dataset]:
    """Each file's header without pixel data: the scan's, else read now (a series listed, not scanned)."""
    if len(info.headers) == len(info.files):
        return info.headers
    headers = []
    for path in info.files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except Exception as err:  # any parser failure means the file is unusable
            raise InputError(f"the DICOM file {path} is corrupt or truncated ({err}); "
                             "re-export the series") from None
    return headers


def _stack_geometry(info: SeriesInfo, headers: list[pydicom.Dataset]) -> tuple[np.ndarray, dict]:
    """Check the series' geometry from its headers; the files' order along the slice normal and the stack's geometry.

    Refuses mixed series (slice size, orientation, spacing), repeated and missing slices, all
    before any pixel data is decoded.
    """
    slices = [(path, *_slice_geometry(ds, path)) for path, ds in zip(info.files, headers)]
    if len(slices) < 2:
        raise InputError(f"series {info.uid} has a single slice; LVP needs a 3-D series")
    ref_iop, _, ref_spacing, ref_shape = slices[0][1], slices[0][2], slices[0][3], slices[0][4]
    for path, iop, _ipp, spacing, shape in slices[1:]:
        if shape != ref_shape or not same_grid(iop, ref_iop, spacing, ref_spacing):
            raise InputError(
                f"series {info.uid} mixes slices of different size, orientation or pixel spacing "
                f"({slices[0][0].name}: {ref_shape} vs {path.name}: {shape}); it is a mixed series, "
                "export each acquisition separately"
            )
    row, col = ref_iop[:3], ref_iop[3:]
    normal = np.cross(row, col)
    order, steps, step, repeated, i = stack_steps([s[2] @ normal for s in slices])
    if repeated is not None:
        dup = slices[int(order[repeated + 1])][0].name
        raise InputError(f"series {info.uid} has two slices at the same position (e.g. {dup}); "
                         "it mixes repeated acquisitions: export one")
    if i is not None:
        raise InputError(
            f"series {info.uid} is missing slices: a gap of {steps[i]:.2f} mm between "
            f"{slices[int(order[i])][0].name} and {slices[int(order[i + 1])][0].name} where the slice step is "
            f"{step:.2f} mm (truncated transfer?)"
        )
    # DICOM PixelSpacing is (row spacing, column spacing) = (y, x).
    geometry = {"spacing": (ref_spacing[1], ref_spacing[0], step),
                "origin": tuple(float(v) for v in slices[int(order[0])][2]),
                "direction": tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel()),
                "shape": (len(slices), *ref_shape)}  # (slice, row, col) = ITK (z, y, x)
    return order, geometry


def read_series(info: SeriesInfo) -> tuple[StackImage, dict]:
    """Read one series into a 3-D image (LPS geometry), checking its integrity.

    Everything but the pixels is checked on the headers first (geometry, missing slices, the size
    as held): a series that would be refused costs no decoding. The image is a
    :class:`lvp.io.dicom_decode.StackImage` whose array is already in LVP's canonical orientation
    (:func:`lvp.io.volume.canonical_volume` takes it over as is). Its type is the stored integer
    type when that holds the rescaled values exactly, else float32
    (:func:`lvp.io.dicom_pixels.stack_type`). Each file's pixels are rescaled straight into
    their place in that array: the read holds one full-size array and one file's pixels.
    """
    if info.modality and info.modality != "MR":
        raise InputError(f"series {info.uid} has modality {info.modality}; LVP reads MR images (T2-weighted)")
    if len(info.files) == 1 and info.frames > 1:  # an enhanced (multi-frame) MR image
        image, meta = read_enhanced(info.files[0], info.uid, info.headers[0] if info.headers else None)
        meta.update(source_record(info))
        return image, meta
    from lvp.io.validate import check_image_bytes, check_voxel_count
    from lvp.io.volume import canonical_layout

    headers = _series_headers(info)
    first = headers[0]
    rows, cols = _int_or_none(first.get("Rows")) or 0, _int_or_none(first.get("Columns")) or 0
    declared_as = f"series {info.uid} declares {len(info.files)} slices of {rows} x {cols} ="
    check_voxel_count(rows * cols * len(info.files), declared_as)
    dtype = stack_type(headers)
    check_image_bytes(rows * cols * len(info.files), dtype.itemsize, declared_as, dtype)
    order, geometry = _stack_geometry(info, headers)
    numbers = [_int_or_none(ds.get("InstanceNumber")) for ds in headers]
    declared = {_int_or_none(ds.get("ImagesInAcquisition")) for ds in headers}
    acquisitions = {str(ds.get("AcquisitionNumber", "")) for ds in headers}
    warnings = _check_series_ends(info, [numbers[i] for i in order], declared, acquisitions)

    shape = geometry["shape"]
    layout = canonical_layout(geometry["direction"], geometry["spacing"], geometry["origin"], shape[::-1])
    volume = np.empty(layout.shape(shape), dtype)
    stack = layout.source_view(volume)  # indexed (slice along the normal, row, col)
    place = np.empty(len(order), np.intp)
    place[order] = np.arange(len(order))  # file i is slice place[i] of the sorted stack
    for i, path in enumerate(info.files):
        try:
            ds = pydicom.dcmread(path)
            pixels = decode_pixels(ds, path)
        except InputError:
            raise  # a compressed syntax no installed decoder reads: named, not "corrupt"
        except Exception as err:  # any decoder failure means the file is unusable
            raise InputError(f"the DICOM file {path} is corrupt or truncated: its pixel data cannot be "
                             f"read ({type(err).__name__}: {err}); re-export the series") from None
        if pixels.ndim != 2:
            raise InputError(f"the DICOM file {path} holds a {pixels.ndim}-D frame set; LVP reads one slice per file")
        if pixels.shape != shape[1:]:
            raise InputError(f"the DICOM file {path} holds {pixels.shape[0]} x {pixels.shape[1]} pixels where the "
                             f"series' headers declare {shape[1]} x {shape[2]}; it is corrupt or a mixed series")
        store_slice(stack[place[i]], pixels, *rescale_of(ds, path))
        del ds, pixels  # one file's pixels alive at a time
    image = StackImage(volume, spacing=geometry["spacing"], origin=geometry["origin"],
                       direction=geometry["direction"], size=shape[::-1], canonical=True)
    from lvp.io.dicom_study import study_identity

    # The study identity is taken from the last file, as LVP always did (its header, no pixels).
    meta = {"series_uid": info.uid, "series_description": info.description, "files": len(info.files),
            "warnings": warnings, "study": study_identity(headers[-1]), **source_record(info)}
    return image, meta
