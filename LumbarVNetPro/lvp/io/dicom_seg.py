"""DICOM Segmentation (SEG) of LVP's label map, written with highdicom.

One segment per structure present (vertebrae, discs, sacrum, canal), coded from the one table of
segment codes (:data:`lvp.labels.SEGMENT_CODES`), referencing every source image (and so the
source series and its frame of reference). The SEG joins the input's study: highdicom copies the
patient, study and frame-of-reference attributes from the source images.

The source images are found again from what the reader recorded (``meta["path"]`` and
``meta["series_uid"]``) and their headers read without pixel data. Frames are matched to the
label map by their position along the slice normal, the order in which
:func:`lvp.io.dicom.read_series` stacked them, so a series stored in any file order (or one
multi-frame enhanced MR object) gets each label slice on its own source frame.
"""

from __future__ import annotations

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


def source_series(meta: dict) -> SourceSeries:
    """Read the headers of the DICOM series an input volume was read from (``volume.meta``)."""
    from lvp.io.dicom import choose_series, scan_folder

    if meta.get("format") != "dicom":
        raise InputError("DICOM SEG/SR outputs need a DICOM input series")
    path = Path(meta["path"])
    info = choose_series(scan_folder(path if path.is_dir() else path.parent), meta.get("series_uid"))
    datasets = [_with_type2(pydicom.dcmread(p, stop_before_pixels=True)) for p in info.files]
    iop = _orientation(datasets[0])
    normal = np.cross(iop[:3], iop[3:])
    keys = [(d, f) for d, ds in enumerate(datasets) for f in range(len(_frame_positions(ds)))]
    heights = [float(_frame_positions(datasets[d])[f] @ normal) for d, f in keys]
    order = np.argsort(heights, kind="stable")
    return SourceSeries(datasets, {keys[int(i)]: rank for rank, i in enumerate(order)})


@contextmanager
def quiet_highdicom() -> Iterator[None]:
    """Silence highdicom's advice about the source's person-name form (an input property the
    derived objects must copy unchanged, not something the user can act on here).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        yield


def _code(coding: Coding) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=coding.code, scheme_designator=coding.scheme, meaning=coding.meaning)


def algorithm_identification() -> Any:
    """The algorithm that made the segments (highdicom's Algorithm Identification Sequence)."""
    from highdicom import AlgorithmIdentificationSequence
    from pydicom.sr.codedict import codes

    return AlgorithmIdentificationSequence(name="LumbarVNetPro", version=__version__,
                                           family=codes.cid7162.ArtificialIntelligence)


def write_dicom_seg(source_labels: np.ndarray, source: SourceSeries, path: str | Path) -> list[int]:
    """Write ``source_labels`` (LVP label values, SimpleITK (z, y, x) order on the source grid) as a
    binary DICOM SEG; return the label value of each segment, segment number ``i + 1``.
    """
    import highdicom as hd

    labels = np.asarray(source_labels)
    values = [int(v) for v in np.unique(labels) if v != 0]
    unknown = [v for v in values if v not in STRUCTURES]
    if unknown:
        raise ValueError(f"label values {unknown} are not LVP output labels")
    if not values:
        raise ValueError("the label map is empty: no segment to write")
    # Segment numbers 1..N in label order; frames in the source images' own frame order.
    lut = np.zeros(256, np.uint8)
    for number, value in enumerate(values, start=1):
        lut[value] = number
    frames_of = []
    for d, ds in enumerate(source.datasets):
        n = len(_frame_positions(ds))
        frames_of.append(np.stack([lut[labels[source.slice_of_frame[(d, f)]]] for f in range(n)]))
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
    if len(source.datasets) == 1:
        pixels = frames_of[0]
    else:
        pixels = np.stack([f[0] for f in frames_of])
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
