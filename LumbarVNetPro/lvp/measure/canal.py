"""Canal measurements on the axial reformat through the disc: dural sac AP diameter and area.

What is measured, and what is deliberately not (issue 15, a musculoskeletal radiologist's review):

* The **AP diameter of the dural sac** (the canal label) at the sac's centre column, or at the
  disc's centre line when the slab cuts the sac. It is a drawn measurement only: on MR the dural
  sac is smaller than the bony canal, so the bony-canal cut-offs (Verbiest, Ullrich) do not apply
  to it, and LVP grades no stenosis from it.
* The **dural sac cross-sectional area** only where the axial section is *valid*
  (:func:`section_facts`): every voxel side at most :data:`ISO_MAX_MM` (a near-isotropic 3D
  acquisition, whose axial reformat resolves the sac's outline) and the field of view covering at
  least :data:`RECESS_MARGIN_MM` on both sides of the sac's centre (the whole sac and the recesses
  beside it). A thin sagittal slab (SPIDER: 13-30 mm, 1 mm between slices) is not valid.
* **No lateral recess measurement**: the recess is bony (vertebral body to superior articular
  process, Steurer et al. 2011); the segmentation has no facet or recess label, and the width of
  the dural sac label is not the recess. See docs/validation.md for what an axial model would need.

Where the canal label vanishes at the disc (none on the mid-disc plane), nothing is read: the
canal is *not visualised* there (``canal_visualised`` False), which the grading reports as such,
instead of reading 0 mm or the depth of whatever part of the sac is left.

Left and right follow the image's patient coordinates (``u`` points to the patient's left, LPS
+x). Many public data sets, the shared SPIDER/MRS/Chu copies included, do not record left-right
sense reliably: treat *left* and *right* as image sides unless the series' orientation is trusted.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lvp.labels import CANAL_LABEL
from lvp.measure.reformat import Reformat, largest_component
from lvp.measure.types import LevelMeasurements

ISO_MAX_MM = 1.25  # largest voxel side of a "3D isotropic" acquisition (axial reformat resolves the sac)
RECESS_MARGIN_MM = 15.0  # coverage each side of the sac's centre: the sac and both lateral recesses


def _canal(ax: Reformat) -> tuple[np.ndarray, bool]:
    """The canal's largest component and whether the volume's edge cuts it (left-right)."""
    canal = largest_component(ax.values == CANAL_LABEL)
    if not canal.any():
        return canal, False
    cols = np.flatnonzero(canal.any(axis=1))
    rows = np.flatnonzero(canal.any(axis=0))
    lo, hi = cols[0], cols[-1]
    truncated = lo == 0 or hi == canal.shape[0] - 1
    for c in (lo - 1, hi + 1):
        if 0 <= c < canal.shape[0] and not ax.valid[c, rows[0] : rows[-1] + 1].all():
            truncated = True
    return canal, truncated


def _depth(ax: Reformat, canal: np.ndarray, col: int) -> tuple[float, list[list[float]]]:
    nz = np.flatnonzero(canal[col])
    if nz.size == 0:
        return 0.0, []
    s = ax.step
    pts = [ax.lps(ax.r1[col], ax.r2[nz[0]] - s / 2), ax.lps(ax.r1[col], ax.r2[nz[-1]] + s / 2)]
    return nz.size * s, pts


def _outline(ax: Reformat, mask: np.ndarray, n: int = 48) -> list[list[float]]:
    """Up to ``n`` boundary points of a 2-D mask, ordered by angle around its centroid (a polygon)."""
    edge = mask & ~ndimage.binary_erosion(mask)
    ii, jj = np.nonzero(edge)
    x, y = ax.r1[ii], ax.r2[jj]
    order = np.argsort(np.arctan2(y - y.mean(), x - x.mean()))
    order = order[:: max(len(order) // n, 1)]
    return [ax.lps(float(x[k]), float(y[k])) for k in order]


def section_facts(ax: Reformat, centre_mm: float, sac_whole: bool, voxel_mm: float) -> dict:
    """Whether the axial section through the disc is valid for an axial quantity (see the module doc).

    ``centre_mm``: the sac's centre along the reformat's left-right axis; ``voxel_mm``: the largest
    voxel side of the acquisition.
    """
    cols = np.flatnonzero(ax.valid.any(axis=1))
    if cols.size == 0:
        return {"valid": False, "sac_whole": False, "coverage_mm": [0.0, 0.0], "voxel_mm": voxel_mm}
    s = ax.step
    left = float(ax.r1[cols[-1]] + s / 2 - centre_mm)  # r1 points to the patient's left
    right = float(centre_mm - (ax.r1[cols[0]] - s / 2))
    iso = voxel_mm <= ISO_MAX_MM
    valid = bool(sac_whole and iso and min(left, right) >= RECESS_MARGIN_MM)
    why = []
    if not iso:
        why.append(f"voxels up to {voxel_mm:.2f} mm (a valid axial reformat needs <= {ISO_MAX_MM} mm)")
    if not sac_whole:
        why.append("the field of view cuts the dural sac")
    elif min(left, right) < RECESS_MARGIN_MM:
        why.append(f"the slab covers {right:.0f} mm right and {left:.0f} mm left of the sac's centre "
                   f"(sac and recesses need {RECESS_MARGIN_MM:.0f} mm each side)")
    return {"valid": valid, "sac_whole": bool(sac_whole), "coverage_mm": [round(right, 2), round(left, 2)],
            "voxel_mm": round(float(voxel_mm), 3), "why_not": "; ".join(why) or None}


def _coverage_evidence(m: LevelMeasurements, ax: Reformat, canal: np.ndarray, a_mm: float) -> None:
    cols = np.flatnonzero(ax.valid.any(axis=1))
    s = ax.step
    item = {"kind": "coverage", "measurement": None, "plane": "axial (disc mid-plane)",
            "points_lps": [ax.lps(ax.r1[cols[0]] - s / 2, a_mm), ax.lps(ax.r1[cols[-1]] + s / 2, a_mm)],
            "label": "slab coverage (left-right) at the disc"}
    sac_cols = np.flatnonzero(canal.any(axis=1))
    if sac_cols.size:
        item["sac_points_lps"] = [ax.lps(ax.r1[sac_cols[0]] - s / 2, a_mm), ax.lps(ax.r1[sac_cols[-1]] + s / 2, a_mm)]
    m.evidence.append(item)


def canal_at_disc(m: LevelMeasurements, mid: Reformat, above: Reformat | None = None,
                  below: Reformat | None = None, voxel_mm: float = 1.0) -> None:
    """Dural sac AP diameter, section validity and (on a valid section) the dural sac area.

    The AP diameter is read at the sac's centre column; when the slab cuts the sac left-right, at
    the disc's centre line, and not at all when the visible sac does not reach that line (its
    deepest visible column is not the canal's AP diameter: at an obliterated canal it read 16 mm).
    No canal on the mid-disc plane sets ``canal_visualised`` False (with ``above`` and ``below``
    showing a canal: the label vanishes at the disc).
    """
    canal, truncated = _canal(mid)
    if not canal.any():
        m.canal_visualised = False
        if above is not None and below is not None and _canal(above)[0].any() and _canal(below)[0].any():
            m.notes.append("canal not visualised at the disc: the canal label is present above and below the "
                           "disc and absent on the mid-disc plane (no diameter read)")
        else:
            m.notes.append("canal not found at the disc level")
        m.section.update(section_facts(mid, 0.0, False, voxel_mm))
        return
    m.canal_visualised = True
    s = mid.step
    cols = np.flatnonzero(canal.any(axis=1))
    if truncated:
        col = int(np.argmin(np.abs(mid.r1)))
        centre = 0.0
        m.notes.append("dural sac cut by the field of view (left-right): area not measured")
    else:
        col = int(round((cols[0] + cols[-1]) / 2))
        centre = float(mid.r1[col])
    m.section.update(section_facts(mid, centre, not truncated, voxel_mm))
    rows = np.flatnonzero(canal.any(axis=0))
    _coverage_evidence(m, mid, canal, float(mid.r2[rows].mean()))
    if not canal[col].any():
        m.notes.append("the visible part of the dural sac misses the disc's centre line: AP diameter not read")
        return
    ap, pts = _depth(mid, canal, col)
    m.add("canal_ap_diameter_mm", ap, "mm", pts)
    if m.section["valid"]:
        m.add("dural_sac_area_mm2", canal.sum() * s * s, "mm2", _outline(mid, canal))
    elif not truncated:
        m.notes.append(f"dural sac area not measured: {m.section['why_not']}")
