"""Per-level grade rows: the AI grade shown, the reader's grade, and accepted / modified.

Pure Python (no MRML): the scene module writes these rows into a ``vtkMRMLTableNode`` and the
widget into a Qt table; the reading module sends them to the reading database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from lvp.scales import READ_PATHOLOGIES, SCALES, measurement_words

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
# Row states shown in the panel (:attr:`GradeRow.state`).
UNREVIEWED = "unreviewed"  # an AI grade the reader has not accepted or changed yet
GRADED = "graded"  # a reader grade without an AI grade (manual arm, or AI "not assessable")
UNGRADED = "not graded"  # neither
NOT_ASSESSABLE = "not assessable"  # the AI gave no grade; it says why in the row's note


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
    # Why the AI gave no grade, or what limits it (report.json "reasons"), for the reader.
    note: str = ""
    # True: the grade's probabilities are calibrated on graded data; False: a heuristic rule;
    # None: the report does not say.
    calibrated: bool | None = None

    @property
    def decision(self) -> str | None:
        """``accepted``/``modified`` against the AI grade; None without an AI grade or reader grade.

        A row is accepted only by the reader: an AI grade nobody has confirmed has no decision
        (it is :data:`UNREVIEWED`), and submitting a read needs every row decided.
        """
        if self.ai_grade is None or self.reader_grade is None:
            return None
        return ACCEPTED if self.reader_grade == self.ai_grade else MODIFIED

    @property
    def state(self) -> str:
        """What the panel shows in the decision column: accepted, modified, unreviewed, graded..."""
        if self.decision is not None:
            return self.decision
        if self.ai_grade is not None:
            return UNREVIEWED
        if self.reader_grade is not None:
            return GRADED
        return NOT_ASSESSABLE if self.note else UNGRADED

    def accept(self) -> None:
        """The reader accepts the AI grade (a ``ValueError`` when there is none to accept)."""
        if self.ai_grade is None:
            raise ValueError(f"{self.level} {pathology_title(self.pathology)}: the AI gave no grade to accept")
        self.reader_grade = self.ai_grade

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
            for k in ("level", "pathology", "ai_grade", "confidence", "value", "reader_grade", "ai_level", "calibrated")
        }
        return cls(measurement=data.get("measurement") or "", note=data.get("note") or "", **fields)


def _reasons_text(grade: dict) -> str:
    """The reasons a report.json object gives (``reasons`` list or ``reason`` string), as one line.

    A leading "not assessable:" is dropped: the panel says that itself.
    """
    for key in ("reasons", "reason"):
        value = grade.get(key)
        if isinstance(value, (list, tuple)):
            text = "; ".join(str(v) for v in value if v)
        else:
            text = str(value) if value else ""
        if text:
            for prefix in ("not assessable:", "not assessable"):
                if text.lower().startswith(prefix):
                    text = text[len(prefix):].strip()
                    break
            return text or "not assessable"
    return ""


def _calibrated(grade: dict) -> bool | None:
    """Whether a report.json grade's confidence is calibrated (``confidence_kind``, report 1.2).

    None when the report does not say (older reports).
    """
    kind = grade.get("confidence_kind")
    if kind in ("calibrated", "heuristic"):
        return kind == "calibrated"
    value = grade.get("calibrated")
    return value if isinstance(value, bool) else None


def rows_from_report(report: dict, pathologies: Iterable[str] = PATHOLOGIES) -> list[GradeRow]:
    """AI grade rows of every level in a ``report.json``; no reader grade yet (unreviewed).

    A grade the AI could not give ("not assessable": ``grade`` null, with its reasons) is a row
    too, without an AI grade and with the reasons as its note, so the reader grades it and sees
    why the AI did not. Keys a report lacks are read as absent, never guessed.
    """
    rows = []
    wanted = list(pathologies)
    for level in report.get("levels", []):
        for pathology in wanted:
            grade = (level.get("grades") or {}).get(pathology)
            if not isinstance(grade, dict):
                continue
            value = grade.get("grade")
            note = _reasons_text(grade)
            withheld = grade.get("status") in ("not assessable", "not found")
            if value is None and not note and not withheld:
                continue  # no grade and no word why: nothing to show for this pathology
            if value is None and not note:
                note = str(grade.get("status"))
            rows.append(
                GradeRow(
                    level=level["level"],
                    pathology=pathology,
                    ai_grade=None if value is None else int(value),
                    confidence=None if value is None else grade.get("confidence"),
                    measurement=grade.get("measurement") or "",
                    value=grade.get("value"),
                    note=note,
                    calibrated=_calibrated(grade),
                )
            )
    return rows


def numbering_note(report: dict) -> str:
    """A warning line when the report says its level numbering is not confident, else ``""``.

    report.json's ``numbering`` object (``{"confident": bool, "reasons": [...]}``) is optional.
    """
    numbering = report.get("numbering")
    if not isinstance(numbering, dict) or numbering.get("confident", True) is not False:
        return ""
    reasons = _reasons_text(numbering)
    text = "Level numbering is uncertain: check the level labels before grading"
    return f"{text} ({reasons})." if reasons else f"{text}."


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
        # An accepted grade follows the new AI grade; an unreviewed row stays unreviewed; a
        # modified one (or a grade the reader gave where the AI had none) is kept.
        follows = before.decision != MODIFIED and not (before.ai_grade is None and before.reader_grade is not None)
        if before.decision == ACCEPTED:
            row.reader_grade = row.ai_grade
        elif not follows:
            row.reader_grade = before.reader_grade
        moved = before.level != row.level
        # Keep the level the AI first graded the row as, across renames (the reading database
        # pairs the reader's grade with the AI grade shown at that level).
        # A row the AI gave no grade ("not assessable") has no AI grade to pair with.
        origin = before.ai_level or before.level
        row.ai_level = origin if origin != row.level and before.ai_grade is not None else None
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
        line = f"{c.level} {pathology_title(c.pathology)}: {old} → {new}"
        if c.old_level:
            line += f" (level renamed from {c.old_level})"
        same_grade = c.old_grade == c.new_grade and c.old_value != c.new_value
        if same_grade and c.old_value is not None and c.new_value is not None:
            line += f" ({c.old_value:.1f} → {c.new_value:.1f})"
        if not c.reader_followed and c.old_grade is not None and c.new_grade is not None:
            line += " (your grade kept)"
        lines.append(line)
    return lines


def pathology_title(pathology: str) -> str:
    """The reader's name of a pathology key (``lateral_recess_left`` -> "Lateral recess stenosis, left")."""
    scale = SCALES.get(pathology)
    return scale.title if scale is not None else str(pathology).replace("_", " ").capitalize()


def confidence_text(row: GradeRow) -> str:
    """The confidence as shown: ``"0.81"``, marked ``(calibrated)`` or ``(heuristic)`` when the report says."""
    if row.confidence is None:
        return ""
    mark = {True: " (calibrated)", False: " (heuristic)"}.get(row.calibrated, "")
    return f"{row.confidence:.2f}{mark}"


def table_cells(row: GradeRow) -> list[str]:
    """The read-only cells of a row in the panel's table: level, pathology, AI grade, confidence, measurement.

    Names are the reader's (no internal keys); a grade the AI could not give shows its reasons.
    """
    ai = grade_name(row.pathology, row.ai_grade)
    if row.ai_grade is None and row.note:
        ai = f"not assessable: {row.note}" if row.note != "not assessable" else "not assessable"
    return [
        row.level,
        pathology_title(row.pathology),
        ai,
        confidence_text(row),
        measurement_words(row.measurement, row.value),
    ]


def grade_choices(pathology: str) -> list[tuple[str, int]]:
    """``(label, grade)`` of every allowed grade, e.g. ``("2 protrusion", 2)``, for a combo box."""
    return [(f"{grade} {grade_name(pathology, grade)}", grade) for grade in grade_values(pathology)]
