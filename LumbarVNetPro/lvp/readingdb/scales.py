"""Ordinal grading scales of the pathologies the AI grades, and their clinical positive thresholds.

Pathologies and levels are stored as plain strings in the database (no enums in the schema), so a
new pathology only needs a row here. ``positive_at`` is the lowest grade counted as clinically
positive; it dichotomises grades for sensitivity / specificity and defines the reference-standard
truth for ROC analysis (the AUC score is the ordinal grade itself).

==========================  =======  ===================================================  ========
pathology                   grades   meaning                                              positive
==========================  =======  ===================================================  ========
``herniation``              0-3      0 none, 1 bulge, 2 protrusion, 3 extrusion           >= 2
``canal_stenosis``          0-3      0 none, 1 mild, 2 moderate, 3 severe                 >= 2
``lateral_recess_left``     0-3      0 none, 1 mild, 2 moderate, 3 severe                 >= 2
``lateral_recess_right``    0-3      0 none, 1 mild, 2 moderate, 3 severe                 >= 2
``pfirrmann``               1-5      Pfirrmann disc degeneration grade I-V                >= 4
==========================  =======  ===================================================  ========
"""

from __future__ import annotations

from dataclasses import dataclass

from lvp.errors import DatabaseError

ARMS = ("manual", "ai_assisted")
"""Reading arms: ``manual`` (AI output hidden) and ``ai_assisted`` (AI grades shown)."""


@dataclass(frozen=True)
class Scale:
    """An ordinal grading scale: allowed grades, their names and the clinical positive threshold."""

    labels: tuple[str, ...]
    first_grade: int
    positive_at: int

    @property
    def grades(self) -> tuple[int, ...]:
        """All allowed grades in increasing order."""
        return tuple(range(self.first_grade, self.first_grade + len(self.labels)))

    def is_positive(self, grade: int) -> bool:
        """Whether ``grade`` is clinically positive (at or above the threshold)."""
        return grade >= self.positive_at


_SEVERITY = ("none", "mild", "moderate", "severe")

SCALES: dict[str, Scale] = {
    "herniation": Scale(("none", "bulge", "protrusion", "extrusion"), 0, 2),
    "canal_stenosis": Scale(_SEVERITY, 0, 2),
    "lateral_recess_left": Scale(_SEVERITY, 0, 2),
    "lateral_recess_right": Scale(_SEVERITY, 0, 2),
    "pfirrmann": Scale(("I", "II", "III", "IV", "V"), 1, 4),
}


def scale_for(pathology: str) -> Scale:
    """The scale of ``pathology``; unknown names raise :class:`DatabaseError`."""
    try:
        return SCALES[pathology]
    except KeyError:
        raise DatabaseError(
            f"unknown pathology {pathology!r}; known: {', '.join(sorted(SCALES))}"
        ) from None


def check_grade(pathology: str, grade: int) -> int:
    """Return ``grade`` as int if it lies on the pathology's scale, else raise :class:`DatabaseError`."""
    scale = scale_for(pathology)
    if isinstance(grade, bool) or int(grade) != grade or int(grade) not in scale.grades:
        raise DatabaseError(
            f"grade {grade!r} is not on the {pathology} scale {scale.grades[0]}-{scale.grades[-1]}"
        )
    return int(grade)


def check_arm(arm: str) -> str:
    """Return ``arm`` if it is a known reading arm, else raise :class:`DatabaseError`."""
    if arm not in ARMS:
        raise DatabaseError(f"unknown arm {arm!r}; use one of {', '.join(ARMS)}")
    return arm
