"""Per-level grade rows: the AI grade shown, the reader's grade, and accepted / modified.

Pure Python (no MRML): the scene module writes these rows into a ``vtkMRMLTableNode`` and the
widget into a Qt table; the reading module sends them to the reading database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from lvp.scales import READ_PATHOLOGIES, SCALES

# The pathologies a reader grades, in display order, with their grade names: the one vocabulary
# of lvp.scales (dependency-free, so it imports before SQLAlchemy is installed in Slicer).
SCALE_NAMES: dict[str, tuple[str, ...]] = {p: SCALES[p].names for p in READ_PATHOLOGIES}
FIRST_GRADE: dict[str, int] = {p: SCALES[p].first_grade for p in READ_PATHOLOGIES}
PATHOLOGIES: tuple[str, ...] = tuple(SCALE_NAMES)
# Lumbar disc levels graded in a read when no AI output may name them (manual arm).
LUMBAR_LEVELS: tuple[str, ...] = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S")

ACCEPTED = "accepted"
MODIFIED = "modified"
NOT_GRADED = None


def grade_values(pathology: str) -> tuple[int, ...]:
    """The allowed grades of ``pathology`` (e.g. 0-3, Pfirrmann 1-5)."""
    first = FIRST_GRADE.get(pathology, 0)
    return tuple(range(first, first + len(SCALE_NAMES[pathology])))


def grade_name(pathology: str, grade: int | None) -> str:
    """Human name of a grade, e.g. ``("herniation", 2) -> "protrusion"``; ``""`` for no grade."""
    if grade is None:
        return ""
    return SCALE_NAMES[pathology][grade - FIRST_GRADE.get(pathology, 0)]


@dataclass
class GradeRow:
    """One pathology at one level."""

    level: str
    pathology: str
    ai_grade: int | None = None
    confidence: float | None = None
    measurement: str = ""
    value: float | None = None
    reader_grade: int | None = None
    # The level the AI graded this row as, when the reader renamed the level (None: ``level``).
    ai_level: str | None = None

    @property
    def decision(self) -> str | None:
        """``accepted``/``modified`` against the AI grade; None without an AI grade or reader grade."""
        if self.ai_grade is None or self.reader_grade is None:
            return None
        return ACCEPTED if self.reader_grade == self.ai_grade else MODIFIED

    @property
    def key(self) -> tuple[str, str]:
        """``(level, pathology)``."""
        return (self.level, self.pathology)

    def to_dict(self) -> dict:
        """A JSON-ready dict including the decision."""
        data = asdict(self)
        data["decision"] = self.decision
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GradeRow:
        """Inverse of :meth:`to_dict` (the decision is derived, so it is ignored)."""
        fields = {
            k: data.get(k)
            for k in ("level", "pathology", "ai_grade", "confidence", "value", "reader_grade", "ai_level")
        }
        return cls(measurement=data.get("measurement") or "", **fields)


def rows_from_report(report: dict, pathologies: Iterable[str] = PATHOLOGIES) -> list[GradeRow]:
    """AI grade rows of every level in a ``report.json`` (reader grades start at the AI grade).

    Starting the reader grade at the AI grade makes "accept" the default action; a row counts
    as modified only when the reader changes it.
    """
    rows = []
    wanted = list(pathologies)
    for level in report.get("levels", []):
        for pathology in wanted:
            grade = level.get("grades", {}).get(pathology)
            if not grade or grade.get("grade") is None:
                continue
            rows.append(
                GradeRow(
                    level=level["level"],
                    pathology=pathology,
                    ai_grade=int(grade["grade"]),
                    confidence=grade.get("confidence"),
                    measurement=grade.get("measurement") or "",
                    value=grade.get("value"),
                    reader_grade=int(grade["grade"]),
                )
            )
    return rows


def manual_rows(levels: Iterable[str] = LUMBAR_LEVELS, pathologies: Iterable[str] = PATHOLOGIES) -> list[GradeRow]:
    """Empty rows for a manual-arm read: no AI grade, no measurement, reader grade unset."""
    return [GradeRow(level=level, pathology=p) for level in levels for p in pathologies]


@dataclass
class GradeChange:
    """A grade that changed on Recompute (``old_level``: the level's name before a rename)."""

    level: str
    pathology: str
    old_grade: int | None
    new_grade: int | None
    old_value: float | None = None
    new_value: float | None = None
    reader_followed: bool = field(default=False)
    old_level: str | None = None


def apply_recompute(
    rows: list[GradeRow], new_report: dict, renamed: dict[str, str] | None = None
) -> tuple[list[GradeRow], list[GradeChange]]:
    """New rows from a re-graded report, keeping the reader's own changes, and the grade changes.

    A reader grade that still equals the old AI grade (accepted) follows the new AI grade; one
    the reader modified is kept, so Recompute never overwrites a reader's decision. ``renamed``
    maps a level's old name to its new one (a segment the reader renamed, see
    :func:`scene.level_renames`): the rows of the old name carry over to the new name, with the
    reader's grade, and are listed as changed with ``old_level`` set. A row of a level that no
    longer exists is listed as gone (new grade None).
    """
    renamed = {old: new for old, new in (renamed or {}).items() if old != new}
    old: dict[tuple[str, str], GradeRow] = {row.key: row for row in rows if row.level not in renamed}
    displaced = []  # rows whose level name another level took over (its segment was deleted)
    for row in rows:
        if row.level in renamed:
            key = (renamed[row.level], row.pathology)
            if key in old:
                displaced.append(old[key])
            old[key] = row
    new_rows = rows_from_report(new_report, sorted({r.pathology for r in rows}, key=_pathology_order))
    changes = []
    for row in new_rows:
        before = old.get(row.key)
        if before is None:
            changes.append(GradeChange(row.level, row.pathology, None, row.ai_grade, None, row.value, True))
            continue
        follows = before.decision != MODIFIED
        if not follows:
            row.reader_grade = before.reader_grade
        moved = before.level != row.level
        # Keep the level the AI first graded the row as, across renames (the reading database
        # pairs the reader's grade with the AI grade shown at that level).
        origin = before.ai_level or before.level
        row.ai_level = origin if origin != row.level else None
        if moved or before.ai_grade != row.ai_grade or before.value != row.value:
            changes.append(
                GradeChange(
                    row.level,
                    row.pathology,
                    before.ai_grade,
                    row.ai_grade,
                    before.value,
                    row.value,
                    follows,
                    before.level if moved else None,
                )
            )
    seen = {row.key for row in new_rows}
    gone = [before for key, before in old.items() if key not in seen] + displaced
    for before in gone:
        changes.append(GradeChange(before.level, before.pathology, before.ai_grade, None, before.value, None, False))
    return new_rows, changes


def _pathology_order(pathology: str) -> int:
    return PATHOLOGIES.index(pathology) if pathology in PATHOLOGIES else len(PATHOLOGIES)


def missing_grades(rows: Iterable[GradeRow]) -> list[tuple[str, str]]:
    """``(level, pathology)`` of rows the reader has not graded yet (submit is refused then)."""
    return [row.key for row in rows if row.reader_grade is None]


def describe_changes(changes: Iterable[GradeChange]) -> list[str]:
    """One line per grade that Recompute changed, e.g. ``"L4-L5 herniation: bulge → protrusion"``.

    A renamed level shows its new name and ``(level renamed from OLD)``; a level that appeared
    (newly segmented) shows ``— → grade``; one that is gone ``grade → —``; a changed measurement
    with the same grade shows the values. A reader's own grade that was kept is marked.
    """
    lines = []
    for c in changes:
        old = grade_name(c.pathology, c.old_grade) or "—"
        new = grade_name(c.pathology, c.new_grade) or "—"
        line = f"{c.level} {c.pathology}: {old} → {new}"
        if c.old_level:
            line += f" (level renamed from {c.old_level})"
        same_grade = c.old_grade == c.new_grade and c.old_value != c.new_value
        if same_grade and c.old_value is not None and c.new_value is not None:
            line += f" ({c.old_value:.1f} → {c.new_value:.1f})"
        if not c.reader_followed and c.old_grade is not None and c.new_grade is not None:
            line += " (your grade kept)"
        lines.append(line)
    return lines


def table_cells(row: GradeRow) -> list[str]:
    """The read-only cells of a row in the panel's table: level, pathology, AI grade, confidence, measurement."""
    if row.value is None:
        measurement = row.measurement
    else:
        measurement = f"{row.measurement} {row.value:.1f}".strip()
    return [
        row.level,
        row.pathology,
        grade_name(row.pathology, row.ai_grade),
        "" if row.confidence is None else f"{row.confidence:.2f}",
        measurement,
    ]


def grade_choices(pathology: str) -> list[tuple[str, int]]:
    """``(label, grade)`` of every allowed grade, e.g. ``("2 protrusion", 2)``, for a combo box."""
    return [(f"{grade} {grade_name(pathology, grade)}", grade) for grade in grade_values(pathology)]
