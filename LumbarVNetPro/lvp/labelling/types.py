"""The result of the level labelling: :class:`Instance` (one vertebra or disc) and :class:`Labelling`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lvp.planes import DiscPlane


class DuplicateLevelError(ValueError):
    """Two structures of one case carry the same level name (never allowed in a result)."""


@dataclass
class Instance:
    """One labelled vertebra or disc."""

    name: str
    label: int  # TotalSpineSeg value, 0 when the level has no value (above T11)
    centroid_lps: np.ndarray
    voxels: int
    confidence: float
    kind: str = "vertebra"  # "vertebra", "sacrum" or "disc"
    plane: DiscPlane | None = None  # discs only: the fitted mid-plane
    body_depth_mm: float = float("nan")  # vertebrae only: AP depth of the body
    # Vertebrae only: centroid of the bone in front of the canal (the body without the posterior
    # elements), as body-only references (Chu VB) define a level's position; None without a canal.
    body_centroid_lps: np.ndarray | None = None

    def to_dict(self) -> dict:
        """Plain-JSON form (a ``structures`` entry of report.json, without the volume)."""
        return {
            "label": int(self.label),
            "name": self.name,
            "kind": self.kind,
            "center_lps": [float(v) for v in self.centroid_lps],
            "voxels": int(self.voxels),
            "confidence": float(self.confidence),
        }


@dataclass
class Labelling:
    """The result of :func:`label_levels`."""

    labels: np.ndarray  # uint8, canonical grid, TotalSpineSeg values (all below 256)
    vertebrae: list[Instance] = field(default_factory=list)  # cranial -> caudal, sacrum last
    discs: list[Instance] = field(default_factory=list)  # cranial -> caudal
    warnings: list[dict] = field(default_factory=list)
    # Internal: instance id map on the cropped grid, for measurements.
    crop: tuple[slice, slice, slice] | None = None
    # The numbering check (report.json ``numbering``): {"confident": bool, "reasons": [str, ...]}.
    numbering: dict | None = None
    # What the numbering rests on (lvp.labelling.numbering reads it): the anchor ("sacrum_class",
    # "sacrum_bone", "label_map" or None), whether the model has a sacrum class, remnants dropped...
    facts: dict = field(default_factory=dict)

    def disc(self, name: str) -> Instance | None:
        """The disc called ``name``, or None."""
        return next((d for d in self.discs if d.name == name), None)

    def vertebra(self, name: str) -> Instance | None:
        """The vertebra called ``name`` (or ``"sacrum"``), or None."""
        return next((v for v in self.vertebrae if v.name == name), None)

    def duplicate_names(self) -> list[str]:
        """Level names given to more than one vertebra or disc (an empty list when all are unique)."""
        names = [i.name for i in (*self.vertebrae, *self.discs)]
        return sorted({n for n in names if names.count(n) > 1})

    def check_unique_names(self) -> None:
        """The invariant that every level name occurs once: :class:`DuplicateLevelError` otherwise."""
        dup = self.duplicate_names()
        if dup:
            raise DuplicateLevelError(f"level name(s) {', '.join(dup)} given to more than one structure")

    def warn(self, code: str, message: str) -> None:
        """Add a warning (codes are stable strings, messages are for people)."""
        self.warnings.append({"code": code, "message": message})
