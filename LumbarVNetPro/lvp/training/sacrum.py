"""Derived sacrum labels for the SPIDER training masks (which leave the sacrum unlabelled).

The SPIDER masks in ``../shared/data/spider-t2-space`` label vertebrae (1), discs (2) and the canal
(3) down to the lowest lumbar disc; the sacrum below it is background. A sacrum class (4) is
derived from the reference masks and the image, reproducibly and without hand edits:

1. the reference's lowest disc (the most caudal disc component of at least 200 mm³) gives the
   lumbosacral disc: its centroid, its AP half-width and its normal (the direction of its smallest
   spread within the sagittal plane, pointing caudally; the slabs are too narrow for a left-right
   axis);
2. the vertebral body directly above it (the largest-enough bone component nearest the disc on its
   cranial side, restricted to the part over the disc's AP footprint) is mirrored across the
   disc's mid-plane: S1's cranial endplate faces L5's caudal endplate across the disc, so the
   mirror image is a template of the S1 body (the upper sacrum);
3. inside that template, voxels unlabelled in the reference whose intensity lies within the L5
   body's marrow range (its 2nd-99th percentile, widened by 10 % of its 5-95 span) are kept; the
   largest connected part, closed (2.5 mm) and hole-filled slice by slice, restricted to the
   template again, is the sacrum label.

The rule labels the S1 body and the adjoining upper sacrum, not the whole sacrum (the slabs cut it,
and the lower sacrum has no template). Derived masks: ``models/training-labels`` (written by
:func:`write_derived_labels`).
Every derived mask was checked visually (``docs/images/sacrum_labels.png``, one sagittal slice per
case). Nothing here imports SimpleITK at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lvp.labels import DISC, SACRUM, VERTEBRA

MIN_DISC_MM3 = 200.0


@dataclass
class SacrumParams:
    """Parameters of the derivation (defaults are the ones used for the shipped labels)."""

    margin: float = 1.05  # scale of the disc's AP half-width (the body part over the disc)
    intensity_lo: float = 2.0  # marrow range: body percentiles (lo, hi)
    intensity_hi: float = 99.0
    intensity_pad: float = 0.10  # widen the range by this fraction of the body's p5-p95 span
    close_mm: float = 2.5


def _coords_mm(mask: np.ndarray, spacing) -> np.ndarray:
    return np.argwhere(mask) * np.asarray(spacing, dtype=float)


def lowest_disc(semantic: np.ndarray, spacing) -> np.ndarray | None:
    """Mask of the reference's most caudal disc component (≥ 200 mm³), or None."""
    comp, n = ndimage.label(semantic == DISC)
    if n == 0:
        return None
    sizes = np.bincount(comp.ravel())[1:] * float(np.prod(spacing))
    cents = ndimage.center_of_mass(semantic == DISC, comp, range(1, n + 1))
    ok = [i for i in range(n) if sizes[i] >= MIN_DISC_MM3]
    if not ok:
        return None
    best = max(ok, key=lambda i: cents[i][1])  # axis 1 points inferior
    return comp == best + 1


def _frame(disc_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and axes (rows: in-plane AP-ish, left-right, normal pointing caudally) of the disc.

    The normal is taken in the sagittal plane (from the disc's (si, ap) spread): the slabs are only
    13-30 mm wide, narrower than a disc, and a disc cut at the slab's edge has a meaningless
    left-right principal axis.
    """
    c = disc_xyz.mean(0)
    _, vecs = np.linalg.eigh(np.cov((disc_xyz[:, 1:] - c[1:]).T))
    normal = np.array([0.0, vecs[0, 0], vecs[1, 0]])  # smallest (si, ap) spread
    if normal[1] < 0:
        normal = -normal
    ap = np.array([0.0, -normal[2], normal[1]])
    return c, np.stack([ap, np.array([1.0, 0.0, 0.0]), normal])


def derive_sacrum(semantic: np.ndarray, image: np.ndarray, spacing, params: SacrumParams | None = None) -> np.ndarray:
    """Boolean sacrum mask on the canonical grid of ``semantic`` (see the module docstring).

    Raises ``ValueError`` when the masks hold no disc or no vertebral body above the lowest disc.
    """
    p = params or SacrumParams()
    sp = np.asarray(spacing, dtype=float)
    disc = lowest_disc(semantic, sp)
    if disc is None:
        raise ValueError("no disc in the reference: the sacrum cannot be placed")
    dxyz = _coords_mm(disc, sp)
    c, axes = _frame(dxyz)
    n = axes[2]
    t_disc = (dxyz - c) @ n
    # AP half-width of the disc; left-right is left open (the body mask bounds it, and a slab may
    # cut the disc at its edge).
    radii = [float(np.percentile(np.abs((dxyz - c) @ axes[0]), 98)) * p.margin, 1e6]

    # The body directly above: vertebra components on the cranial side, nearest the disc.
    bone, nb = ndimage.label(semantic == VERTEBRA)
    if nb == 0:
        raise ValueError("no vertebra in the reference above the lowest disc")
    cents = np.asarray(ndimage.center_of_mass(semantic == VERTEBRA, bone, range(1, nb + 1))) * sp
    sizes = np.bincount(bone.ravel())[1:] * float(np.prod(sp))
    above = [i for i in range(nb) if (cents[i] - c) @ n < 0 and sizes[i] > 2000.0]
    if not above:
        raise ValueError("no vertebral body above the lowest disc")
    # Nearest along the normal and close to the disc axis: the L5 body, not its posterior elements.
    body_i = min(above, key=lambda i: np.linalg.norm(cents[i] - c))
    body = bone == body_i + 1
    bxyz = _coords_mm(body, sp)
    tb = (bxyz - c) @ n
    height = float(np.percentile(tb, 95) - np.percentile(tb, 5))
    # Only the part of that component over the disc: the body, not posterior elements joined to it.
    bu = (bxyz - c) @ axes[0]
    bv = (bxyz - c) @ axes[1]
    over = (bu / (radii[0] * 1.1)) ** 2 + (bv / (radii[1] * 1.1)) ** 2 <= 1.0
    body_idx = np.argwhere(body)[over]
    body = np.zeros_like(body)
    body[tuple(body_idx.T)] = True
    core = ndimage.binary_erosion(body, iterations=2)
    vals = np.asarray(image, dtype=float)[core if core.any() else body]
    lo, hi = np.percentile(vals, [p.intensity_lo, p.intensity_hi])
    pad = p.intensity_pad * float(np.percentile(vals, 95) - np.percentile(vals, 5))
    lo, hi = lo - pad, hi + pad

    # Template: the body mirrored across the disc's mid-plane (S1's cranial endplate faces L5's
    # caudal endplate across the disc), sampled on the grid by nearest neighbour.
    t_mid = float(np.median(t_disc))
    lo_i = np.maximum(np.floor((c - 2.5 * height - 40.0) / sp).astype(int), 0)
    hi_i = np.minimum(np.ceil((c + 2.5 * height + 40.0) / sp).astype(int) + 1, semantic.shape)
    sub = tuple(slice(a, b) for a, b in zip(lo_i, hi_i))
    idx = np.indices(tuple(hi_i - lo_i)).reshape(3, -1).T + lo_i
    pts = idx * sp
    t = (pts - c) @ n
    src = pts - 2.0 * np.outer(t - t_mid, n)
    mirrored_sub = ndimage.map_coordinates(body.astype(np.uint8), (src / sp).T, order=0, mode="constant") > 0
    mirrored = np.zeros(semantic.shape, bool)
    mirrored[sub] = mirrored_sub.reshape(tuple(hi_i - lo_i))
    mirrored &= semantic == 0
    if not mirrored.any():
        return mirrored
    img = np.asarray(image, dtype=float)
    cand = mirrored & (img >= lo) & (img <= hi)
    cand = ndimage.binary_opening(cand, structure=np.ones((1, 3, 3), bool))
    comp, nc = ndimage.label(cand)
    if nc == 0:
        return np.zeros(semantic.shape, bool)
    sizes_c = np.bincount(comp.ravel())
    sizes_c[0] = 0
    sac = comp == int(np.argmax(sizes_c))  # the marrow-like bulk of the template
    r = max(1, int(round(p.close_mm / sp[1])))
    st = np.zeros((1, 2 * r + 1, 2 * r + 1), bool)
    st[0] = True
    sac = ndimage.binary_closing(sac, structure=st)
    sac = np.stack([ndimage.binary_fill_holes(s) for s in sac])
    return sac & mirrored


def with_sacrum(semantic: np.ndarray, image: np.ndarray, spacing, params: SacrumParams | None = None) -> np.ndarray:
    """``semantic`` (uint8, classes 0-3) with the derived sacrum written as class 4."""
    out = np.array(semantic, dtype=np.uint8, copy=True)
    out[derive_sacrum(semantic, image, spacing, params) & (out == 0)] = SACRUM
    return out


def write_derived_labels(data_root: str | Path, out_dir: str | Path, params: SacrumParams | None = None) -> list[Path]:
    """Write ``<case>_labels5.nii.gz`` (0-4, source geometry of the case) for every labelled SPIDER case."""
    import SimpleITK as sitk

    from lvp.datasets import derived_labels_path, discover_cases, load_case

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case in discover_cases(data_root):
        if case.labels is None or case.scheme not in ("lvp3", "spider"):
            continue
        vol, sem, _ = load_case(case)
        lab = with_sacrum(sem, vol.array, vol.spacing, params)
        path = derived_labels_path(out, case.case_id)
        sitk.WriteImage(vol.to_source_image(lab), str(path), useCompression=True)
        written.append(path)
    return written
