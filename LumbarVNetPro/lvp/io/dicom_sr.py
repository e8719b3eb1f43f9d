"""DICOM Structured Report (TID 1500 Measurement Report) of an LVP result, written with highdicom.

One measurement group (TID 1501) per disc level found, tracked by a Tracking Identifier and UID
and coded by the disc's concept (:data:`lvp.labels.SEGMENT_CODES`) as finding type and site.
It holds:

* every numeric measurement of ``report.json`` with its UCUM unit and, as SCOORD3D in the input's
  frame of reference, the points it was measured between (``points_lps``; LPS is DICOM's patient
  coordinate system, so they are written as they are);
* every grade as a qualitative evaluation (a coded finding: name = the pathology, value = the grade
  in words, or "not assessable"), and the grade's probability as a number (unit "1") beside it.

LVP's measurement and grade concepts have no DICOM or SNOMED codes, so they use the private coding
scheme ``99LVP`` (declared in the SR's Coding Scheme Identification Sequence). The SR is
"UNVERIFIED": every finding needs a radiologist's confirmation; it is "PARTIAL" when the report is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from lvp import __version__
from lvp.io.dicom_seg import MANUFACTURER, SR_SERIES_NUMBER, SourceSeries, _code, quiet_highdicom
from lvp.labels import SEGMENT_CODES

SCHEME = "99LVP"
SCHEME_NAME = "LumbarVNetPro measurements and grades"
# A fixed UID for LVP as an observing device (UUID-derived, under the 2.25 root).
DEVICE_UID = "2.25.208034972157434839386212963553213357621"

# report.json units -> (UCUM code, meaning).
_UNITS = {"mm": ("mm", "millimeter"), "mm2": ("mm2", "square millimeter"), "mm3": ("mm3", "cubic millimeter"),
          "1": ("1", "no units"), "deg": ("deg", "degree"), "%": ("%", "percent")}


def _concept(value: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning[:64])


def _readable(key: str) -> str:
    """``disc_height_anterior_mm`` -> ``Disc height anterior``."""
    words = key.split("_")
    if words and words[-1] in ("mm", "mm2", "mm3", "deg"):
        words = words[:-1]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _unit(unit: str) -> Any:
    from highdicom.sr import CodedConcept

    code, meaning = _UNITS.get(unit, (unit, unit))
    return CodedConcept(value=code, scheme_designator="UCUM", meaning=meaning)


def measurement_concept(key: str) -> Any:
    """The coded concept name of a report.json measurement key."""
    return _concept(key, _readable(key))


def grade_concept(pathology: str) -> Any:
    """The concept name of a pathology's grade (the qualitative evaluation's question)."""
    return _concept(f"grade_{pathology}", f"{_readable(pathology)} grade")


def probability_concept(pathology: str) -> Any:
    """The concept name of the probability of a pathology's grade."""
    return _concept(f"p_{pathology}", f"Probability of the {_readable(pathology).lower()} grade")


def _grade_value(pathology: str, grade: dict) -> Any:
    if grade.get("grade") is None:
        status = str(grade.get("status") or grade.get("name") or "not assessable")
        return _concept(status.replace(" ", "_"), status[:1].upper() + status[1:])
    return _concept(f"{pathology}_{int(grade['grade'])}", str(grade.get("name") or f"grade {grade['grade']}"))


def _measurements(level: dict, frame_uid: str) -> list:
    from highdicom.sr import CoordinatesForMeasurement3D, GraphicTypeValues3D, Measurement

    out = []
    for key, m in (level.get("measurements") or {}).items():
        value = m.get("value") if isinstance(m, dict) else None
        if value is None:
            continue  # not measured: no number is written for it
        points = np.asarray(m.get("points_lps") or [], dtype=float).reshape(-1, 3)
        coords = None
        if len(points) == 1:
            coords = [CoordinatesForMeasurement3D(GraphicTypeValues3D.POINT, points, frame_uid)]
        elif len(points) >= 2:
            coords = [CoordinatesForMeasurement3D(GraphicTypeValues3D.POLYLINE, points, frame_uid)]
        out.append(Measurement(name=measurement_concept(key), value=float(value), unit=_unit(str(m.get("unit", "1"))),
                               referenced_coordinates=coords))
    return out


def _grades(level: dict) -> tuple[list, list]:
    from highdicom.sr import Measurement, QualitativeEvaluation

    evaluations, probabilities = [], []
    for pathology, grade in (level.get("grades") or {}).items():
        if not isinstance(grade, dict):
            continue
        evaluations.append(QualitativeEvaluation(grade_concept(pathology), _grade_value(pathology, grade)))
        if grade.get("confidence") is not None:
            probabilities.append(Measurement(name=probability_concept(pathology), value=float(grade["confidence"]),
                                             unit=_unit("1")))
    return evaluations, probabilities


def measurement_groups(report: dict, frame_uid: str) -> list:
    """One TID 1501 group per level of ``report``, every expected level included: a level not found
    has no measurements and each of its grades is the finding "Not found" (never left out silently).
    """
    from highdicom.sr import FindingSite, MeasurementsAndQualitativeEvaluations, TrackingIdentifier

    groups = []
    algorithm = _algorithm()
    for level in report.get("levels") or []:
        codes = SEGMENT_CODES.get(str(level["level"]))
        evaluations, probabilities = _grades(level)
        measurements = _measurements(level, frame_uid) + probabilities
        if not measurements and not evaluations:
            continue
        groups.append(MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier=f"{level['level']} disc"),
            finding_type=_code(codes.type) if codes else None,
            finding_sites=[FindingSite(_code(codes.type))] if codes else None,
            algorithm_id=algorithm,
            measurements=measurements or None,
            qualitative_evaluations=evaluations or None,
        ))
    return groups


def _algorithm() -> Any:
    from highdicom.sr import AlgorithmIdentification

    return AlgorithmIdentification(name="LumbarVNetPro", version=__version__)


def _coding_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "LumbarVNetPro developers"
    return item


def write_dicom_sr(report: dict, source: SourceSeries, path: str | Path) -> Dataset:
    """Write the measurement report of ``report`` (a validated report.json) as a Comprehensive 3D SR
    in the source series' study; return the data set written.
    """
    import highdicom as hd
    from pydicom.sequence import Sequence
    from pydicom.sr.codedict import codes

    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name="LumbarVNetPro", manufacturer_name=MANUFACTURER, model_name=f"LVP {__version__}"),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=measurement_groups(report, source.frame_of_reference_uid),
        title=codes.DCM.ImagingMeasurementReport,
    )
    with quiet_highdicom():
        sr = hd.sr.Comprehensive3DSR(
            evidence=source.datasets,
            content=content[0],
            series_instance_uid=generate_uid(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=report.get("status") == "complete",
            is_final=False,
            is_verified=False,
            series_description="LVP measurements and grades (research use)",
        )
    sr.CodingSchemeIdentificationSequence = Sequence([_coding_scheme()])
    sr.save_as(str(path), enforce_file_format=True)
    return sr

