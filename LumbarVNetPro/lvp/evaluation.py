"""Evaluation of the network + level labelling against reference masks.

Per case: Dice and 95 % Hausdorff distance (mm) per network class (only the classes the case's
label scheme fully annotates), and the level identification rate of discs and vertebrae: every
reference structure with a level name is matched to the predicted structure whose centroid is
nearest (within :data:`MATCH_MM`); it counts as identified when the predicted name is the same.
Overall figures are means over cases with percentile-bootstrap 95 % confidence intervals, and
identification is also pooled over all reference structures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from lvp.datasets import Case, discover_cases, find_derived_labels, level_reference, load_case, load_derived_labels
from lvp.labels import CANAL, CLASS_NAMES, DISC, SACRUM, VERTEBRA
from lvp.study.agreement import wilson_ci

MATCH_MM = 15.0
# Partial label schemes annotate only some levels (MRS IVD: the five lumbar discs). Predictions are
# scored only within the reference's superior-inferior extent plus this margin, so that correctly
# segmented but unannotated discs (T12-L1 and above) do not count as false positives.
PARTIAL_MARGIN_MM = 10.0  # a level is ~35-40 mm high: 15 mm cannot reach a neighbour's centroid
BOOTSTRAP = 2000


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    s = int(pred.sum()) + int(ref.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(pred, ref).sum()) / s


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Symmetric 95th-percentile surface distance in mm (NaN if either mask is empty)."""
    if not pred.any() or not ref.any():
        return float("nan")
    both = np.logical_or(pred, ref)
    idx = np.argwhere(both)
    lo, hi = np.maximum(idx.min(0) - 2, 0), idx.max(0) + 3
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    p, r = pred[sl], ref[sl]
    ps = p & ~ndimage.binary_erosion(p)
    rs = r & ~ndimage.binary_erosion(r)
    d_to_r = ndimage.distance_transform_edt(~rs, sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~ps, sampling=spacing)
    dists = np.concatenate([d_to_r[ps], d_to_p[rs]])
    return float(np.percentile(dists, 95))


def match_levels(reference: dict[str, np.ndarray], predicted: list[tuple[str, np.ndarray]],
                 spacing: tuple[float, float, float], axes: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Match reference names -> nearest predicted structure (canonical index centroids).

    ``axes`` limits the distance to some canonical axes: Chu references are vertebral *bodies*
    whose centroids lie 10-20 mm anterior of a whole vertebra's, so they are matched by their
    superior-inferior position alone (``axes=(1,)``).
    """
    sp = np.zeros(3)
    sp[list(axes)] = np.asarray(spacing)[list(axes)]
    rows = []
    for name, c in reference.items():
        best, dist = None, math.inf
        for pname, pc in predicted:
            d = float(np.linalg.norm((np.asarray(pc) - c) * sp))
            if d < dist:
                best, dist = pname, d
        found = best if dist <= MATCH_MM else None
        rows.append({"reference": name, "predicted": found, "distance_mm": round(dist, 2) if found else None,
                     "correct": found == name})
    n_ok = sum(r["correct"] for r in rows)
    return {"n": len(rows), "correct": n_ok, "rate": n_ok / len(rows) if rows else float("nan"), "matches": rows}


def _restrict_si(pred: np.ndarray, annotated: np.ndarray, si_mm: float) -> np.ndarray:
    """Zero the prediction outside the annotated superior-inferior range (+ margin)."""
    rows = np.flatnonzero(annotated.any(axis=(0, 2)))
    m = int(round(PARTIAL_MARGIN_MM / si_mm))
    out = np.zeros_like(pred)
    lo, hi = max(rows[0] - m, 0), rows[-1] + m + 1
    out[:, lo:hi] = pred[:, lo:hi]
    return out


# Synthesised test contrasts (``lvp evaluate --synth``): T1-like class intensities on the
# percentile-normalised image, from the reference labels; "invert" uses no labels at all.
SYNTH_T1 = {VERTEBRA: 0.72, DISC: 0.30, CANAL: 0.10, SACRUM: 0.72}
SYNTH_MODES = ("t1", "invert")


def synthesise_contrast(image: np.ndarray, ref: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    """A test contrast of ``image`` (float32 in [0, 1]).

    ``"t1"``: vertebra/sacrum marrow bright, disc dark-intermediate, CSF dark (each class keeps its
    texture at 5 % spread around a mean jittered by ±0.05), unlabelled tissue kept with a mild
    gamma (fat bright, muscle dark, as in T1); ``"invert"``: ``1 - x`` (every contrast reversed,
    label-free). The T1 mode uses the same generative family as the training augmentation
    (:class:`lvp.training.transforms.RandLabelContrastd`), so it is an optimistic test.
    """
    from lvp.preprocess import normalise_intensity_np

    x = normalise_intensity_np(np.array(image, dtype=np.float32, copy=True))  # never the caller's array
    if mode == "invert":
        return (1.0 - x).astype(np.float32)
    if mode != "t1":
        raise ValueError(f"unknown synthesised contrast {mode!r}; known: {', '.join(SYNTH_MODES)}")
    rng = np.random.default_rng(seed)
    out = x ** 0.9
    for c, mean in SYNTH_T1.items():
        m = ref == c
        if m.sum() > 1:
            v = x[m]
            out[m] = mean + rng.uniform(-0.05, 0.05) + 0.05 * (v - v.mean()) / (v.std() + 1e-6)
    return np.clip(out, 0, 1).astype(np.float32)


def evaluate_case(case: Case, segment: Callable, label_levels: Callable | None,
                  derived_labels: str | Path | None = None, synth: str | None = None) -> dict:
    """Evaluate one case. ``segment(volume)`` returns an object with ``semantic``.

    With ``derived_labels`` (a folder of ``<case>_labels5.nii.gz``, classes 0-4), a case found
    there is scored against that map instead, sacrum included (its classes 1-3 equal the masks').
    """
    volume, ref, raw = load_case(case)
    annotated = case.annotated_classes
    derived = find_derived_labels(derived_labels, case.case_id)
    if derived is not None:
        ref = load_derived_labels(derived, volume.shape)
        annotated = (*annotated, SACRUM)
    if synth:
        volume = volume.with_array(synthesise_contrast(volume.array, ref, synth))
    out = segment(volume)
    pred = out.semantic
    if case.scheme == "mrs-ivd" and ref.any():
        pred = _restrict_si(pred, ref > 0, volume.spacing[1])
    res: dict = {"case": case.case_id, "dataset": case.dataset, "scheme": case.scheme, "classes": {},
                 "contrast": synth or "original",
                 "timings_s": {k: round(v, 4) for k, v in getattr(out, "timings", {}).items()}}
    for c in annotated:
        p, r = pred == c, ref == c
        res["classes"][CLASS_NAMES[c]] = {"dice": dice(p, r), "hd95_mm": hd95(p, r, volume.spacing)}
    levels = level_reference(raw, case.scheme, volume.spacing)
    if label_levels is not None and (levels.discs or levels.vertebrae):
        lab = label_levels(out.semantic, volume)  # the whole prediction, not the scored window
        to_idx = lambda items, key="centroid_lps": [
            (i.name, volume.lps_to_index(np.asarray(getattr(i, key, None) if getattr(i, key, None) is not None
                                                    else i.centroid_lps))) for i in items]
        if levels.discs:
            res["disc_identification"] = match_levels(levels.discs, to_idx(lab.discs), volume.spacing)
        if levels.vertebrae:
            # Body-only references (Chu VB) are matched to the predicted bodies' centroids: a whole
            # vertebra's centroid lies 10-25 mm behind its body's, beyond MATCH_MM.
            key = "body_centroid_lps" if case.scheme == "chu-vb" else "centroid_lps"
            res["vertebra_identification"] = match_levels(levels.vertebrae, to_idx(lab.vertebrae, key),
                                                          volume.spacing)
        res["labelling_warnings"] = [w.get("code", str(w)) if isinstance(w, dict) else str(w) for w in lab.warnings]
    return res


def bootstrap_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % CI of the mean (NaN for fewer than 2 values)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (BOOTSTRAP, v.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(cases: list[dict]) -> dict:
    """Overall figures: per class mean Dice/HD95 with CIs; pooled identification rates with CIs."""
    summary: dict = {"n_cases": len(cases), "classes": {}}
    for name in CLASS_NAMES.values():
        for metric in ("dice", "hd95_mm"):
            vals = [c["classes"][name][metric] for c in cases if name in c["classes"]]
            if vals:
                lo, hi = bootstrap_ci(vals)
                finite = [v for v in vals if not math.isnan(v)]  # HD95 is NaN where a mask is empty
                summary["classes"].setdefault(name, {"n": len(vals)})[metric] = {
                    "mean": float(np.mean(finite)) if finite else float("nan"), "ci95": [lo, hi]}
    for key in ("disc_identification", "vertebra_identification"):
        k = sum(c[key]["correct"] for c in cases if key in c)
        n = sum(c[key]["n"] for c in cases if key in c)
        if n:
            summary[key] = {"correct": k, "n": n, "rate": k / n, "ci95": list(wilson_ci(k, n))}
    return summary


def format_table(result: dict) -> str:
    """Plain-text table of the per-case and overall figures."""
    lines = [f"{'case':22s} {'vert Dice':>9s} {'disc Dice':>9s} {'canal Dice':>10s} {'sacrum Dice':>11s} "
             f"{'vert HD95':>9s} {'disc HD95':>9s} {'canal HD95':>10s} {'disc ID':>8s} {'vert ID':>8s}"]

    def cell(c: dict, name: str, metric: str, w: int) -> str:
        v = c["classes"].get(name, {}).get(metric)
        return f"{v:{w}.3f}" if v is not None and not math.isnan(v) else f"{'-':>{w}s}"

    def ident(c: dict, key: str) -> str:
        return f"{c[key]['correct']}/{c[key]['n']}".rjust(8) if key in c else f"{'-':>8s}"

    for c in result["cases"]:
        lines.append(f"{c['case']:22s} {cell(c, 'vertebra', 'dice', 9)} {cell(c, 'disc', 'dice', 9)} "
                     f"{cell(c, 'canal', 'dice', 10)} {cell(c, 'sacrum', 'dice', 11)} "
                     f"{cell(c, 'vertebra', 'hd95_mm', 9)} "
                     f"{cell(c, 'disc', 'hd95_mm', 9)} {cell(c, 'canal', 'hd95_mm', 10)} "
                     f"{ident(c, 'disc_identification')} {ident(c, 'vertebra_identification')}")
    groups = [("all cases", result["summary"])] + sorted(result.get("by_dataset", {}).items())
    if len(groups) == 2:
        groups = groups[:1]  # one data set: its summary is the overall one
    for title, s in groups:
        lines += ["", f"{title} (mean [95 % CI]):"]
        for name, d in s["classes"].items():
            parts = [f"{m} {d[m]['mean']:.3f} [{d[m]['ci95'][0]:.3f}, {d[m]['ci95'][1]:.3f}]"
                     for m in ("dice", "hd95_mm") if m in d]
            lines.append(f"  {name:9s} (n={d['n']}): " + "; ".join(parts))
        for key in ("disc_identification", "vertebra_identification"):
            if key in s:
                d = s[key]
                lines.append(f"  {key}: {d['correct']}/{d['n']} = {d['rate']:.3f} "
                             f"[{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]")
    return "\n".join(lines)


def evaluate(data: str | Path, segment: Callable, label_levels: Callable | None = None,
             case_filter: Callable[[Case], bool] | None = None, derived_labels: str | Path | None = None,
             synth: str | None = None) -> dict:
    """Evaluate every labelled case under ``data`` (optionally filtered; see :func:`evaluate_case`)."""
    cases = [c for c in discover_cases(data) if c.labels is not None and (case_filter is None or case_filter(c))]
    per_case = [evaluate_case(c, segment, label_levels, derived_labels, synth) for c in cases]
    datasets = sorted({c["dataset"] for c in per_case})
    by_dataset = {d: summarise([c for c in per_case if c["dataset"] == d]) for d in datasets}
    return {"data": str(data), "cases": per_case, "summary": summarise(per_case), "by_dataset": by_dataset}


def write_result(result: dict, out_json: str | Path) -> None:
    """Write the result as JSON (NaN written as null)."""
    def clean(o):
        if isinstance(o, float) and math.isnan(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o
    Path(out_json).write_text(json.dumps(clean(result), indent=2) + "\n")
