"""Ordinal grading scales of the pathologies readers grade, and their clinical positive thresholds.

Pathologies and levels are stored as plain strings in the database (no enums in the schema).
``positive_at`` is the lowest grade counted as clinically positive; it dichotomises grades for
sensitivity / specificity and defines the reference-standard truth for ROC analysis (the AUC score
is the ordinal grade itself). The table of scales is in :mod:`lvp.scales`.
"""

from __future__ import annotations

from lvp.errors import DatabaseError
from lvp.scales import READ_PATHOLOGIES, Scale
from lvp.scales import SCALES as _SCALES

ARMS = ("manual", "ai_assisted")
"""Reading arms: ``manual`` (AI output hidden) and ``ai_assisted`` (AI grades shown)."""


# The scales themselves live in :mod:`lvp.scales` (one vocabulary for the report, this database and
# the Slicer panel); the database accepts the pathologies a reader grades.
SCALES: dict[str, Scale] = {p: _SCALES[p] for p in READ_PATHOLOGIES}


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
