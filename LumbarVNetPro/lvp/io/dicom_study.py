"""Study identity of a DICOM input: the attributes that tie a result to its patient and study.

``report.json`` carries them (``"study"``) so a result can be filed back into the PACS and a
reader can check it belongs to the patient on the screen. Only attributes the input actually
holds (present and non-empty) are copied: a missing accession number stays missing rather than
becoming an empty string that looks like a real, blank value.
"""

from __future__ import annotations

from typing import Any

# DICOM keywords copied into report.json, in the order a reader checks them.
STUDY_KEYWORDS: tuple[str, ...] = (
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyDate",
    "SeriesDate",
    "StudyDescription",
    "SeriesDescription",
)


def study_identity(ds: Any) -> dict[str, str]:
    """The study/patient identity attributes a pydicom data set holds, as plain strings.

    Absent or empty attributes are left out (never written as ``""``); a person name is written
    in its DICOM form (``FAMILY^GIVEN``).
    """
    out: dict[str, str] = {}
    for keyword in STUDY_KEYWORDS:
        value = ds.get(keyword) if hasattr(ds, "get") else None
        if value is None:
            continue
        text = str(value).strip()
        if text:
            out[keyword] = text
    return out
