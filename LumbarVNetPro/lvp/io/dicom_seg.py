"""DICOM Segmentation (SEG) of LVP's label map, written with highdicom.

One segment per structure present (vertebrae, discs, sacrum, canal), coded from the one table of
segment codes (:data:`lvp.labels.SEGMENT_CODES`), referencing every source image (and so the
source series and its frame of reference). The SEG joins the input's study: highdicom copies the
patient, study and frame-of-reference attributes from the source images.

The source images are the headers the reader kept from its one folder scan
(``meta["dicom_headers"]``, see :func:`lvp.io.dicom.source_record`): writing opens no source file
and scans no folder. Frames are matched to the label map by their position along the slice
normal, the order in which :func:`lvp.io.dicom.read_series` stacked them, so a series stored in
any file order (or one multi-frame enhanced MR object) gets each label slice on its own source
frame.

The label map is mapped back from the canonical grid once, straight into the frames (uint8
segment numbers in the source images' frame order) that highdicom encodes: no source-grid copy
of it is made first. highdicom leaves out the frames where a segment is absent (DICOM allows it;
``omit_empty_frames``, its default); a frame per source slice and present segment is what Slicer
(dcmqi) and PACS viewers read.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from lvp import __version__
from lvp.errors import InputError
from lvp.io.volume import SourceGeometry
from lvp.labels import STRUCTURES, Coding

MANUFACTURER = "LumbarVNetPro"
SEG_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902


@dataclass
class SourceSeries:
    """The source images of a DICOM input: headers (no pixels), and each label slice's frame."""

    datasets: list[pydicom.Dataset]
    # For each (dataset index, frame index within it): the index of its slice in the label map.
    slice_of_frame: dict[tuple[int, int], int]

    @property
    def frame_of_reference_uid(self) -> str:
        """The frame of reference the label map and every point of the report are in."""
        return str(self.datasets[0].FrameOfReferenceUID)


def _frame_positions(ds: pydicom.Dataset) -> list[np.ndarray]:
    """ImagePositionPatient of every frame of ``ds`` (one for a single-frame image)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        return [np.asarray([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
                for item in per_frame]
    return [np.asarray([float(v) for v in ds.ImagePositionPatient])]


def _orientation(ds: pydicom.Dataset) -> np.ndarray:
    if "ImageOrientationPatient" in ds:
        return np.asarray([float(v) for v in ds.ImageOrientationPatient])
    shared = ds.SharedFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" in shared:
        return np.asarray([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    first = ds.PerFrameFunctionalGroupsSequence[0]
    return np.asarray([float(v) for v in first.PlaneOrientationSequence[0].ImageOrientationPatient])


# Patient and General Study attributes of type 2 (present, empty when unknown) that the derived
# objects copy. Anonymised or synthetic inputs often drop them; an empty value is the standard's
# "unknown", never an invented one.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2(ds: pydicom.Dataset) -> pydicom.Dataset:
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _source_headers(meta: dict) -> list[pydicom.Dataset]:
    """The source headers: the reader's own (no I/O), else its files' headers, else a new scan."""
    headers = meta.get("dicom_headers")
    if headers:
        return list(headers)
    files = meta.get("dicom_files")
    if files:
        return [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    # A meta without the reader's record (made by hand): find the series again.
    from lvp.io.dicom import choose_series, scan_folder

    path = Path(meta["path"])
    return choose_series(scan_folder(path if path.is_dir() else path.parent), meta.get("series_uid")).headers


def source_series(meta: dict) -> SourceSeries:
    """The source images of the DICOM series an input volume was read from (``volume.meta``).

    Uses the headers :func:`lvp.io.read.read_volume` kept (``dicom_headers``); reads the
    recorded files' headers, or scans the folder, only for a meta without them.
    """
    if meta.get("format") != "dicom":
        raise InputError("DICOM SEG/SR outputs need a DICOM input series")
    datasets = [_with_type2(ds) for ds in _source_headers(meta)]
    iop = _orientation(datasets[0])
    normal = np.cross(iop[:3], iop[3:])
    # Each data set's frame positions once (an enhanced image's per-frame sequence is long).
    positions = [_frame_positions(ds) for ds in datasets]
    keys = [(d, f) for d, frames in enumerate(positions) for f in range(len(frames))]
    heights = [float(positions[d][f] @ normal) for d, f in keys]
    order = np.argsort(heights, kind="stable")
    return SourceSeries(datasets, {keys[int(i)]: rank for rank, i in enumerate(order)})


@contextmanager
def quiet_highdicom() -> Iterator[None]:
    """Silence highdicom's advice about the source's person-name form (an input property the
    derived objects must copy unchanged, not something the user can act on here), and its INFO
    log of every module it copies (some twenty lines per object on the terminal of ``lvp infer``,
    whose log level is INFO).
    """
    logger = logging.getLogger("highdicom")
    level = logger.level
    if not logger.isEnabledFor(logging.DEBUG):  # lvp -v (DEBUG) keeps them
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
            yield
    finally:
        logger.setLevel(level)


def _code(coding: Coding) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=coding.code, scheme_designator=coding.scheme, meaning=coding.meaning)


def algorithm_identification() -> Any:
    """The algorithm that made the segments (highdicom's Algorithm Identification Sequence)."""
    from highdicom import AlgorithmIdentificationSequence
    from pydicom.sr.codedict import codes

    return AlgorithmIdentificationSequence(name="LumbarVNetPro", version=__version__,
                                           family=codes.cid7162.ArtificialIntelligence)


def _source_view(labels: np.ndarray, geometry: SourceGeometry | None) -> np.ndarray:
    """``labels`` as a (z, y, x) view on the source grid: the canonical map's permutation and flips undone."""
    if geometry is None:
        return labels
    view = geometry.source_view(labels)
    if view.shape[::-1] != tuple(geometry.size):
        raise ValueError(f"labels of shape {labels.shape} do not fit the source grid {geometry.size}")
    return view


def segment_frames(labels: np.ndarray, source: SourceSeries,
                   geometry: SourceGeometry | None = None) -> tuple[np.ndarray, list[int]]:
    """The SEG's label-map frames and the label value of each segment number ``i + 1``.

    ``labels``: LVP label values, on the source grid in SimpleITK (z, y, x) order, or on the
    canonical grid of ``geometry`` (:class:`lvp.io.volume.SourceGeometry`). Returns uint8 segment
    numbers (0 = none), one frame per source frame in the source images' own frame order, made
    in one pass over the label map, and the present label values in increasing order.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"a label map holds integers, not {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 255):
        raise ValueError(f"label values {int(labels.min())}..{int(labels.max())} are not LVP output labels")
    view = _source_view(labels, geometry)
    order = sorted(source.slice_of_frame, key=lambda key: key)  # (dataset, frame): the SEG's frame order
    # np.zeros takes fresh zero pages from the system: the frames of slices without labels (most
    # of a zero-padded full field of view) are never written, so they cost no memory (issue 13).
    frames = np.zeros((len(order), *view.shape[1:]), np.uint8)
    counts = np.zeros(256, np.int64)
    labelled = []
    for i, key in enumerate(order):
        plane = view[source.slice_of_frame[key]]
        if not plane.any():
            continue
        frame = frames[i]
        np.copyto(frame, plane, casting="unsafe")  # exact: 0..255 checked
        counts += np.bincount(frame.ravel(), minlength=256)
        labelled.append(frame)
    values = [int(v) for v in np.flatnonzero(counts) if v != 0]
    unknown = [v for v in values if v not in STRUCTURES]
    if unknown:
        raise ValueError(f"label values {unknown} are not LVP output labels")
    if not values:
        raise ValueError("the label map is empty: no segment to write")
    # Segment numbers 1..N in label order, mapped in place frame by frame.
    lut = np.zeros(256, np.uint8)
    lut[values] = np.arange(1, len(values) + 1, dtype=np.uint8)
    for frame in labelled:
        frame[...] = lut[frame]
    return frames, values


def write_dicom_seg(labels: np.ndarray, source: SourceSeries, path: str | Path, *,
                    geometry: SourceGeometry | None = None) -> list[int]:
    """Write ``labels`` as a binary DICOM SEG; return the label value of each segment, number ``i + 1``.

    ``labels``: LVP label values on the source grid (SimpleITK (z, y, x) order), or on the
    canonical grid of ``geometry`` (a volume's ``source``), mapped back here in the same pass
    that makes the frames.
    """
    import highdicom as hd

    pixels, values = segment_frames(labels, source, geometry)
    algorithm = algorithm_identification()
    descriptions = []
    for number, value in enumerate(values, start=1):
        st = STRUCTURES[value]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=st.name,
            segmented_property_category=_code(st.codes.category),
            segmented_property_type=_code(st.codes.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=generate_uid(),
            tracking_id=f"LVP {st.name}",
            display_color=hd.color.CIELabColor.from_rgb(*(c * 255.0 for c in st.color)),
        ))
    with quiet_highdicom():
        seg = hd.seg.Segmentation(
            source_images=source.datasets,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name="LumbarVNetPro",
            software_versions=__version__,
            device_serial_number="0",
            series_description="LVP segmentation (research use)",
        )
    seg.save_as(str(path))
    return values
