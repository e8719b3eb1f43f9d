"""Disc mid-planes and the axial scan-plane guidance derived from them.

A disc's mid-plane is fitted to its *mid-surface*: for every column of the canonical grid along
the superior-inferior axis, the middle of the disc voxels in that column. The plane through
those points (principal axes, weighted by the column counts) bisects the two endplates even
for wedge-shaped discs, and it stays well defined on thin sagittal slabs where the disc is cut
at the slab's sides (a plain principal-axis fit of the disc voxels is not: a disc 13 mm wide
and 10 mm high has two similar small axes). Rim columns that cross only part of the disc's
thickness are left out.

The scan plane for a level is that mid-plane, with in-plane axes ``u`` (towards the patient's
left) and ``v`` (towards posterior), as the slab an operator positions for axial imaging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvp.io.volume import Volume

DEFAULT_THICKNESS_MM = 4.0  # usual lumbar axial slice thickness
MARGIN_MM = 15.0  # field-of-view margin around the disc in the slab plane

POSTERIOR_LPS = np.array([0.0, 1.0, 0.0])
LEFT_LPS = np.array([1.0, 0.0, 0.0])


@dataclass
class DiscPlane:
    """A fitted disc mid-plane in LPS mm (``normal`` points inferior, ``v`` posterior)."""

    center_lps: np.ndarray
    normal_lps: np.ndarray
    axis_u_lps: np.ndarray  # towards the patient's left
    axis_v_lps: np.ndarray  # towards posterior
    extent_u_mm: float  # disc width along u
    extent_v_mm: float  # disc depth along v
    height_mm: float  # mean disc height along the normal


@dataclass
class ScanPlane:
    """The axial slab suggested for one disc level (report.json ``scan_plane``)."""

    center_lps: np.ndarray
    normal_lps: np.ndarray
    axis_u_lps: np.ndarray
    axis_v_lps: np.ndarray
    thickness_mm: float
    extent_mm: tuple[float, float]

    def to_dict(self) -> dict:
        """The report.json 1.0 ``scan_plane`` object."""
        return {
            "center_lps": [round(float(v), 3) for v in self.center_lps],
            "normal_lps": [round(float(v), 5) for v in self.normal_lps],
            "axis_u_lps": [round(float(v), 5) for v in self.axis_u_lps],
            "axis_v_lps": [round(float(v), 5) for v in self.axis_v_lps],
            "thickness_mm": float(self.thickness_mm),
            "extent_mm": [round(float(self.extent_mm[0]), 1), round(float(self.extent_mm[1]), 1)],
        }


def in_plane_axes(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit axes ``u`` (left) and ``v`` (posterior) orthogonal to ``normal``."""
    v = POSTERIOR_LPS - (POSTERIOR_LPS @ normal) * normal
    if np.linalg.norm(v) < 1e-6:  # a normal along AP: fall back to the left axis
        v = LEFT_LPS - (LEFT_LPS @ normal) * normal
    v /= np.linalg.norm(v)
    u = np.cross(v, normal)
    if u @ LEFT_LPS < 0:
        u = -u
    return u, v


def fit_disc_plane(mask: np.ndarray, affine: np.ndarray, spacing: tuple[float, float, float]) -> DiscPlane | None:
    """Fit the mid-plane of one disc mask on a canonical grid with the given index->LPS affine."""
    count = mask.sum(axis=1)  # columns along SI: (lr, ap)
    if count.sum() < 10:
        return None
    si = np.arange(mask.shape[1], dtype=float)
    mid = (mask * si[None, :, None]).sum(axis=1) / np.maximum(count, 1)
    # Rim columns of a tilted disc cross only part of its thickness and bias the mid-points:
    # keep the columns that cross most of it.
    lr_all, ap_all = np.nonzero(count)
    w_all = count[lr_all, ap_all].astype(float)
    idx_all = np.stack([lr_all, mid[lr_all, ap_all], ap_all], axis=1)
    # The centre is the disc's voxel centroid (all columns).
    center = (idx_all * w_all[:, None]).sum(axis=0) / w_all.sum() @ affine[:3, :3].T + affine[:3, 3]
    full = 0.6 * np.percentile(count[count > 0], 90)
    lr, ap = np.nonzero(count >= full)
    if lr.size < 6:
        lr, ap = np.nonzero(count)
    w = count[lr, ap].astype(float)
    idx = np.stack([lr, mid[lr, ap], ap], axis=1).astype(float)
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    d = pts - (pts * w[:, None]).sum(axis=0) / w.sum()
    cov = (d * w[:, None]).T @ d / w.sum()
    evals, evecs = np.linalg.eigh(cov)
    normal = evecs[:, 0]
    inferior = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    if normal @ inferior < 0:
        normal = -normal
    # Degenerate mid-surface (a line: one column row only): fall back to the SI axis.
    if evals[1] < 1e-6:
        normal = inferior
    u, v = in_plane_axes(normal)
    extent_u = float(np.ptp(d @ u)) + spacing[0]
    extent_v = float(np.ptp(d @ v)) + spacing[2]
    height = float(np.average(count[lr, ap], weights=w)) * spacing[1] * abs(inferior @ normal)
    return DiscPlane(center, normal, u, v, extent_u, extent_v, height)


def scan_planes(volume: Volume, lab, thickness_mm: float = DEFAULT_THICKNESS_MM) -> dict[str, ScanPlane]:
    """The axial slab through the mid-plane of every labelled disc, cranial to caudal.

    ``lab`` is a :class:`lvp.labelling.Labelling`; ``volume`` is accepted for a uniform
    signature with the measurement functions (the planes come from the labelling).
    """
    out: dict[str, ScanPlane] = {}
    for disc in lab.discs:
        p = disc.plane
        if p is None:
            continue
        extent = (max(60.0, p.extent_u_mm + 2 * MARGIN_MM), max(60.0, p.extent_v_mm + 2 * MARGIN_MM + 30.0))
        out[disc.name] = ScanPlane(p.center_lps, p.normal_lps, p.axis_u_lps, p.axis_v_lps, thickness_mm, extent)
    return out
