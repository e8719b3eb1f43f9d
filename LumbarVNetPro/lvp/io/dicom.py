"""DICOM series: find, choose, read (with integrity checks) and write.

A folder may hold several series (localisers, sagittal T1 and T2, axial T2 ...). LVP groups
the files by SeriesInstanceUID, describes each series (plane from ImageOrientationPatient,
weighting from the description and echo/repetition times) and picks the sagittal T2 one. When
that choice is ambiguous it refuses and lists the series, so the user names one
(``--series UID``).

Reading checks what breaks silently elsewhere: unreadable or truncated files, slices with
different size/orientation/spacing (mixed series), missing slices (gaps in the slice
positions, and at the ends where the series states its extent: see :func:`_check_series_ends`),
non-MR modalities, series larger than the validator's voxel limit (before reading pixels).

The folder is scanned once: the headers read then (without pixel data) stay with the chosen
series, and :func:`read_series` records them and the files in the volume's meta
(``dicom_files``, ``dicom_headers``) for the DICOM SEG/SR writer (:mod:`lvp.io.dicom_seg`), which
therefore neither scans the folder again nor re-reads a file. The slices are stacked straight
into one float32 array that the volume takes over (no SimpleITK copy of it).
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

PLANES = ("sagittal", "coronal", "axial")  # by the LPS component of the slice normal
GAP_TOLERANCE = 0.2  # relative deviation of a slice step from the median before it is a gap


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


def _check_declared_size(info: SeriesInfo) -> None:
    """Refuse a series whose slices would exceed the voxel limit, before any pixel data is read."""
    from lvp.io.validate import check_voxel_count

    ds = info.headers[0] if info.headers else pydicom.dcmread(info.files[0], stop_before_pixels=True)
    rows, cols = _int_or_none(ds.get("Rows")) or 0, _int_or_none(ds.get("Columns")) or 0
    check_voxel_count(rows * cols * len(info.files),
                      f"series {info.uid} declares {len(info.files)} slices of {rows} x {cols} =")


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


def _rescale_into(out: np.ndarray, pixels: np.ndarray, ds: pydicom.Dataset) -> None:
    """``out[...] = pixels.astype(float32) * slope + intercept`` (float32 arithmetic), no temporaries."""
    out[...] = pixels
    out *= float(ds.get("RescaleSlope", 1) or 1)
    out += float(ds.get("RescaleIntercept", 0) or 0)


def _reorder_slices(volume: np.ndarray, order: np.ndarray) -> None:
    """``volume[:] = volume[order]`` in place.

    Each cycle of the permutation moves through one spare slice, so sorting the stack by
    position needs no second full-size array.
    """
    done = np.zeros(len(order), bool)
    spare = None
    for start in range(len(order)):
        if done[start] or int(order[start]) == start:
            continue
        if spare is None:
            spare = np.empty_like(volume[0])
        spare[...] = volume[start]
        k = start
        while True:
            done[k] = True
            j = int(order[k])
            if j == start:
                volume[k] = spare
                break
            volume[k] = volume[j]
            k = j


def read_series(info: SeriesInfo) -> tuple[StackImage, dict]:
    """Read one series into a 3-D image (LPS geometry), checking its integrity.

    The image is a :class:`lvp.io.dicom_decode.StackImage`: the float32 voxels in SimpleITK's
    (z, y, x) order with their geometry, which :func:`lvp.io.volume.canonical_volume` reads as it
    reads a SimpleITK image. Each file's pixels are rescaled straight into that array as the file
    is read, and the stack is sorted by position in place: the read holds one full-size array.
    """
    if info.modality and info.modality != "MR":
        raise InputError(f"series {info.uid} has modality {info.modality}; LVP reads MR images (T2-weighted)")
    if len(info.files) == 1 and info.frames > 1:  # an enhanced (multi-frame) MR image
        image, meta = read_enhanced(info.files[0], info.uid, info.headers[0] if info.headers else None)
        meta.update(source_record(info))
        return image, meta
    _check_declared_size(info)
    slices: list[tuple[Path, np.ndarray, np.ndarray, tuple[float, float], tuple[int, int]]] = []
    volume: np.ndarray | None = None
    numbers: list[int | None] = []
    declared: set[int | None] = set()
    acquisitions: set[str] = set()
    for path in info.files:
        try:
            ds = pydicom.dcmread(path)
            pixels = decode_pixels(ds, path)
        except InputError:
            raise  # a compressed syntax no installed decoder reads: named, not "corrupt"
        except Exception as err:  # any decoder failure means the file is unusable
            raise InputError(f"the DICOM file {path} is corrupt or truncated: its pixel data cannot be "
                             f"read ({type(err).__name__}: {err}); re-export the series") from None
        iop, ipp, spacing, shape = _slice_geometry(ds, path)
        if pixels.ndim != 2:
            raise InputError(f"the DICOM file {path} holds a {pixels.ndim}-D frame set; LVP reads one slice per file")
        numbers.append(_int_or_none(ds.get("InstanceNumber")))
        declared.add(_int_or_none(ds.get("ImagesInAcquisition")))
        acquisitions.add(str(ds.get("AcquisitionNumber", "")))
        if volume is None:
            volume = np.empty((len(info.files), *shape), np.float32)  # (slice, row, col) = ITK (z, y, x)
        if pixels.shape == volume.shape[1:]:  # else a mixed series, refused below
            _rescale_into(volume[len(slices)], pixels, ds)
        identity = ds  # the study identity is taken from the last file, as before
        del ds, pixels  # one file's pixels alive at a time
        slices.append((path, iop, ipp, spacing, shape))
    if len(slices) < 2 or volume is None:
        raise InputError(f"series {info.uid} has a single slice; LVP needs a 3-D series")

    ref_iop, _, ref_spacing, ref_shape = slices[0][1], slices[0][2], slices[0][3], slices[0][4]
    for path, iop, _ipp, spacing, shape in slices[1:]:
        same_grid = np.allclose(iop, ref_iop, atol=1e-3) and np.allclose(spacing, ref_spacing, rtol=1e-3)
        if shape != ref_shape or not same_grid:
            raise InputError(
                f"series {info.uid} mixes slices of different size, orientation or pixel spacing "
                f"({slices[0][0].name}: {ref_shape} vs {path.name}: {shape}); it is a mixed series, "
                "export each acquisition separately"
            )
    row, col = ref_iop[:3], ref_iop[3:]
    normal = np.cross(row, col)
    positions = np.array([s[2] @ normal for s in slices])
    order = np.argsort(positions)
    slices = [slices[i] for i in order]
    numbers = [numbers[i] for i in order]
    positions = positions[order]
    steps = np.diff(positions)
    if np.any(steps < 1e-3):
        dup = slices[int(np.argmin(steps)) + 1][0].name
        raise InputError(f"series {info.uid} has two slices at the same position (e.g. {dup}); "
                         "it mixes repeated acquisitions: export one")
    step = float(np.median(steps))
    bad = np.abs(steps - step) > GAP_TOLERANCE * step
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(
            f"series {info.uid} is missing slices: a gap of {steps[i]:.2f} mm between {slices[i][0].name} "
            f"and {slices[i + 1][0].name} where the slice step is {step:.2f} mm (truncated transfer?)"
        )
    warnings = _check_series_ends(info, numbers, declared, acquisitions)
    _reorder_slices(volume, order)
    # DICOM PixelSpacing is (row spacing, column spacing) = (y, x).
    image = StackImage(volume, spacing=(ref_spacing[1], ref_spacing[0], step),
                       origin=tuple(float(v) for v in slices[0][2]),
                       direction=tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel()))
    from lvp.io.dicom_study import study_identity

    meta = {"series_uid": info.uid, "series_description": info.description, "files": len(slices),
            "warnings": warnings, "study": study_identity(identity), **source_record(info)}
    return image, meta
