"""The one vocabulary of grades: pathology keys, ordinal grade values and their human names.

Every part of LVP that names a grade reads it from here: the grading (``report.json``), the
HTML report, the reading database and the Slicer panel. It is dependency-free on purpose (no
NumPy, no SQLAlchemy), so Slicer can import it before the optional packages are installed.

==========================  =======  ===================================================  ========
pathology                   grades   names                                                positive
==========================  =======  ===================================================  ========
``herniation``              0-3      none, bulge, protrusion, extrusion (Fardon 2014)     >= 2
``canal_stenosis``          0-3      none, mild, moderate, severe                         >= 2
``lateral_recess_left``     0-3      none, mild, moderate, severe                         >= 2
``lateral_recess_right``    0-3      none, mild, moderate, severe                         >= 2
``pfirrmann``               1-5      I, II, III, IV, V (Pfirrmann 2001)                   >= 4
``narrowing``               0-1      no narrowing, narrowing (AI only, not read)          >= 1
==========================  =======  ===================================================  ========

``positive_at`` is the lowest grade counted as clinically positive; the reader study uses it to
dichotomise grades. Readers grade :data:`READ_PATHOLOGIES`; the AI also reports ``narrowing``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """An ordinal grading scale: its pathology key, grade names, first grade and positive threshold."""

    key: str
    title: str
    names: tuple[str, ...]
    first_grade: int
    positive_at: int

    @property
    def grades(self) -> tuple[int, ...]:
        """All allowed grades in increasing order (e.g. 0-3, Pfirrmann 1-5)."""
        return tuple(range(self.first_grade, self.first_grade + len(self.names)))

    @property
    def labels(self) -> tuple[str, ...]:
        """The grade names (the reading database's older name for :attr:`names`)."""
        return self.names

    def name(self, grade: int) -> str:
        """The human name of ``grade`` (e.g. 2 -> ``"protrusion"``); a grade off the scale raises ValueError."""
        if isinstance(grade, bool) or int(grade) != grade or int(grade) not in self.grades:
            raise ValueError(f"grade {grade!r} is not on the {self.key} scale {self.grades[0]}-{self.grades[-1]}")
        return self.names[int(grade) - self.first_grade]

    def is_positive(self, grade: int) -> bool:
        """Whether ``grade`` is clinically positive (at or above the threshold)."""
        return grade >= self.positive_at


# One severity vocabulary for the canal and both lateral recesses: grade 0 is "none" everywhere
# (it was "normal" for the recess in the grading only, which made the report disagree with the
# reading database and the panel).
SEVERITY = ("none", "mild", "moderate", "severe")

SCALES: dict[str, Scale] = {
    s.key: s
    for s in (
        Scale("herniation", "Disc herniation", ("none", "bulge", "protrusion", "extrusion"), 0, 2),
        Scale("canal_stenosis", "Central canal stenosis", SEVERITY, 0, 2),
        Scale("lateral_recess_left", "Lateral recess stenosis, left", SEVERITY, 0, 2),
        Scale("lateral_recess_right", "Lateral recess stenosis, right", SEVERITY, 0, 2),
        Scale("pfirrmann", "Pfirrmann disc degeneration", ("I", "II", "III", "IV", "V"), 1, 4),
        Scale("narrowing", "Disc height narrowing", ("no narrowing", "narrowing"), 0, 1),
    )
}
"""Every graded pathology, in reading (display) order."""

PATHOLOGIES: tuple[str, ...] = tuple(SCALES)
"""Every pathology the AI grades, in display order."""

READ_PATHOLOGIES: tuple[str, ...] = ("herniation", "canal_stenosis", "lateral_recess_left",
                                     "lateral_recess_right", "pfirrmann")
"""The pathologies a reader grades (in the panel and the reading database), in display order."""


def scale(pathology: str) -> Scale:
    """The scale of ``pathology``; an unknown key raises KeyError naming the known ones."""
    try:
        return SCALES[pathology]
    except KeyError:
        raise KeyError(f"unknown pathology {pathology!r}; known: {', '.join(SCALES)}") from None


def grade_name(pathology: str, grade: int | None) -> str:
    """Human name of a grade, e.g. ``("herniation", 2) -> "protrusion"``; ``""`` for no grade."""
    if grade is None:
        return ""
    return scale(pathology).name(grade)


# Units a measurement key ends with, and how a reader writes them.
_UNITS = (("_mm2", "mm²"), ("_mm", "mm"), ("_deg", "°"))


def measurement_words(key: str | None, value: float | None) -> str:
    """The measurement behind a grade as a reader reads it, in the HTML report and the Slicer table:
    ``posterior_displacement_mm``, 4.12 -> ``"posterior displacement 4.1 mm"``. The unit is the key's
    suffix; a value with a unit is shown to one decimal, a ratio to two. No value: the name alone;
    neither: ``""``.
    """
    words = str(key or "")
    if not words and value is None:
        return ""
    unit = ""
    for suffix, name in _UNITS:
        if words.endswith(suffix):
            words, unit = words[: -len(suffix)], name
            break
    words = words.replace("_", " ").replace(" ap ", " AP ").strip()
    if value is None:
        return words
    shown = f"{value:.{1 if unit else 2}f}" if isinstance(value, float) else str(value)
    return " ".join(part for part in (words, shown, unit) if part)
