"""A DICOM series writer for the tests: turns a NIfTI test image into a real MR series on disk.

Test-only (issue 12 item 4): the product reads DICOM series and writes DICOM SEG/SR, never
image series, so this lives beside the tests rather than in ``lvp.io.dicom``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def write_series(image: sitk.Image, folder: str | Path, *, series_description: str = "SAG T2",
                 modality: str = "MR", patient_id: str = "ANON", series_uid: str | None = None,
                 echo_time: float = 100.0, repetition_time: float = 3000.0) -> str:
    """Write a 3-D image as a DICOM series (one file per slice along ITK axis z).

    Intensities are stored as unsigned 16-bit with a rescale slope/intercept so floating-point
    images survive the round trip.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.round((arr - lo) / slope).astype(np.uint16)
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
        ds.PatientName = patient_id
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
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{lo:.10g}"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return series_uid
