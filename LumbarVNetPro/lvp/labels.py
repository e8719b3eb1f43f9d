"""Label values, names, colours and terminology of the structures LVP segments.

Output label values follow TotalSpineSeg: canal 2, T11 31, T12 32, L1-L5 41-45, L6 46,
sacrum 50, discs T11-T12 82, T12-L1 91, L1-L2 92 ... L4-L5 95, L5-S 100. One value is an LVP
extension: the L5-L6 disc of a six-lumbar spine (96), which TotalSpineSeg does not define.

The network itself predicts only the classes of :data:`NETWORK_CLASSES` (vertebra, disc,
canal); the level numbers come from post-processing (:mod:`lvp.labelling`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Network (semantic) classes.
BACKGROUND = 0
VERTEBRA = 1
DISC = 2
CANAL = 3
NETWORK_CLASSES: dict[int, str] = {BACKGROUND: "background", VERTEBRA: "vertebra", DISC: "disc", CANAL: "canal"}

# TotalSpineSeg output values.
CANAL_LABEL = 2
SACRUM_LABEL = 50
VERTEBRA_LABELS: dict[str, int] = {"T11": 31, "T12": 32, "L1": 41, "L2": 42, "L3": 43, "L4": 44, "L5": 45, "L6": 46}
DISC_LABELS: dict[str, int] = {
    "T11-T12": 82,
    "T12-L1": 91,
    "L1-L2": 92,
    "L2-L3": 93,
    "L3-L4": 94,
    "L4-L5": 95,
    "L5-L6": 96,
    "L5-S": 100,
}
# Vertebra names from the cranial end to the sacrum, for counting levels.
VERTEBRA_ORDER: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6")


@dataclass(frozen=True)
class Coding:
    """One SNOMED CT code (scheme SCT) as DICOM and Slicer terminologies write it."""

    code: str
    meaning: str
    scheme: str = "SCT"


@dataclass(frozen=True)
class Structure:
    """One output structure: its label value, display name, colour and terminology."""

    value: int
    name: str
    kind: str  # "vertebra", "disc", "canal", "sacrum"
    color: tuple[float, float, float]
    coding: Coding


_ANATOMICAL_STRUCTURE = Coding("123037004", "Anatomical Structure")
CATEGORY = _ANATOMICAL_STRUCTURE

_VERTEBRA_CODES = {
    "T11": Coding("12989004", "T11 vertebra"),
    "T12": Coding("23215003", "T12 vertebra"),
    "L1": Coding("66794005", "L1 vertebra"),
    "L2": Coding("68310008", "L2 vertebra"),
    "L3": Coding("69536005", "L3 vertebra"),
    "L4": Coding("11994002", "L4 vertebra"),
    "L5": Coding("49668003", "L5 vertebra"),
    # No SNOMED concept exists for a sixth lumbar vertebra: the generic lumbar vertebra concept.
    "L6": Coding("122496007", "Lumbar vertebra"),
}
_DISC_CODE = Coding("360499006", "Intervertebral disc")
_CANAL_CODE = Coding("61496007", "Vertebral canal")
_SACRUM_CODE = Coding("54735007", "Sacrum")

# Colours: vertebrae in bone shades that alternate so neighbours are told apart, discs in blue
# shades, the canal in yellow.
_BONE = [(0.95, 0.84, 0.57), (0.86, 0.68, 0.45)]
_DISC = [(0.35, 0.55, 0.95), (0.25, 0.75, 0.85)]


def _build() -> dict[int, Structure]:
    table: dict[int, Structure] = {
        CANAL_LABEL: Structure(CANAL_LABEL, "spinal canal", "canal", (1.0, 0.9, 0.2), _CANAL_CODE),
        SACRUM_LABEL: Structure(SACRUM_LABEL, "sacrum", "sacrum", (0.8, 0.55, 0.4), _SACRUM_CODE),
    }
    for i, (name, value) in enumerate(VERTEBRA_LABELS.items()):
        table[value] = Structure(value, name, "vertebra", _BONE[i % 2], _VERTEBRA_CODES[name])
    for i, (name, value) in enumerate(DISC_LABELS.items()):
        table[value] = Structure(value, f"{name} disc", "disc", _DISC[i % 2], _DISC_CODE)
    return table


STRUCTURES: dict[int, Structure] = _build()


def structure(value: int) -> Structure:
    """Return the structure of an output label value (``KeyError`` names unknown values)."""
    try:
        return STRUCTURES[int(value)]
    except KeyError:
        raise KeyError(f"label value {value} is not an LVP output label") from None


def disc_name_between(upper: str, lower: str) -> str:
    """Name the disc between two vertebrae, e.g. ``("L5", "sacrum") -> "L5-S"``."""
    return f"{upper}-S" if lower == "sacrum" else f"{upper}-{lower}"
