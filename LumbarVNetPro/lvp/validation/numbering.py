"""How often the numbering check is wrong: perturbed and synthesised cases from the SPIDER masks.

``lvp validate numbering --data ../shared/data`` runs every SPIDER reference mask through the
level labelling (the semantic path, as the network's output would be) after edits of known effect,
twice: without a sacrum class (as the shipped model) and with one (the sacrum derived from the
mask and the image by :func:`lvp.training.sacrum.with_sacrum`, as a model trained with a sacrum
class would give it). The truth is the unedited mask's discs numbered from the bottom (the SPIDER
convention: the lowest disc is L5-S), each output disc matched to the reference disc nearest to it
(within :data:`MATCH_MM`). A numbering is *right* when every output disc matches a reference disc
and carries its name; a disc that matches none (an added remnant, a merged blob) is wrong.

Kinds (``KINDS``): ``normal``; ``crop_top`` (the field of view cut at L1); ``crop_bottom_l5``
(cut through the L5 body); ``crop_bottom_disc`` (cut just below L4-L5); ``no_sacrum`` (the sacrum
class erased: a model with the class that did not find it); ``delete_disc`` (L2-L3 erased);
``delete_lowest`` (L5-S erased); ``merge`` (L2-L3, L3 and L3-L4 one disc); ``remnant`` (an S1
body segmented as a vertebra and a thin S1-S2 remnant disc below L5-S, the sacrum below it);
``six_lumbar`` / ``four_lumbar`` (a motion segment copied in / cut out of image and masks:
transitional anatomy, which must be flagged: counted as "flagged" or "missed", not right/wrong);
label-map kinds through :func:`lvp.labelling.from_labels.labelling_from_labels`: ``map_normal``,
``map_shift`` (every level named one too high), ``map_duplicate`` (two discs given one value),
``map_l6`` (six lumbar labels, transitional); and ``network_t2`` / ``network_t1`` (the shipped
network on the real T2 image and on a T1-like image synthesised from it: marrow bright, disc
intermediate, CSF dark; a refusal of a non-readable T1 is counted as "refused").

Figures: wrong numberings marked confident (goal: never) and right numberings flagged (goal: at
most 1 in 5), each with a Wilson 95 % interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvp.io.volume import Volume
from lvp.labelling import Labelling, label_levels
from lvp.labels import DISC, SACRUM, SACRUM_LABEL, SPINE_TOP_DOWN, STRUCTURES, VERTEBRA, disc_name_between
from lvp.study.agreement import wilson_ci
from lvp.validation.cases import load_spider_case, spider_case_ids

MATCH_MM = 12.0  # an output disc this close to a reference disc is that disc
TRANSITIONAL_KINDS = ("six_lumbar", "four_lumbar", "map_l6")
SEMANTIC_KINDS = ("normal", "crop_top", "crop_bottom_l5", "crop_bottom_disc", "no_sacrum", "delete_disc",
                  "delete_lowest", "merge", "remnant", "six_lumbar", "four_lumbar")
MAP_KINDS = ("map_normal", "map_shift", "map_duplicate", "map_l6")
NETWORK_KINDS = ("network_t2", "network_t1")
KINDS = SEMANTIC_KINDS + MAP_KINDS + NETWORK_KINDS
ANCHORED_KINDS = ("normal", "crop_top", "map_normal", "network_t2")


@dataclass
class Case:
    """One perturbed case: image, semantic classes (or a label map) and the reference discs."""

    volume: Volume
    semantic: np.ndarray | None
    truth: list[tuple[str, np.ndarray]]  # reference disc name, centre (LPS)
    labels: np.ndarray | None = None  # label-map kinds


def _rows(volume: Volume, lab: Labelling, name: str) -> int:
    """The SI row of disc ``name``'s centroid."""
    d = lab.disc(name)
    idx = volume.lps_to_index(np.asarray(d.centroid_lps)[None])[0]
    return int(round(idx[1]))


def _recut(volume: Volume, arrays: list[np.ndarray], r0: int, r1: int) -> tuple[Volume, list[np.ndarray]]:
    """Rows r0:r1 (SI axis) of the volume and arrays: a smaller field of view, same positions."""
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_lps(np.array([0.0, r0, 0.0]))
    v = Volume(np.ascontiguousarray(volume.array[:, r0:r1]), volume.spacing, affine, volume.source, dict(volume.meta))
    return v, [np.ascontiguousarray(a[:, r0:r1]) for a in arrays]


def _splice(volume: Volume, arrays: list[np.ndarray], rows: np.ndarray) -> tuple[Volume, list[np.ndarray]]:
    """The volume and arrays re-assembled from the given row indices (rows copied in or cut out)."""
    v = Volume(np.ascontiguousarray(volume.array[:, rows]), volume.spacing, volume.affine.copy(), volume.source,
               dict(volume.meta))
    return v, [np.ascontiguousarray(a[:, rows]) for a in arrays]


def _truth(lab: Labelling) -> list[tuple[str, np.ndarray]]:
    return [(d.name, np.asarray(d.centroid_lps, float)) for d in lab.discs]


def _moved_truth(truth, volume: Volume, new_volume: Volume, row_map) -> list[tuple[str, np.ndarray]]:
    """Reference disc centres after rows were re-arranged (``row_map(old_row) -> new_row or None``)."""
    out = []
    for name, c in truth:
        idx = volume.lps_to_index(c[None])[0]
        r = row_map(idx[1])
        if r is not None:
            out.append((name, new_volume.index_to_lps(np.array([idx[0], r, idx[2]]))))
    return out


def synthesise_t1(image: np.ndarray, semantic: np.ndarray, seed: int = 0) -> np.ndarray:
    """A T1-like image from a T2 image and its classes: marrow bright, disc intermediate, CSF dark.

    Unlabelled tissue keeps the T2 image (fat is bright on both); each labelled structure gets a
    new level with the T2 texture kept as a small multiplicative variation, then a smooth bias field
    and noise.
    """
    rng = np.random.default_rng(seed)
    img = np.asarray(image, float)
    scale = float(np.percentile(img, 99)) or 1.0
    out = img / scale
    levels = {VERTEBRA: 0.85, SACRUM: 0.85, DISC: 0.35, 3: 0.08}
    for cls, level in levels.items():
        m = semantic == cls
        if m.any():
            med = float(np.median(img[m])) or 1.0
            out[m] = level * (1.0 + 0.15 * (img[m] / med - 1.0))
    si = np.linspace(-1, 1, img.shape[1])[None, :, None]
    ap = np.linspace(-1, 1, img.shape[2])[None, None, :]
    out *= 1.0 + 0.15 * si + 0.1 * ap
    out += rng.normal(0.0, 0.02, out.shape)
    return np.clip(out, 0.0, None) * 1000.0


def make_case(kind: str, volume: Volume, sem: np.ndarray, ref: Labelling) -> Case | None:
    """The perturbed case of one kind (None when the reference cannot carry it, e.g. no L2-L3)."""
    truth = _truth(ref)
    names = [d.name for d in ref.discs]
    need = {"crop_top": ["T12-L1"], "crop_bottom_l5": ["L4-L5", "L5-S"], "crop_bottom_disc": ["L4-L5"],
            "delete_disc": ["L2-L3"], "delete_lowest": ["L5-S"], "merge": ["L2-L3", "L3-L4"],
            "remnant": ["L4-L5", "L5-S"], "six_lumbar": ["L4-L5", "L5-S"], "four_lumbar": ["L3-L4", "L4-L5"]}
    if any(n not in names for n in need.get(kind, [])):
        return None
    if kind in ("normal", "network_t2", "network_t1"):
        return Case(volume, sem, truth)
    if kind == "no_sacrum":
        out = sem.copy()
        out[out == SACRUM] = 0
        return Case(volume, out, truth)
    if kind == "crop_top":
        r0 = _rows(volume, ref, "T12-L1") + 3
        v, (s,) = _recut(volume, [sem], r0, sem.shape[1])
        return Case(v, s, truth)  # a disc cut by the new edge is still the same level
    if kind in ("crop_bottom_l5", "crop_bottom_disc"):
        dm = ref.labels == ref.disc("L4-L5").label
        bottom = int(np.nonzero(dm.any(axis=(0, 2)))[0][-1])
        if kind == "crop_bottom_l5":
            r1 = (_rows(volume, ref, "L4-L5") + _rows(volume, ref, "L5-S")) // 2
        else:
            r1 = bottom + int(round(2.0 / volume.spacing[1]))
        v, (s,) = _recut(volume, [sem], 0, r1)
        return Case(v, s, truth)
    if kind in ("delete_disc", "delete_lowest"):
        name = "L2-L3" if kind == "delete_disc" else "L5-S"
        out = sem.copy()
        out[ref.labels == ref.disc(name).label] = 0
        return Case(volume, out, [(n, c) for n, c in truth if n != name])
    if kind == "merge":
        out = sem.copy()
        a, b = ref.disc("L2-L3"), ref.disc("L3-L4")
        both = (ref.labels == a.label) | (ref.labels == b.label)
        foot = both.any(axis=1)  # (lr, ap) columns under either disc
        ra, rb = _rows(volume, ref, "L2-L3"), _rows(volume, ref, "L3-L4")
        block = np.zeros(sem.shape, bool)
        block[:, ra:rb + 1] = foot[:, None, :]
        out[block & (out == VERTEBRA)] = DISC
        return Case(volume, out, [(n, c) for n, c in truth if n not in ("L2-L3", "L3-L4")])
    if kind == "remnant":
        return _remnant_case(volume, sem, ref, truth)
    if kind in ("six_lumbar", "four_lumbar"):
        a = _rows(volume, ref, "L4-L5" if kind == "six_lumbar" else "L3-L4")
        b = _rows(volume, ref, "L5-S" if kind == "six_lumbar" else "L4-L5")
        n = sem.shape[1]
        if kind == "six_lumbar":
            rows = np.concatenate([np.arange(0, b), np.arange(a, b), np.arange(b, n)])
        else:
            rows = np.concatenate([np.arange(0, a), np.arange(b, n)])
        v, (s,) = _splice(volume, [sem], rows)
        return Case(v, s, [])  # transitional: must be flagged, there is no single right numbering
    if kind.startswith("map_"):
        return _map_case(kind, volume, ref, truth)
    raise ValueError(f"unknown kind {kind!r}")


def _remnant_case(volume: Volume, sem: np.ndarray, ref: Labelling, truth) -> Case | None:
    """S1 segmented as a vertebra below L5-S, a thin remnant disc below it, the sacrum below that."""
    ls = ref.labels == ref.disc("L5-S").label
    rows = np.nonzero(ls.any(axis=(0, 2)))[0]
    sp = volume.spacing[1]
    body = max(int(round((_rows(volume, ref, "L5-S") - _rows(volume, ref, "L4-L5")) * 0.75)), 10)
    thick = max(int(round(3.0 / sp)), 2)
    top = int(rows[-1]) + 1
    if top + body + thick + body // 2 > sem.shape[1]:
        return None  # the field of view ends too soon below L5-S
    foot = ls.any(axis=1)  # (lr, ap)
    ap = np.nonzero(foot.any(axis=0))[0]
    inner = np.zeros_like(foot)
    lo, hi = ap[0] + (ap[-1] - ap[0]) // 5, ap[-1] - (ap[-1] - ap[0]) // 5
    inner[:, lo:hi] = foot[:, lo:hi]
    out = sem.copy()
    had_sacrum = bool((sem == SACRUM).any())
    out[out == SACRUM] = 0
    out[:, top:top + body][np.broadcast_to(foot[:, None, :], out[:, top:top + body].shape)] = VERTEBRA
    r = top + body
    out[:, r:r + thick][np.broadcast_to(inner[:, None, :], out[:, r:r + thick].shape)] = DISC
    if had_sacrum:
        r2 = min(r + thick + body, sem.shape[1])
        out[:, r + thick:r2][np.broadcast_to(foot[:, None, :], out[:, r + thick:r2].shape)] = SACRUM
    return Case(volume, out, truth)


_SHIFT_UP = {100: 95, 95: 94, 94: 93, 93: 92, 92: 91, 91: 82, 82: 0, 45: 44, 44: 43, 43: 42, 42: 41, 41: 32,
             32: 31, 31: 0}
_TO_L6 = {45: 46, 44: 45, 43: 44, 42: 43, 41: 42, 32: 41, 31: 32, 95: 96, 94: 95, 93: 94, 92: 93, 91: 92, 82: 91}


def _map_case(kind: str, volume: Volume, ref: Labelling, truth) -> Case | None:
    labels = ref.labels.astype(np.int16)
    if not (labels == 50).any():
        return None  # the label-map kinds need a sacrum (the with-sacrum-class mode)
    out = labels.copy()
    if kind == "map_shift":
        for old, new in _SHIFT_UP.items():
            out[labels == old] = new
    elif kind == "map_duplicate":
        if not ((labels == 94).any() and (labels == 93).any()):
            return None
        out[labels == 94] = 93
    elif kind == "map_l6":
        for old, new in _TO_L6.items():
            out[labels == old] = new
    out[~np.isin(out, list(STRUCTURES))] = 0
    return Case(volume, None, truth, labels=out)


def _disc_above(name: str) -> str | None:
    """The disc one level up (``"T12-L1" -> "T11-T12"``, ``"L5-S" -> "L4-L5"``); None past T1."""
    upper = name.split("-")[0]
    i = SPINE_TOP_DOWN.index(upper) if upper in SPINE_TOP_DOWN else 0
    return disc_name_between(SPINE_TOP_DOWN[i - 1], upper) if i > 0 else None


def is_right(lab: Labelling, truth: list[tuple[str, np.ndarray]]) -> bool:
    """Every output disc matches a reference disc (within MATCH_MM) and carries its name.

    An output disc above the reference's highest disc has no reference to match: the SPIDER masks
    leave a disc cut by the top of the slab unlabelled, while a reader (and LVP) can still see it.
    Such discs are right only when they continue the reference's sequence upwards (the first one
    above T12-L1 must be T11-T12); anywhere else an unmatched disc is wrong.
    """
    if not truth:
        return False
    top_name, top_centre = max(truth, key=lambda t: float(t[1][2]))  # LPS z points superior
    above = []
    for d in lab.discs:
        dist = [float(np.linalg.norm(np.asarray(d.centroid_lps) - c)) for _, c in truth]
        k = int(np.argmin(dist))
        if dist[k] <= MATCH_MM:
            if truth[k][0] != d.name:
                return False
        elif float(d.centroid_lps[2]) > float(top_centre[2]):
            above.append(d)
        else:
            return False
    expected = top_name
    for d in sorted(above, key=lambda d: float(d.centroid_lps[2])):
        expected = _disc_above(expected)
        if expected is None or d.name != expected:
            return False
    return True


def _label_case(case: Case, kind: str, sacrum_class: bool, segmenter: Any) -> tuple[Labelling | None, str | None]:
    """The labelling of a case, or (None, why) when the pipeline would refuse the volume."""
    from lvp.labelling.from_labels import labelling_from_labels
    from lvp.labelling.numbering import chain_problem

    if case.labels is not None:
        return labelling_from_labels(case.labels, case.volume), None
    sem = case.semantic
    if kind in NETWORK_KINDS:
        image = case.volume.array if kind == "network_t2" else synthesise_t1(case.volume.array, sem)
        sem = segmenter.segment(case.volume.with_array(image.astype(np.float32))).semantic
        sacrum_class = segmenter.sacrum_class  # the shipped model's classes, as lvp infer reads them
    lab = label_levels(sem, case.volume, sacrum_class=sacrum_class)
    if len(lab.discs) < 3:
        return None, "fewer than 3 discs"
    problem = chain_problem(lab)
    return (None, problem) if problem else (lab, None)


def validate_numbering(data: Path, out: Path | None = None, limit: int | None = None,
                       kinds: tuple[str, ...] = KINDS, network: bool = True) -> dict:
    """Run every kind on every SPIDER case, in both sacrum modes; return (and write) the figures."""
    from lvp.training.sacrum import with_sacrum

    segmenter = None
    if network and any(k in NETWORK_KINDS for k in kinds):
        from lvp.pipeline import make_segmenter

        segmenter = make_segmenter(None, "cpu")
    rows = []
    for case_id in spider_case_ids(data)[:limit]:
        sc = load_spider_case(data, case_id)
        sem4 = with_sacrum(sc.labels, sc.image.array, sc.image.spacing)
        # The truth and the geometry of every edit: the reference mask's discs numbered from the
        # bottom (the unedited mask without a sacrum class; SPIDER's convention), whatever the mode.
        ref = label_levels(sc.labels, sc.image, sacrum_class=False)
        ref.labels[(sem4 == SACRUM) & (ref.labels == 0)] = SACRUM_LABEL  # the label-map kinds' sacrum
        for mode, sem in (("no_sacrum_class", sc.labels), ("sacrum_class", sem4)):
            has_class = mode == "sacrum_class"
            for kind in kinds:
                skip = (kind in NETWORK_KINDS and (has_class or segmenter is None)) or (
                    kind in (*MAP_KINDS, "no_sacrum") and not has_class)
                if skip:
                    continue
                row = {"case": case_id, "mode": mode, "kind": kind, "refused": None}
                try:
                    case = make_case(kind, sc.image, sem, ref)
                    if case is None:
                        continue
                    lab, row["refused"] = _label_case(case, kind, has_class, segmenter)
                except Exception as err:  # a failing case is counted, not hidden
                    rows.append({**row, "error": f"{type(err).__name__}: {err}"})
                    continue
                if lab is not None:
                    row.update(confident=bool(lab.numbering["confident"]), reasons=lab.numbering["reasons"],
                               discs=[d.name for d in lab.discs],
                               right=None if kind in TRANSITIONAL_KINDS else is_right(lab, case.truth))
                rows.append(row)
    result = summarise(rows)
    if out is not None:
        Path(out).write_text(json.dumps({**result, "rows": rows}, indent=1))
    return result


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson_ci(k, n)
    return {"k": k, "n": n, "rate": (k / n) if n else None, "ci95": [lo, hi]}


def summarise(rows: list[dict]) -> dict:
    """Per mode and kind: right/wrong x confident/flagged, refusals; and the two headline rates."""
    result: dict[str, Any] = {"by_kind": {}, "headline": {}}
    result["errors"] = [f"{r['case']}/{r['mode']}/{r['kind']}: {r['error']}" for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    for mode in sorted({r["mode"] for r in rows}):
        mine = [r for r in rows if r["mode"] == mode]
        for kind in dict.fromkeys(r["kind"] for r in mine):
            rk = [r for r in mine if r["kind"] == kind]
            labelled = [r for r in rk if r["refused"] is None]
            entry = {"cases": len(rk), "refused": len(rk) - len(labelled)}
            if kind in TRANSITIONAL_KINDS:
                entry["flagged"] = sum(not r["confident"] for r in labelled)
                entry["missed (confident)"] = sum(r["confident"] for r in labelled)
            else:
                for right in (True, False):
                    for conf in (True, False):
                        key = f"{'right' if right else 'wrong'}_{'confident' if conf else 'flagged'}"
                        entry[key] = sum(r["right"] is right and r["confident"] is conf for r in labelled)
            result["by_kind"][f"{mode}/{kind}"] = entry
        scored = [r for r in mine if r["refused"] is None and r.get("right") is not None]
        wrong = [r for r in scored if not r["right"]]
        right = [r for r in scored if r["right"]]
        trans = [r for r in mine if r["refused"] is None and r["kind"] in TRANSITIONAL_KINDS]
        result["headline"][mode] = {
            "wrong_marked_confident": _rate(sum(r["confident"] for r in wrong), len(wrong)),
            "right_flagged": _rate(sum(not r["confident"] for r in right), len(right)),
            # Kinds where the sacrum and every lumbar disc are in view and nothing was removed: the
            # cases a reader should find confident.
            "right_flagged_anchored": _rate(sum(not r["confident"] for r in right if r["kind"] in ANCHORED_KINDS),
                                            sum(r["kind"] in ANCHORED_KINDS for r in right)),
            "transitional_missed": _rate(sum(r["confident"] for r in trans), len(trans)),
            "refused": _rate(sum(r["refused"] is not None for r in mine), len(mine)),
        }
    return result
