"""The study's reads as columns: what :func:`lvp.readingdb.admin.export_columns` returns.

The analysis works on numpy columns, not one dict per grade: a 1,522-patient, 10-reader study has
456,600 grades. :func:`columns_from_rows` builds the same columns from exported rows (the CSV/JSON
of ``lvp study export``), so a report can also be made from an export file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np

ARM_NAMES = ("manual", "ai_assisted")


def _num(v: object) -> float:
    return np.nan if v in (None, "") else float(v)


def _int(v: object, missing: int = -1) -> int:
    return missing if v in (None, "") else int(float(v))


def _time(v: object) -> np.datetime64:
    if v in (None, ""):
        return np.datetime64("NaT", "s")
    return np.datetime64(datetime.fromisoformat(str(v)), "s")


def _sorted_codes(codes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """Names sorted, and old code -> new code."""
    names = sorted(codes)
    remap = np.zeros(len(codes), dtype=np.int32)
    for new, name in enumerate(names):
        remap[codes[name]] = new
    return names, remap


def columns_from_rows(rows: Iterable[dict], study: str = "", washout_days: int | None = None) -> dict:
    """Columns (see :func:`lvp.readingdb.admin.export_columns`) from exported rows (dicts).

    Enrolment is not in an export: readers and cases are those with reads.
    """
    readers: dict[str, int] = {}
    cases: dict[str, int] = {}
    levels: dict[str, int] = {}
    pathologies: dict[str, int] = {}
    read_index: dict[tuple, int] = {}
    reads: dict[str, list] = {k: [] for k in ("reader", "case", "arm", "session", "first_duration_s",
                                              "started_at", "submitted_at", "corrected")}
    g: dict[str, list] = {k: [] for k in ("read", "level", "pathology", "grade", "measurement", "ref",
                                          "ref_meas", "ai")}
    for r in rows:
        rdr = readers.setdefault(r["reader"], len(readers))
        case = cases.setdefault(r["case_key"], len(cases))
        arm = ARM_NAMES.index(r["arm"])
        key = (rdr, case, arm)
        if key not in read_index:
            read_index[key] = len(reads["reader"])
            reads["reader"].append(rdr)
            reads["case"].append(case)
            reads["arm"].append(arm)
            reads["session"].append(_int(r.get("session"), 0))
            reads["first_duration_s"].append(_num(r.get("first_duration_s")))
            # The export carries the newest version's dates; for an uncorrected read that is the original.
            reads["started_at"].append(_time(r.get("started_at")))
            reads["submitted_at"].append(_time(r.get("submitted_at")))
            reads["corrected"].append(_int(r.get("version"), 1) > 1)
        g["read"].append(read_index[key])
        g["level"].append(levels.setdefault(r["level"], len(levels)))
        g["pathology"].append(pathologies.setdefault(r["pathology"], len(pathologies)))
        g["grade"].append(int(r["reader_grade"]))
        g["measurement"].append(_num(r.get("measurement")))
        g["ref"].append(_int(r.get("reference_grade")))
        g["ref_meas"].append(_num(r.get("reference_measurement")))
        g["ai"].append(_int(r.get("ai_grade")))
    # Codes in name order, as the database export has them (the case bootstrap draws by code).
    reader_names, reader_map = _sorted_codes(readers)
    case_names, case_map = _sorted_codes(cases)
    rd = {
        "reader": reader_map[np.array(reads["reader"], dtype=np.int32)],
        "case": case_map[np.array(reads["case"], dtype=np.int32)],
        "arm": np.array(reads["arm"], dtype=np.int8), "session": np.array(reads["session"], dtype=np.int16),
        "first_duration_s": np.array(reads["first_duration_s"], dtype=float),
        "started_at": np.array(reads["started_at"], dtype="datetime64[s]"),
        "submitted_at": np.array(reads["submitted_at"], dtype="datetime64[s]"),
        "corrected": np.array(reads["corrected"], dtype=bool),
    }
    read = np.array(g["read"], dtype=np.int32)
    grades = {"read": read, "reader": rd["reader"][read], "case": rd["case"][read], "arm": rd["arm"][read],
              "session": rd["session"][read], "level": np.array(g["level"], dtype=np.int16),
              "pathology": np.array(g["pathology"], dtype=np.int16), "grade": np.array(g["grade"], dtype=np.int16),
              "measurement": np.array(g["measurement"]), "ref": np.array(g["ref"], dtype=np.int16),
              "ref_meas": np.array(g["ref_meas"]), "ai": np.array(g["ai"], dtype=np.int16)}
    return {"study": study, "washout_days": washout_days, "readers": reader_names, "cases": case_names,
            "levels": list(levels), "pathologies": list(pathologies), "grades": grades, "reads": rd,
            "design": None}
