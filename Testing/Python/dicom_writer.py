"""A DICOM series writer for the tests: turns a NIfTI test image into a real MR series on disk.

Test-only (issue 12 item 4): the product reads DICOM series and writes DICOM SEG/SR, never
image series, so this lives beside the tests rather than in ``lvp.io.dicom``. Also the tests'
reading of a written DICOM SEG back into label values (:func:`seg_label_values`).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def write_series(image: sitk.Image, folder: str | Path, *, series_description: str = "SAG T2",
                 modality: str = "MR", patient_id: str = "ANON", patient_name: str | None = None,
                 accession_number: str | None = None, series_uid: str | None = None,
                 echo_time: float = 100.0, repetition_time: float = 3000.0,
                 rescale: tuple[float, float] | None = None, signed: bool = False) -> str:
    """Write a 3-D image as a DICOM series (one file per slice along ITK axis z).

    Intensities are stored as unsigned 16-bit with a rescale slope/intercept so floating-point
    images survive the round trip. ``rescale=(slope, intercept)`` stores
    ``(value - intercept) / slope`` instead, exactly (refused unless each is an integer in the
    16-bit range), as ``signed`` 16-bit integers when asked (PixelRepresentation 1).
    ``patient_name`` defaults to ``patient_id``; ``accession_number`` is written only when given.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    if rescale is None:
        stored = np.round((arr - lo) / slope).astype(np.uint16)
    else:
        slope, lo = rescale
        values = (arr - lo) / slope
        kind = np.int16 if signed else np.uint16
        if not (np.array_equal(values, np.round(values)) and values.min() >= np.iinfo(kind).min
                and values.max() <= np.iinfo(kind).max):
            raise ValueError(f"the image is not stored exactly as {np.dtype(kind)} with slope {slope}, intercept {lo}")
        stored = values.astype(kind)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    now = _dt.datetime(2026, 1, 1, 12, 0, 0)
    for k in range(arr.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"IM{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.PatientName = patient_id if patient_name is None else patient_name
        if accession_number is not None:
            ds.AccessionNumber = accession_number
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.ImagesInAcquisition = arr.shape[0]
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.EchoTime = echo_time
        ds.RepetitionTime = repetition_time
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{lo:.10g}"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return series_uid


def seg_label_values(seg, numbers: np.ndarray) -> np.ndarray:
    """The label values of a DICOM SEG's combined segment-number frames, matched by segment name.

    ``seg``: a ``highdicom.seg.Segmentation``; ``numbers``: its frames as segment numbers (e.g.
    ``get_pixels_by_source_instance(..., combine_segments=True)``). A segment whose name is not a
    known structure reads 0.
    """
    from lvp.labels import STRUCTURES

    by_name = {item.SegmentLabel: int(item.SegmentNumber) for item in seg.SegmentSequence}
    lut = np.zeros(256, np.int64)
    for value, st in STRUCTURES.items():
        if st.name in by_name:
            lut[by_name[st.name]] = value
    return lut[numbers]
