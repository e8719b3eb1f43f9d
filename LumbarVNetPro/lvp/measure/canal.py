"""Canal measurements on axial reformats: AP diameter, dural sac area, lateral recess depths.

Left and right follow the image's patient coordinates (``u`` points to the patient's left, LPS
+x). Many public data sets, the shared SPIDER/MRS/Chu copies included, do not record left-right
sense reliably: treat *left* and *right* as image sides unless the series' orientation is trusted.
"""

from __future__ import annotations

import numpy as np

from lvp.labels import CANAL_LABEL
from lvp.measure.reformat import Reformat, largest_component
from lvp.measure.types import LevelMeasurements

RECESS_POSITION = 0.8  # recess depth read at 80 % of the canal half-width from its centre


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


def canal_at_disc(m: LevelMeasurements, mid: Reformat, above: Reformat | None = None,
                  below: Reformat | None = None) -> None:
    """Canal AP diameter and dural sac area on the mid-disc axial plane.

    The AP diameter is read at the sac's centre column. When the slab cuts the sac (left-right)
    its centre is not seen: the diameter is read at the disc's centre line, or, where the visible
    sac does not reach that line (a herniated level in a thin slab, spider209 / spider234), at the
    deepest column of the visible sac (the one nearest its midline) instead of being dropped.
    Where the mid-disc plane has no canal but the planes through the bodies above and below
    (``above``, ``below``) have one, the disc interrupts the canal: the diameter is 0 mm, with a
    note (graded as severe stenosis).
    """
    canal, truncated = _canal(mid)
    if not canal.any():
        if above is not None and below is not None and _canal(above)[0].any() and _canal(below)[0].any():
            m.add("canal_ap_diameter_mm", 0.0, "mm", [[float(x) for x in mid.origin]])
            m.notes.append("canal interrupted at the disc level (canal above and below, none at the disc): "
                           "AP diameter 0 mm")
        else:
            m.notes.append("canal not found at the disc level")
        return
    s = mid.step
    cols = np.flatnonzero(canal.any(axis=1))
    if truncated:
        # The slab cuts the sac: read the AP diameter at the disc's centre line, no area; where the
        # visible sac does not reach that line, at its deepest column (the nearest to its midline).
        col = int(np.argmin(np.abs(mid.r1)))
        note = "dural sac cut by the field of view: area not measured"
        if not canal[col].any():
            col = int(cols[np.argmax(canal[cols].sum(axis=1))])
            note += "; the visible sac misses the disc's centre line: AP diameter read at its deepest column"
        m.notes.append(note)
    else:
        col = int(round((cols[0] + cols[-1]) / 2))
    ap, pts = _depth(mid, canal, col)
    m.add("canal_ap_diameter_mm", ap, "mm", pts)
    if not truncated:
        ii, jj = np.nonzero(canal)
        outline = [
            mid.lps(mid.r1[i], mid.r2[j]) for i, j in zip(ii[:: max(len(ii) // 24, 1)], jj[:: max(len(ii) // 24, 1)])
        ]
        m.add("dural_sac_area_mm2", canal.sum() * s * s, "mm2", outline)


def lateral_recesses(m: LevelMeasurements, ax: Reformat) -> None:
    """Lateral recess depth, left and right, on the axial plane at pedicle level below the disc."""
    canal, truncated = _canal(ax)
    if not canal.any() or truncated:
        m.notes.append("lateral recesses not measurable (canal missing or cut by the field of view)")
        return
    s = ax.step
    cols = np.flatnonzero(canal.any(axis=1))
    lo, hi = ax.r1[cols[0]] - s / 2, ax.r1[cols[-1]] + s / 2
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    for side, sign in (("left", 1.0), ("right", -1.0)):
        col = int(np.argmin(np.abs(ax.r1 - (mid + sign * RECESS_POSITION * half))))
        depth, pts = _depth(ax, canal, col)
        m.add(f"lateral_recess_depth_{side}_mm", depth, "mm", pts)
