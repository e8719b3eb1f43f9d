"""The numbering check (report.json ``numbering``) and the rule that no two levels share a name.

A wrong level is the worst error of a spine reading, so the labelling says whether its numbering
rests on evidence: ``{"confident": true|false, "reasons": [...]}``. It is confident only when the
count is anchored on a sacrum that was seen and nothing along the chain of discs casts doubt on
it. Each reason is a sentence for the reader; the reasons are:

* no sacrum seen (the model has no sacrum class, or it found none in the field of view): the
  lowest disc (or vertebra) is *assumed* to be L5-S (L5);
* the bone taken as the sacrum is no longer than a vertebra, or a vertebra lies between the
  lowest disc and the sacrum;
* a rudimentary lowest disc (an S1-S2 remnant, or the L5-S disc of a sacralised L5);
* transitional anatomy from the thoracic-depth check (six or four lumbar-like vertebrae);
* a disc missed and interpolated, two discs merged, a disc-like structure below the chain
  discarded, irregular disc spacing, too few discs, discs renumbered to keep names unique.

A confident numbering carries an empty ``reasons`` list.
"""

from __future__ import annotations

import numpy as np

from lvp.labelling.types import Labelling
from lvp.labels import SPINE_TOP_DOWN, disc_name_between

# Vertebra names from T1 down to L5, for renumbering discs by order (renumbering counts a
# five-lumbar spine: L6 is no name it gives).
_ORDER = SPINE_TOP_DOWN[: SPINE_TOP_DOWN.index("L5") + 1]
# Consecutive discs' centre distances outside this range of the median one are irregular
# (lumbar and lower thoracic spacings differ by less than a third).
SPACING_RANGE = (0.6, 1.55)


def _well_formed(name: str, lowest: bool) -> bool:
    up, _, low = name.partition("-")
    if up not in _ORDER:
        return False
    if low == "S":
        return lowest and up == "L5"
    k = _ORDER.index(up)
    return k + 1 < len(_ORDER) and low == _ORDER[k + 1]


def _rank(name: str) -> int:
    return _ORDER.index(name.partition("-")[0])


def unique_disc_names(names: list[str]) -> tuple[list[str], bool]:
    """Disc names (cranial -> caudal) made consistent by counting upwards from the lowest one.

    Names come from the vertebrae on either side of each disc; when that geometry is inconsistent
    (two discs between the same vertebrae, a name out of order or not a level at all) they cannot
    all be right, and every disc is renamed by its order above the lowest one (itself kept when
    well formed, else L5-S). A disc skipped by a missed disc (``L3-L4`` above ``L5-S``) is
    consistent. Returns the names and whether they changed.
    """
    if not names:
        return [], False
    ok = all(_well_formed(n, k == len(names) - 1) for k, n in enumerate(names))
    ok = ok and all(_rank(a) < _rank(b) for a, b in zip(names, names[1:]))
    if ok:
        return list(names), False
    lowest = names[-1] if _well_formed(names[-1], True) else "L5-S"
    base = _rank(lowest)
    out = []
    for k in range(len(names) - 1):
        j = base - (len(names) - 1 - k)  # this disc's upper vertebra, counted from the lowest disc
        out.append(disc_name_between(_ORDER[j], _ORDER[j + 1]) if j >= 0 else f"above T1 ({k + 1})")
    return [*out, lowest], True


def _spacing_reason(out: Labelling) -> str | None:
    if len(out.discs) < 4:
        return None
    c = np.array([d.centroid_lps for d in out.discs], float)
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    med = float(np.median(gaps))
    bad = [k for k, g in enumerate(gaps) if not SPACING_RANGE[0] * med <= g <= SPACING_RANGE[1] * med]
    if not bad:
        return None
    pairs = ", ".join(f"{out.discs[k].name} to {out.discs[k + 1].name} {gaps[k]:.0f} mm" for k in bad)
    return f"Irregular disc spacing ({pairs}; median {med:.0f} mm): a disc may be missed, doubled or misplaced."


# A lumbar series shows a chain of discs: consecutive discs at least this far apart (mm; 19 mm
# is the smallest of the 45 shared series, thoracic T8-T9), the largest spacing at most this many
# times the smallest (2.4 is the largest seen, with one disc missed), and no more discs
# interpolated than a third of those found.
MIN_DISC_GAP_MM = 10.0
MAX_GAP_RATIO = 3.5


def chain_problem(out: Labelling) -> str | None:
    """Why the labelled discs are not a plausible lumbar chain, or None when they are one."""
    c = np.array([d.centroid_lps for d in out.discs], float)
    if len(c) < 2:
        return None  # the disc count is checked by the caller
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    if gaps.min() < MIN_DISC_GAP_MM:
        return f"two discs only {gaps.min():.0f} mm apart (a lumbar motion segment is 20-45 mm)"
    # A gap holding missed discs (about k times the usual spacing) counts as k spacings.
    per = gaps / np.maximum(1.0, np.round(gaps / float(np.median(gaps))))
    if per.max() > MAX_GAP_RATIO * per.min():
        return f"disc spacings from {gaps.min():.0f} to {gaps.max():.0f} mm (a spine's are regular)"
    interpolated = int(out.facts.get("interpolated", 0))
    if interpolated > max(1, len(c) // 3):
        return f"{interpolated} of {len(c) + interpolated} discs missing along the chain"
    return None


def assess_numbering(out: Labelling) -> dict:
    """The numbering check of a labelling: ``{"confident": bool, "reasons": [str, ...]}``."""
    f = out.facts
    codes = {w["code"]: w["message"] for w in out.warnings}
    reasons: list[str] = []
    if not out.discs:
        reasons.append("No intervertebral disc was labelled: the levels cannot be counted.")
    elif len(out.discs) < 3:
        reasons.append(f"Only {len(out.discs)} disc(s) were labelled: too few to check the count.")
    anchor = f.get("anchor")
    assumed = "the lowest vertebra is assumed to be L5" if f.get("assumed") == "lowest_vertebra" else (
        "the lowest disc is assumed to be L5-S")
    if anchor is None and (out.discs or out.vertebrae):
        if f.get("sacrum_absent_from_map"):
            reasons.append(f"The label map has no sacrum (50): {assumed}.")
        elif f.get("sacrum_misplaced"):
            reasons.append(f"The sacrum segmentation does not lie below the lowest disc: {assumed}.")
        elif f.get("sacrum_class"):
            reasons.append(f"The sacrum was not seen (outside the field of view or not segmented): {assumed}.")
        else:
            reasons.append(f"The model has no sacrum class and no sacrum was seen: {assumed} "
                           "(counted from the bottom of the segmented spine).")
    elif anchor == "sacrum_bone" and (not f.get("sacrum_long") or f.get("sacrum_class")):
        reasons.append("The bone taken as the sacrum is not a segmented sacrum (it is less than twice as long as "
                       "the vertebrae above, or the model's sacrum class did not find it): it may be L5 with the L5-S "
                       "disc missed.")
    if f.get("bone_above_sacrum"):
        reasons.append("A vertebra lies between the lowest disc and the sacrum with no disc between them: the "
                       "L5-S disc may be missed (every level then named one too high) or S1 segmented as a vertebra.")
    if f.get("rudimentary_lowest"):
        reasons.append("The lowest disc-like structure is much smaller than the discs above: it was taken as an "
                       "S1-S2 remnant, not a lumbar disc. If it is a rudimentary L5-S disc (sacralised L5), every "
                       "level is named one level too low.")
    if f.get("small_lowest"):
        reasons.append(f"The lowest disc is small ({f['small_lowest']:.2f} of the median disc volume): a degenerated "
                       "L5-S, or an S1-S2 remnant named L5-S (every level then named one level too high).")
    if f.get("caudal_stray_dropped"):
        reasons.append("A disc-like structure below the lowest disc was discarded as not spine: if it is L5-S, "
                       "every level is named one too high.")
    if "transitional_anatomy" in codes:
        reasons.append("Transitional anatomy: " + codes["transitional_anatomy"])
    if "missing_disc" in codes:
        reasons.append("A disc was not segmented and was interpolated from the spacing of the others.")
    # A disc about twice as thick as the others may be two merged (the levels above then shift);
    # two discs that only touched on the labelling grid and were split again are named right.
    if any(w["code"] == "merged_disc" and w["message"].startswith("The disc named") for w in out.warnings):
        reasons.append("A disc is about twice as thick as its neighbours: it may be two discs merged, and every level "
                       "above it named one level too far down.")
    if f.get("renumbered"):
        reasons.append("Two discs were named alike (no vertebra between them): renumbered by their order.")
    reasons.extend(f.get("reasons", []))  # reasons found by the caller (e.g. a label map's checks)
    spacing = _spacing_reason(out)
    if spacing and "missing_disc" not in codes:
        reasons.append(spacing)
    return {"confident": not reasons, "reasons": reasons}


def finish_numbering(out: Labelling) -> None:
    """Set ``out.numbering`` (the CLI, report.json and the Slicer panel show it; it is not repeated
    as a warning).
    """
    out.numbering = assess_numbering(out)
