"""A :class:`~lvp.labelling.Labelling` built from a TotalSpineSeg-valued label map, names as given.

:func:`lvp.labelling.label_levels` numbers the levels itself (counting from the sacrum). After a
reader has corrected a result (renamed a level, re-assigned voxels to another level, erased or
painted a structure) the level names are the reader's and must not be recomputed. This module
takes the label map as it is (canal 2, T11 31, T12 32, L1-L5 41-45, L6 46, sacrum 50, discs 82,
91-96, 100: see :mod:`lvp.labels`) and builds the same :class:`~lvp.labelling.Labelling` the
measurements, grades and scan planes use:

* every vertebra / sacrum value present becomes an :class:`~lvp.labelling.Instance` with its
  voxel centroid, voxel count and body depth (all voxels of the value, whatever their
  connectivity: the reader decided they are that level);
* every disc value present becomes a disc instance with its fitted mid-plane
  (:func:`lvp.planes.fit_disc_plane`); a disc too small to fit a plane keeps ``plane=None`` and
  is listed but not measured (a warning names it);
* nothing is renamed, merged or re-counted. Checks only warn: a level present twice in the order
  (impossible anatomy, e.g. L4 above L3) or a gap between labelled vertebrae.

The numbering check (``numbering``, :mod:`lvp.labelling.numbering`) is made as for the network's
labelling, anchored on the sacrum (50): it is confident only when the sacrum is labelled, the disc
directly above it is L5-S, no disc value marks two separate discs, there is no L6 (46) or L5-L6
disc (96) (transitional anatomy), the levels are in order without gaps and the disc spacing is
regular.

Confidence: ``confidence`` maps label values to the confidence to keep (e.g. the earlier
report's, for levels the reader left untouched); every other level gets 1.0, a reader-confirmed
level. :func:`unchanged_confidences` computes that mapping from an earlier ``lvp infer`` result.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from lvp.errors import InputError
from lvp.io.volume import Volume
from lvp.labelling.grid import _bbox
from lvp.labelling.numbering import finish_numbering
from lvp.labelling.types import Instance, Labelling
from lvp.labelling.vertebrae import _body_depth
from lvp.labels import CANAL_LABEL, DISC_LABELS, SACRUM_LABEL, STRUCTURES, VERTEBRA_LABELS, VERTEBRA_ORDER
from lvp.planes import fit_disc_plane

READER_CONFIDENCE = 1.0

_VERTEBRA_NAMES = {v: k for k, v in VERTEBRA_LABELS.items()}
_DISC_NAMES = {v: k for k, v in DISC_LABELS.items()}
# Cranio-caudal rank of each bone / disc value, for the order check.
_RANK = {VERTEBRA_LABELS[n]: 2 * i for i, n in enumerate(VERTEBRA_ORDER)} | {SACRUM_LABEL: 2 * len(VERTEBRA_ORDER)}
_RANK |= {
    DISC_LABELS["T11-T12"]: 1,
    DISC_LABELS["T12-L1"]: 3,
    DISC_LABELS["L1-L2"]: 5,
    DISC_LABELS["L2-L3"]: 7,
    DISC_LABELS["L3-L4"]: 9,
    DISC_LABELS["L4-L5"]: 11,
    DISC_LABELS["L5-L6"]: 13,
    DISC_LABELS["L5-S"]: 13.5,  # below L5 (rank 12), above L6's disc-less sacrum
}


def check_label_values(labels: np.ndarray, source: str = "label map") -> list[int]:
    """The non-zero values of ``labels``; :class:`InputError` names any value LVP does not define."""
    values = [int(v) for v in np.unique(labels) if v]
    unknown = [v for v in values if v not in STRUCTURES]
    if unknown:
        raise InputError(
            f"{source} holds values that are not LVP/TotalSpineSeg labels: {unknown} (expected canal 2, "
            "T11 31, T12 32, L1-L6 41-46, sacrum 50, discs 82, 91-96, 100)"
        )
    return values


def labelling_from_labels(
    labels: np.ndarray, volume: Volume, confidence: Mapping[int, float] | None = None
) -> Labelling:
    """A :class:`Labelling` of ``labels`` (TotalSpineSeg values on ``volume``'s canonical grid).

    Level names come from the values alone (see the module docstring); ``confidence`` gives the
    confidence of values that keep an earlier one, every other level gets 1.0.
    """
    if labels.shape != volume.shape:
        raise InputError(f"label map shape {labels.shape} differs from the image's {volume.shape}")
    values = check_label_values(labels)
    confidence = dict(confidence or {})
    out = Labelling(labels=np.asarray(labels).astype(np.uint8, copy=True))  # every value checked: all below 256
    if not any(v != CANAL_LABEL for v in values):
        out.warn("empty_segmentation", "The label map holds no vertebra or disc; no levels to measure.")
        return out
    out.crop = _bbox(labels > 0)
    objs = ndimage.find_objects(out.labels)  # (uint8 directly: no full-size int32 copy)
    inferior = volume.affine[:3, 1] / np.linalg.norm(volume.affine[:3, 1])

    def conf(value: int) -> float:
        return round(float(confidence.get(value, READER_CONFIDENCE)), 3)

    for value in values:
        box = objs[value - 1]
        if box is None:  # pragma: no cover - every listed value has voxels
            continue
        mask = out.labels[box] == value
        voxels = int(mask.sum())
        offset = np.array([b.start for b in box], float)
        centroid = volume.index_to_lps(np.argwhere(mask).mean(axis=0) + offset)
        if value in _VERTEBRA_NAMES or value == SACRUM_LABEL:
            sacrum = value == SACRUM_LABEL
            depth = _body_depth(mask, out.labels[box] == CANAL_LABEL, volume.spacing)
            out.vertebrae.append(
                Instance("sacrum" if sacrum else _VERTEBRA_NAMES[value], value, centroid, voxels, conf(value),
                         "sacrum" if sacrum else "vertebra", body_depth_mm=depth)
            )
        elif value in _DISC_NAMES:
            affine = volume.affine.copy()
            affine[:3, 3] = volume.index_to_lps(offset)
            plane = fit_disc_plane(mask, affine, volume.spacing)
            name = _DISC_NAMES[value]
            if plane is None:
                out.warn("disc_not_measurable",
                         f"The {name} disc has too few voxels ({voxels}) to fit its plane; it is not measured.")
            out.discs.append(Instance(name, value, centroid, voxels, conf(value), "disc", plane=plane))
    by_rank = sorted(out.vertebrae + out.discs, key=lambda i: _RANK[i.label])
    out.vertebrae.sort(key=lambda i: _RANK[i.label])
    out.discs.sort(key=lambda i: _RANK[i.label])
    _check_order(out, by_rank, inferior)
    out.facts = _numbering_facts(out, volume, inferior, objs)
    finish_numbering(out)
    out.check_unique_names()
    return out


# A disc value whose second-largest piece is at least this large (mm³) marks two discs.
_SEPARATE_DISC_MM3 = 150.0


def _numbering_facts(out: Labelling, volume: Volume, inferior: np.ndarray, objs: list) -> dict:
    """What the numbering check of a label map rests on (see the module docstring); ``objs`` are
    the values' boxes (``ndimage.find_objects`` of the map).
    """
    reasons: list[str] = []
    sacrum = out.vertebra("sacrum")
    facts: dict = {"sacrum_class": True, "anchor": None, "reasons": reasons}
    if sacrum is None:
        facts["assumed"] = "lowest_disc" if out.discs else "lowest_vertebra"
        facts["sacrum_absent_from_map"] = True
    else:
        above = [d for d in out.discs if float((d.centroid_lps - sacrum.centroid_lps) @ inferior) < 0]
        lowest = max(above, key=lambda d: float(d.centroid_lps @ inferior)) if above else None
        if lowest is None:
            reasons.append("No disc is labelled above the sacrum: the lumbar levels cannot be anchored on it.")
        elif lowest.label != DISC_LABELS["L5-S"]:
            reasons.append(f"The disc directly above the sacrum is labelled {lowest.name}, not L5-S.")
        facts["anchor"] = "label_map"
    transitional = [n for n, v in (("L6", VERTEBRA_LABELS["L6"]), ("L5-L6", DISC_LABELS["L5-L6"]))
                    if any(i.label == v for i in (*out.vertebrae, *out.discs))]
    if transitional:
        reasons.append(f"Transitional anatomy: {' and '.join(transitional)} labelled (six lumbar vertebrae); confirm "
                       "the numbering on a whole-spine localiser.")
    voxel_mm3 = float(np.prod(volume.spacing))
    for d in out.discs:
        pieces, n = ndimage.label(out.labels[objs[d.label - 1]] == d.label)  # (every piece lies in the box)
        if n > 1:
            sizes = np.sort(np.bincount(pieces.ravel())[1:])[::-1] * voxel_mm3
            if sizes[1] >= _SEPARATE_DISC_MM3:
                reasons.append(f"The value of {d.name} ({d.label}) marks {int((sizes >= _SEPARATE_DISC_MM3).sum())} "
                               "separate discs: one level name is given to two structures.")
    codes = {w["code"] for w in out.warnings}
    if "level_order" in codes:
        reasons.append("Labelled levels are out of cranio-caudal order.")
    if "level_gap" in codes:
        reasons.append("A vertebra between two labelled ones has no label.")
    return facts


def _check_order(out: Labelling, by_rank: list[Instance], inferior: np.ndarray) -> None:
    """Warn (never rename) when the labelled levels are out of anatomical order or have gaps."""
    heights = [float(i.centroid_lps @ inferior) for i in by_rank]
    wrong = [f"{a.name} / {b.name}" for a, b, ha, hb in zip(by_rank, by_rank[1:], heights, heights[1:]) if hb < ha]
    if wrong:
        out.warn("level_order",
                 "Labelled levels are out of cranio-caudal order (" + ", ".join(wrong) + "); the names were "
                 "kept as given. Check the level assignment.")
    present = [n for n in VERTEBRA_ORDER if VERTEBRA_LABELS[n] in {v.label for v in out.vertebrae}]
    if len(present) >= 2:
        span = VERTEBRA_ORDER[VERTEBRA_ORDER.index(present[0]): VERTEBRA_ORDER.index(present[-1]) + 1]
        gaps = [n for n in span if n not in present]
        if gaps:
            out.warn("level_gap", f"No voxels are labelled {', '.join(gaps)} between {present[0]} and {present[-1]}.")


def unchanged_confidences(labels: np.ndarray, previous: np.ndarray, previous_confidence: Mapping[int, float]) -> dict:
    """Confidences to keep: values whose voxels are identical in ``previous`` (same grid).

    A level the reader renamed, re-assigned or edited differs from the earlier map and is left
    out (it becomes a reader-confirmed 1.0); so is a value without an earlier confidence.
    """
    if previous.shape != labels.shape:
        return {}
    kept = {}
    for value, conf in previous_confidence.items():
        if conf is None or value not in STRUCTURES:
            continue
        now, before = labels == value, previous == value
        if now.any() and np.array_equal(now, before):
            kept[int(value)] = float(conf)
    return kept
