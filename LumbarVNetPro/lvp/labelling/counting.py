"""Counting the levels: the sacrum, vertebra names counted upwards from it, disc names from the
vertebrae on either side, and the transitional-anatomy check (steps 3 and 4 of :mod:`lvp.labelling`).
"""

from __future__ import annotations

import numpy as np

from lvp.labelling.thresholds import (
    LUMBAR_DEPTH_RATIO,
    RUDIMENTARY_DISC_RATIO,
    SACRUM_LENGTH_RATIO,
    THORACIC_DEPTH_RATIO,
    TRANSITIONAL_CONFIDENCE,
)
from lvp.labelling.types import Instance, Labelling
from lvp.labels import disc_name_between
from lvp.planes import DiscPlane

# Mobile vertebrae named by counting, cranial -> caudal (the lowest above the sacrum is L5).
_CRANIAL_TO_CAUDAL = ("T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")


def _is_sacrum(lengths: list[float], lowest_centre: np.ndarray, last_plane: DiscPlane, reaches_bottom: bool) -> bool:
    """Whether the lowest bone is the sacrum.

    ``lengths`` are the vertebrae's lengths along the image's SI axis (cranial -> caudal, mm),
    ``lowest_centre`` the lowest one's centroid, ``last_plane`` the lowest disc and
    ``reaches_bottom`` whether the lowest bone reaches the bottom of the field of view.
    """
    below_last_disc = (lowest_centre - last_plane.center_lps) @ last_plane.normal_lps > 0
    ref = float(np.median(lengths[:-1])) if len(lengths) > 1 else 30.0
    long_enough = lengths[-1] >= SACRUM_LENGTH_RATIO * ref
    # Bone below the lowest disc with image below it but no further disc is the sacrum; bone
    # cut by the bottom of the field of view is the sacrum only when it is long.
    return bool(below_last_disc and (not reaches_bottom or long_enough))


def _vertebra_names(n_mobile: int, has_sacrum: bool) -> list[str]:
    """Names of ``n_mobile`` vertebrae (cranial -> caudal) counted upwards from the sacrum, then
    ``"sacrum"`` when there is one.
    """
    # Names counted upwards from the sacrum; when the lowest bone is below no disc and there is
    # no sacrum, it is itself taken as L5.
    names: list[str] = []
    for i in range(n_mobile):
        j = n_mobile - 1 - i  # vertebrae below this one
        names.append(_CRANIAL_TO_CAUDAL[-1 - j] if j < len(_CRANIAL_TO_CAUDAL) else f"T{17 - j}")
    if has_sacrum:
        names.append("sacrum")
    return names


def _disc_name(above: list[Instance], below: list[Instance], n_from_bottom: int) -> str:
    """Name of a disc from the vertebrae ``above`` and ``below`` it (cranial -> caudal), or counted
    from the bottom (``n_from_bottom`` discs below it) when there are no vertebrae.
    """
    order_names = _CRANIAL_TO_CAUDAL
    if above:
        upper = above[-1].name
    elif below and below[0].name in order_names and order_names.index(below[0].name) > 0:
        upper = order_names[order_names.index(below[0].name) - 1]
    else:  # no vertebrae at all: count discs from the bottom, lowest = L5-S (assumed)
        upper = order_names[-1 - n_from_bottom] if n_from_bottom < len(order_names) else "T5"
    if below:
        lower = below[0].name
    elif upper == "L5":
        lower = "sacrum"
    else:
        lower = order_names[order_names.index(upper) + 1] if upper in order_names[:-1] else "sacrum"
    return disc_name_between(upper, lower)


def _cap_confidence(out: Labelling, cap: float) -> None:
    for inst in (*out.vertebrae, *out.discs):
        inst.confidence = round(min(inst.confidence, cap), 3)


def _check_transitional(out: Labelling, has_sacrum: bool) -> None:
    """Flag transitional anatomy (see :mod:`lvp.labelling`); never renames levels."""
    if not has_sacrum:
        return
    discs = {d.name: d for d in out.discs}
    ls, l45 = discs.get("L5-S"), discs.get("L4-L5")
    if ls is not None and l45 is not None and ls.voxels < RUDIMENTARY_DISC_RATIO * l45.voxels:
        out.warn(
            "transitional_anatomy",
            f"The lumbosacral disc is rudimentary ({ls.voxels} voxels, L4-L5 {l45.voxels}): possible "
            "sacralised L5 / transitional lumbosacral vertebra. Levels were counted from the sacrum.",
        )
    edge = set(out.facts.get("edge_vertebrae", ()))  # cut by the field of view: depth not measured
    depth = {v.name: v.body_depth_mm for v in out.vertebrae if v.name not in edge}
    ref = [depth[n] for n in ("L3", "L4", "L5") if n in depth and np.isfinite(depth[n])]
    if len(ref) < 2:
        return
    ref_depth = float(np.median(ref))

    def lumbar_like(name: str) -> bool | None:
        """True when clearly lumbar-sized, False when clearly thoracic, None in between or unknown."""
        d = depth.get(name)
        if d is None or not np.isfinite(d):
            return None
        if d >= LUMBAR_DEPTH_RATIO * ref_depth:
            return True
        return False if d <= THORACIC_DEPTH_RATIO * ref_depth else None

    t12, t11, l1, l2 = lumbar_like("T12"), lumbar_like("T11"), lumbar_like("L1"), lumbar_like("L2")
    if t12 and t11 is False:
        _cap_confidence(out, TRANSITIONAL_CONFIDENCE)
        out.warn(
            "transitional_anatomy",
            "Six lumbar-like vertebrae above the sacrum: the one counted as T12 from the sacrum has a "
            "lumbar-sized body. Levels were kept as counted from the sacrum (L6 not assigned); confirm "
            "the numbering on a whole-spine localiser.",
        )
    elif l1 is False and l2 and not t12:
        _cap_confidence(out, TRANSITIONAL_CONFIDENCE)
        out.warn(
            "transitional_anatomy",
            "Only four lumbar-like vertebrae above the sacrum: the one counted as L1 has a thoracic-"
            "sized body (sacralised L5 or thoracolumbar transition). Levels were kept as counted from "
            "the sacrum; confirm the numbering on a whole-spine localiser.",
        )
