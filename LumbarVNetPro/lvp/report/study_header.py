"""The patient/study header of report.html: the identity a reader checks before reading a result.

Rows only for what ``report["study"]`` holds (DICOM input); nothing for NIfTI/NRRD/MHA input,
which carries no identity. Every value is HTML-escaped.
"""

from __future__ import annotations

# (DICOM keyword, row label), in the order a reader checks them.
ROWS: tuple[tuple[str, str], ...] = (
    ("PatientName", "Patient"),
    ("PatientID", "Patient ID"),
    ("AccessionNumber", "Accession"),
    ("StudyDate", "Study date"),
    ("StudyDescription", "Study"),
    ("SeriesDescription", "Series"),
    ("StudyInstanceUID", "Study UID"),
    ("SeriesInstanceUID", "Series UID"),
)


def _display(keyword: str, value: str) -> str:
    if keyword.endswith("Date") and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    if keyword == "PatientName":  # FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX -> "FAMILY, GIVEN MIDDLE"
        parts = [p for p in value.split("=")[0].split("^")]
        family, rest = parts[0], " ".join(p for p in parts[1:3] if p)
        return f"{family}, {rest}" if family and rest else family or rest
    return value


def study_items(report: dict) -> list[tuple[str, str]]:
    """``(label, value)`` of the report's study identity, for display (not escaped); empty without one."""
    study = report.get("study") or {}
    return [(label, _display(key, str(study[key]))) for key, label in ROWS if study.get(key)]
