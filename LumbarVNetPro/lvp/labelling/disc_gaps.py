"""Gaps in the chain of discs: stray discs far beyond either end of it (no bone in between) and
discs the network missed (a gap about twice the neighbouring spacings, filled with bone).
"""

from __future__ import annotations

import numpy as np

from lvp.labelling.thresholds import MISSING_DISC_RATIO, SMALL_DISC_RATIO, STRAY_DISC_RATIO
from lvp.planes import DiscPlane, in_plane_axes


def _bone_coverage(pts: np.ndarray, a: np.ndarray, b: np.ndarray, radius_mm: float = 30.0) -> float:
    """Fraction of the segment from ``a`` to ``b`` (LPS mm) along which bone points lie within
    ``radius_mm`` of it (20 bins).
    """
    d = (b - a).astype(np.float32)
    length2 = float(d @ d)
    if length2 == 0 or len(pts) == 0:
        return 0.0
    w = pts - a.astype(np.float32)
    t = (w @ d) / length2
    sel = (t > 0) & (t < 1)
    t_sel = np.compress(sel, t)  # (compress: numpy's boolean indexing is several times slower)
    near = np.linalg.norm(np.compress(sel, w, axis=0) - t_sel[:, None] * d[None, :], axis=1) <= radius_mm
    bins = np.unique((np.compress(near, t_sel) * 20).astype(int))
    return bins.size / 20.0


def _drop_stray_end_discs(planes: list[tuple[int, DiscPlane]], disc_sizes: np.ndarray, pts: np.ndarray) -> int:
    """Drop discs at either end of the chain, far from it with no bone in between: not spine.

    ``planes`` (disc id, plane) is sorted cranial -> caudal and edited in place; ``disc_sizes``
    are the disc components' sizes by id and ``pts`` the bone points (LPS mm). Returns how many
    were dropped.
    """
    n_dropped = 0
    while len(planes) >= 4:
        c = np.array([p.center_lps for _, p in planes])
        gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
        ref = float(np.median(gaps))
        sizes_d = np.array([float(disc_sizes[i]) for i, _ in planes])
        small = sizes_d < SMALL_DISC_RATIO * float(np.median(sizes_d))

        stray = [
            gap > MISSING_DISC_RATIO * ref
            and (_bone_coverage(pts, c[nb], c[k]) < 0.5 or bool(small[k] and gap > STRAY_DISC_RATIO * ref))
            for k, nb, gap in ((-1, -2, gaps[-1]), (0, 1, gaps[0]))
        ]
        if stray[0]:
            planes.pop()
        elif stray[1]:
            planes.pop(0)
        else:
            break
        n_dropped += 1
    return n_dropped


def _with_missing_discs(planes: list[DiscPlane], pts: np.ndarray) -> list[DiscPlane]:
    """The disc planes plus interpolated separators where a gap is about twice the neighbouring
    spacings and filled with bone (a disc the network missed: the bone there holds two
    vertebrae).
    """
    if len(planes) < 3:
        return list(planes)
    c = np.array([p.center_lps for p in planes])
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    out: list[DiscPlane] = [planes[0]]
    for k, g in enumerate(gaps):
        others = np.delete(gaps, k)
        near = np.argsort(np.abs(np.delete(np.arange(gaps.size), k) - k))[:3]
        ref = float(np.median(others[near]))
        n_missing = int(round(g / ref)) - 1 if ref > 0 and g > MISSING_DISC_RATIO * ref else 0
        a, b = planes[k], planes[k + 1]
        if n_missing and _bone_coverage(pts, a.center_lps, b.center_lps) < 0.6:
            n_missing = 0
        for j in range(1, n_missing + 1):
            t = j / (n_missing + 1)
            normal = (1 - t) * a.normal_lps + t * b.normal_lps
            normal /= np.linalg.norm(normal)
            u, v = in_plane_axes(normal)
            out.append(DiscPlane((1 - t) * a.center_lps + t * b.center_lps, normal, u, v,
                                 (1 - t) * a.extent_u_mm + t * b.extent_u_mm,
                                 (1 - t) * a.extent_v_mm + t * b.extent_v_mm, 0.0))
        out.append(b)
    return out
