"""Scan-plane accuracy against planes fitted to the reference disc masks.

Reference plane of a disc: the bisector of two planes fitted separately to its upper and lower
surfaces (per superior-inferior column of the canonical grid, the first and last disc voxel),
through the disc's voxel centroid. LVP's plane comes from :func:`lvp.labelling.label_levels`
on the segmentation under test: the reference masks by default (then only the fitting method
differs: this measures the mid-surface fit, not the network) or predictions
(``<case>_pred.nii.gz``). Discs are matched by nearest centre. Errors: angle between normals
(degrees) and distance between centres (mm).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from lvp.errors import InputError
from lvp.labelling import label_levels
from lvp.labels import DISC
from lvp.validation.cases import load_canonical, spider_case_ids, tss_to_classes
from lvp.validation.grades import prediction_path


def _surface_normal(pts: np.ndarray) -> np.ndarray:
    d = pts - pts.mean(axis=0)
    return np.linalg.eigh(d.T @ d)[1][:, 0]


def reference_planes(disc_mask: np.ndarray, volume) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, unit normal towards inferior) of every disc component, endplate-bisector fit."""
    comp, n = ndimage.label(disc_mask, structure=np.ones((3, 3, 3), bool))
    inferior = volume.affine[:3, 1] / np.linalg.norm(volume.affine[:3, 1])
    out = []
    for i, box in enumerate(ndimage.find_objects(comp)):
        m = comp[box] == i + 1
        if m.sum() * np.prod(volume.spacing) < 150:
            continue
        off = np.array([b.start for b in box])
        has = m.any(axis=1)
        lr, ap = np.nonzero(has)
        top = np.argmax(m, axis=1)[lr, ap]
        bottom = m.shape[1] - 1 - np.argmax(m[:, ::-1, :], axis=1)[lr, ap]
        normals = []
        for si in (top, bottom):
            pts = volume.index_to_lps(np.stack([lr, si, ap], axis=1) + off)
            nrm = _surface_normal(pts)
            normals.append(nrm if nrm @ inferior > 0 else -nrm)
        normal = normals[0] + normals[1]
        normal /= np.linalg.norm(normal)
        centre = volume.index_to_lps(np.argwhere(m).mean(axis=0) + off)
        out.append((centre, normal))
    return out


def plane_errors(semantic: np.ndarray, reference_disc: np.ndarray, volume) -> list[dict]:
    """Angle and centre errors of LVP's planes (from ``semantic``) against the reference discs."""
    lab = label_levels(semantic, volume)
    refs = reference_planes(reference_disc, volume)
    rows = []
    for c_ref, n_ref in refs:
        if not lab.discs:
            break
        d = min(lab.discs, key=lambda x: np.linalg.norm(x.plane.center_lps - c_ref))
        angle = np.degrees(np.arccos(np.clip(abs(float(d.plane.normal_lps @ n_ref)), 0, 1)))
        rows.append(
            {"level": d.name, "angle_deg": float(angle), "offset_mm": float(np.linalg.norm(d.plane.center_lps - c_ref))}
        )
    return rows


def validate_planes(
    data: Path, out: Path | None = None, pred_dir: Path | None = None, limit: int | None = None
) -> dict:
    """Plane accuracy on SPIDER and MRS cases; summary (median, 95th percentile, max) to JSON."""
    data = Path(data)
    rows = []
    cases = [("spider-t2-space", c, f"{c}_t2", f"{c}_labels") for c in spider_case_ids(data)[:limit]]
    for p in sorted((data / "mrs-ivd-t2").glob("*_labels.nii.gz"))[:limit]:
        c = p.name[: -len("_labels.nii.gz")]
        cases.append(("mrs-ivd-t2", c, f"{c}_image", f"{c}_labels"))
    if pred_dir:
        # Only the cases that have a prediction (e.g. the network's held-out validation cases).
        found = {case: prediction_path(Path(pred_dir), case) for _, case, _, _ in cases}
        cases = [c for c in cases if found[c[1]] is not None]
        if not cases:
            raise InputError(f"no <case>_pred.nii.gz or <case>/segmentation.nii.gz under {pred_dir}")
    for folder, case, img, lbl in cases:
        vol = load_canonical(data / folder / f"{img}.nii.gz")
        ref = load_canonical(data / folder / f"{lbl}.nii.gz").array
        ref_disc = ref == DISC if folder == "spider-t2-space" else ref > 0
        if pred_dir:
            path, kind = found[case]
            pred = load_canonical(path).array
            semantic = (tss_to_classes(pred) if kind == "totalspineseg" else pred).astype(np.uint8)
        else:
            semantic = ref.astype(np.uint8) if folder == "spider-t2-space" else (ref > 0).astype(np.uint8) * DISC
        for r in plane_errors(semantic, ref_disc, vol):
            rows.append({"dataset": folder, "case": case, **r})
    ang = np.array([r["angle_deg"] for r in rows])
    off = np.array([r["offset_mm"] for r in rows])

    def stats(x: np.ndarray) -> dict:
        if x.size == 0:
            return {}
        return {
            k: round(float(v), 3)
            for k, v in zip(("median", "p95", "max", "mean"), (*np.percentile(x, [50, 95]), x.max(), x.mean()))
        }

    result = {
        "input_segmentation": "predicted" if pred_dir else "reference masks (measures the plane fit, not the network)",
        "n_discs": len(rows),
        "angle_deg": stats(ang),
        "offset_mm": stats(off),
        "rows": rows,
    }
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result
