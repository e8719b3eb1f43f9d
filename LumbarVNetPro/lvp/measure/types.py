"""Measurement containers (serialised into report.json ``levels[].measurements``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Measurement:
    """One value with its unit and where it was measured (LPS mm points, for drawing)."""

    value: float
    unit: str
    points_lps: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"value", "unit", "points_lps"}`` as in report.json 1.0."""
        return {
            "value": round(float(self.value), 3),
            "unit": self.unit,
            "points_lps": [[round(float(c), 3) for c in p] for p in self.points_lps],
        }


@dataclass
class LevelMeasurements:
    """All measurements of one disc level; missing ones were not measurable (see ``notes``).

    Beyond the values: ``section`` says whether the axial section through the disc is *valid*
    for an axial quantity (the whole dural sac / disc inside a fine enough grid, see
    :func:`lvp.measure.canal.section_facts`), ``cut_by_fov`` whether the field of view cuts the
    disc (then nothing is graded), ``canal_visualised`` False where the canal label vanishes at the
    disc, and ``evidence`` the drawable items (calipers, regions, vectors, coverage) of the report.
    """

    level: str
    disc_label: int
    center_lps: np.ndarray
    items: dict[str, Measurement] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    section: dict = field(default_factory=dict)
    cut_by_fov: bool = False
    canal_visualised: bool | None = None
    evidence: list[dict] = field(default_factory=list)

    def value(self, name: str) -> float | None:
        """The value of a measurement, or None when it was not measured."""
        m = self.items.get(name)
        return None if m is None else float(m.value)

    def add(self, name: str, value: float, unit: str, points: list[list[float]] | None = None) -> None:
        """Record a measurement."""
        self.items[name] = Measurement(float(value), unit, points or [])

    def to_dict(self) -> dict:
        """``{name: {"value", "unit", "points_lps"}}`` (the report's ``measurements`` object)."""
        return {k: m.to_dict() for k, m in self.items.items()}
