"""``summary.csv`` of a batch: one row per level of every case (one row for a case without levels).

Columns: ``case``, ``status`` (of the case), ``level``, ``level_status`` (e.g. "found" / "not
found", when the report says), ``level_confidence``, then for each grade found in the
batch ``<grade>`` (its name, e.g. "mild"), ``<grade>_grade`` (the number) and
``<grade>_probability`` (the probability of that grade), then every measurement's value
(``<measurement>``, units in the name), then ``numbering_confident``, ``warnings`` (codes) and
``error``, ``input`` and ``output``.

Spreadsheet programs run a cell starting with ``=``, ``+``, ``-`` or ``@`` (or tab / carriage
return) as a formula, and case names come from file names anyone can choose: such text cells are
written with a leading apostrophe (OWASP's "CSV injection" advice). Numbers are written as
numbers. The file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lvp.csv_safe import safe_cell


def escape_cell(value: Any) -> Any:
    """A summary cell: empty for None, yes/no for booleans, text made formula-safe (:func:`safe_cell`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return safe_cell(value if isinstance(value, (int, float)) else str(value))


def _case_name(result: dict) -> str:
    return Path(result.get("output") or result.get("input") or "case").name


def summary_rows(results: list[dict]) -> tuple[list[str], list[dict]]:
    """The header and the rows (not yet escaped) of the summary of ``results`` (lvp infer cases)."""
    grade_names: list[str] = []
    measure_names: list[str] = []
    for r in results:
        for lv in (r.get("report") or {}).get("levels", []):
            grade_names += [g for g in lv.get("grades", {}) if g not in grade_names]
            measure_names += [m for m in lv.get("measurements", {}) if m not in measure_names]
    header = ["case", "status", "level", "level_status", "level_confidence"]
    for g in grade_names:
        header += [g, f"{g}_grade", f"{g}_probability"]
    header += measure_names + ["numbering_confident", "warnings", "error", "input", "output"]
    rows = []
    for r in results:
        report = r.get("report") or {}
        numbering = report.get("numbering") or {}
        base = {"case": _case_name(r), "status": r.get("status"), "error": r.get("error"),
                "input": r.get("input"), "output": r.get("output"),
                "numbering_confident": numbering.get("confident") if numbering else None,
                "warnings": " ".join(str(w.get("code", "")) for w in report.get("warnings", []))}
        levels = report.get("levels") or []
        if not levels:
            rows.append(base)
        for lv in levels:
            row = dict(base, level=lv.get("level"), level_status=lv.get("status"),
                       level_confidence=lv.get("confidence"))
            for g, grade in (lv.get("grades") or {}).items():
                row[g] = grade.get("name")
                row[f"{g}_grade"] = grade.get("grade")
                row[f"{g}_probability"] = grade.get("confidence")
            for m, meas in (lv.get("measurements") or {}).items():
                row[m] = meas.get("value") if isinstance(meas, dict) else meas
            rows.append(row)
    return header, rows


def _remove_dead_temporaries(path: Path) -> None:
    """Remove ``.tmp-<pid>-summary.csv`` files that killed runs left (their process is gone)."""
    from lvp.io.result_folder import pid_alive

    for tmp in path.parent.glob(f".tmp-*-{path.name}"):
        pid = tmp.name[len(".tmp-"):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def write_summary_csv(results: list[dict], path: Path) -> Path:
    """Write the batch summary to ``path`` (atomically); return it."""
    header, rows = summary_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: escape_cell(row.get(k)) for k in header})
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
