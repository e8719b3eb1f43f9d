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
# A sacrum class, in models whose ``classes`` (models.json) include "4": "sacrum"; the level
# labelling anchors the numbering on it when present (and works without it).
SACRUM = 4
NETWORK_CLASSES: dict[int, str] = {BACKGROUND: "background", VERTEBRA: "vertebra", DISC: "disc", CANAL: "canal"}
# Foreground class names, sacrum included (training validation, evaluation, exported class lists).
CLASS_NAMES: dict[int, str] = {VERTEBRA: "vertebra", DISC: "disc", CANAL: "canal", SACRUM: "sacrum"}

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
# Every vertebra name above the sacrum, cranial to caudal (T1 ... L5, and the L6 of a six-lumbar
# spine): the one order in which vertebrae and discs are counted, renamed and listed.
SPINE_TOP_DOWN: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 13)) + ("L1", "L2", "L3", "L4", "L5", "L6")
# The vertebrae LVP segments (those of VERTEBRA_LABELS), cranial to caudal, for counting levels.
VERTEBRA_ORDER: tuple[str, ...] = SPINE_TOP_DOWN[SPINE_TOP_DOWN.index("T11"):]


@dataclass(frozen=True)
class Coding:
    """One coded concept (scheme SCT: SNOMED CT) as DICOM and Slicer terminologies write it."""

    code: str
    meaning: str
    scheme: str = "SCT"


@dataclass(frozen=True)
class SegmentCodes:
    """The codes of one segment: category, type and type modifier, and where the type is defined.

    ``context_group``: the DICOM PS3.16 context group (CID) that lists the type code, or ``""``
    where no DICOM code exists for the structure (then the SNOMED concept used is named instead).
    """

    category: Coding
    type: Coding
    modifier: Coding | None = None
    context_group: str = ""


# DICOM PS3.16 CID 7150 "Segmentation Property Category": SCT 91723000 "Anatomical Structure".
# (123037004, which LVP wrote before, is SNOMED's "Body structure" hierarchy concept, in no CID.)
CATEGORY = Coding("91723000", "Anatomical Structure")


def _codes(code: str, meaning: str, cid: str) -> SegmentCodes:
    return SegmentCodes(CATEGORY, Coding(code, meaning), None, cid)


# The one table of segment codes, by structure name; io/seg_nrrd.py, the Slicer scene and the
# DICOM writers read it. Source: DICOM PS3.16 (2026), CID 7603 "Vertebra", CID 7604
# "Intervertebral Disc" (both included in CID 7151 "Segmentation Property Type" via CID 7192),
# CID 7151 itself and CID 8134 "Anatomic Structures"; code values and meanings as published there
# (https://dicom.nema.org/medical/dicom/current/output/chtml/part16/sect_CID_7603.html etc.).
# None of these structures takes a modifier (no laterality). Checked code by code in
# Testing/Python/test_labels_codes.py against pydicom's copy of PS3.16.
SEGMENT_CODES: dict[str, SegmentCodes] = {
    "T11": _codes("12989004", "T11 vertebra", "CID 7603"),
    "T12": _codes("23215003", "T12 vertebra", "CID 7603"),
    "L1": _codes("66794005", "L1 vertebra", "CID 7603"),
    "L2": _codes("14293000", "L2 vertebra", "CID 7603"),
    "L3": _codes("36470004", "L3 vertebra", "CID 7603"),
    "L4": _codes("11994002", "L4 vertebra", "CID 7603"),
    "L5": _codes("49668003", "L5 vertebra", "CID 7603"),
    # No concept exists for a sixth lumbar vertebra: the generic "Vertebra" of CID 7151.
    "L6": _codes("51282000", "Vertebra", "CID 7151"),
    "sacrum": _codes("54735007", "Sacrum", "CID 7151"),
    "T11-T12": _codes("1537001", "T11/T12 disc", "CID 7604"),
    "T12-L1": _codes("76206002", "T12/L1 disc", "CID 7604"),
    "L1-L2": _codes("80064006", "L1/L2 disc", "CID 7604"),
    "L2-L3": _codes("67459009", "L2/L3 disc", "CID 7604"),
    "L3-L4": _codes("62551000", "L3/L4 disc", "CID 7604"),
    "L4-L5": _codes("84020006", "L4/L5 disc", "CID 7604"),
    "L5-S": _codes("715056000", "L5/S1 disc", "CID 7604"),
    # The disc below L5 of a six-lumbar spine: no DICOM code; SNOMED's "Intervertebral disc
    # structure of fifth lumbar vertebra" (the disc below L5), which PS3.16 lists among its SNOMED
    # concepts but in no context group.
    "L5-L6": _codes("75782005", "Intervertebral disc structure of fifth lumbar vertebra", ""),
    # The canal TotalSpineSeg labels (dural sac within the bony canal): CID 8134 "Vertebral canal".
    "canal": _codes("61853006", "Vertebral canal", "CID 8134"),
}


@dataclass(frozen=True)
class Structure:
    """One output structure: its label value, display name, colour and codes."""

    value: int
    name: str
    kind: str  # "vertebra", "disc", "canal", "sacrum"
    color: tuple[float, float, float]
    codes: SegmentCodes

    @property
    def coding(self) -> Coding:
        """The segment's type code (see :data:`SEGMENT_CODES`)."""
        return self.codes.type


# Colours: vertebrae in bone shades that alternate so neighbours are told apart, discs in blue
# shades, the canal in yellow.
_BONE = [(0.95, 0.84, 0.57), (0.86, 0.68, 0.45)]
_DISC = [(0.35, 0.55, 0.95), (0.25, 0.75, 0.85)]


def _build() -> dict[int, Structure]:
    table: dict[int, Structure] = {
        CANAL_LABEL: Structure(CANAL_LABEL, "spinal canal", "canal", (1.0, 0.9, 0.2), SEGMENT_CODES["canal"]),
        SACRUM_LABEL: Structure(SACRUM_LABEL, "sacrum", "sacrum", (0.8, 0.55, 0.4), SEGMENT_CODES["sacrum"]),
    }
    for i, (name, value) in enumerate(VERTEBRA_LABELS.items()):
        table[value] = Structure(value, name, "vertebra", _BONE[i % 2], SEGMENT_CODES[name])
    for i, (name, value) in enumerate(DISC_LABELS.items()):
        table[value] = Structure(value, f"{name} disc", "disc", _DISC[i % 2], SEGMENT_CODES[name])
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


def level_of(name: str) -> str:
    """The level a structure name stands for: a disc segment's name without ``" disc"``
    (``"L4-L5 disc" -> "L4-L5"``); other names unchanged. Case is kept.
    """
    return name.removesuffix(" disc")


# Every disc level cranial to caudal, the order report rows are listed in: T1-T2 ... L4-L5, then the
# lowest disc of a six-lumbar spine (L5-L6 above L6-S) after L5-S of a five-lumbar one.
LEVEL_ORDER: tuple[str, ...] = tuple(disc_name_between(a, b) for a, b in zip(SPINE_TOP_DOWN, SPINE_TOP_DOWN[1:])) + (
    "L5-S", "L6-S")
# The discs of a five-lumbar spine counted from the sacrum up (L5-S, L4-L5, ... T1-T2): SPIDER's
# (and MRS IVD's) disc numbering, index 0 being the most caudal disc ("IVD label" 1).
SPINE_DISCS_FROM_BOTTOM: tuple[str, ...] = ("L5-S",) + tuple(
    disc_name_between(a, b) for a, b in zip(SPINE_TOP_DOWN[-3::-1], SPINE_TOP_DOWN[-2::-1]))
# The same numbering over the discs LVP segments (those of DISC_LABELS): L5-S up to T11-T12.
DISCS_FROM_BOTTOM: tuple[str, ...] = tuple(d for d in SPINE_DISCS_FROM_BOTTOM if d in DISC_LABELS)

# The Slicer terminology contexts of the codes above (DICOM PS3.16 CIDs, the lists Slicer ships):
# one pair, written to .seg.nrrd by lvp.io.seg_nrrd and to the scene by LumbarVNetProLib.scene.
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def semantic_classes(labels):  # a numpy integer array in, a uint8 array out
    """A TotalSpineSeg label map (``segmentation.nii.gz``) as network classes of the same shape:
    vertebrae and sacrum -> :data:`VERTEBRA`, discs -> :data:`DISC`, the canal -> :data:`CANAL`,
    anything else (e.g. a cord label) -> :data:`BACKGROUND`.
    """
    import numpy as np  # here: the rest of this module is dependency-free

    out = np.zeros(np.shape(labels), np.uint8)
    out[np.isin(labels, [*VERTEBRA_LABELS.values(), SACRUM_LABEL])] = VERTEBRA
    out[np.isin(labels, list(DISC_LABELS.values()))] = DISC
    out[np.asarray(labels) == CANAL_LABEL] = CANAL
    return out
