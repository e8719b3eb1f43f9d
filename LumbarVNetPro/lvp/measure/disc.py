"""Disc geometry: heights, disc height index and posterior displacement of disc material."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lvp.measure.reformat import Reformat, first_run_ends, first_runs, label_mask
from lvp.measure.types import LevelMeasurements

# Where the anterior / middle / posterior heights are read: fractions of the disc depth from the
# anterior disc margin to the posterior margin line of the adjacent vertebral bodies.
HEIGHT_POSITIONS = (0.1, 0.5, 0.9)
MIN_DISPLACEMENT_FOR_BASE_MM = 0.75


def _posterior_margin(sag: Reformat, bone: np.ndarray, rows: np.ndarray) -> float | None:
    """Median posterior end (mm, along e2) of the first bone run from anterior over ``rows``."""
    rows = rows[(rows >= 0) & (rows < bone.shape[0])]
    ends = first_run_ends(bone[rows])
    ends = ends[ends >= 0]
    return float(np.median(sag.r2[ends] + sag.step / 2)) if ends.size else None


def disc_geometry(m: LevelMeasurements, sag: Reformat, disc_label: int, bone_labels: np.ndarray) -> dict:
    """Heights (anterior, middle, posterior), DHI and the body margins on the mid-sagittal reformat.

    Returns the frame facts later steps need: ``front`` (anterior disc margin), ``back``
    (posterior body margin line) and ``height`` (middle height), all in mm along the reformat.
    """
    disc = sag.values == disc_label
    bone = label_mask(sag.values, bone_labels)
    step = sag.step
    centre_row = int(np.argmin(np.abs(sag.r1)))
    rows_mid = slice(max(centre_row - 4, 0), centre_row + 5)
    cols = np.flatnonzero(disc[rows_mid].any(axis=0))
    if cols.size == 0:
        m.notes.append("disc not found on the mid-sagittal reformat")
        return {}
    front = float(sag.r2[cols[0]] - step / 2)
    # Middle height first (to place the body rows just outside the endplates).
    mid_col = cols[cols.size // 2]
    rows = np.flatnonzero(disc[:, mid_col])
    h_mid = (rows[-1] - rows[0] + 1) * step if rows.size else 8.0
    off = int(round((h_mid / 2 + 1.5) / step))
    span = int(round(2.5 / step))
    up = _posterior_margin(sag, bone, np.arange(centre_row - off - span, centre_row - off + 1))
    low = _posterior_margin(sag, bone, np.arange(centre_row + off, centre_row + off + span + 1))
    margins = [x for x in (up, low) if x is not None]
    back = float(np.mean(margins)) if margins else float(sag.r2[cols[-1]] + step / 2)
    if back <= front + 5:
        m.notes.append("posterior body margin not found")
        return {}
    heights = []
    for name, f in zip(("anterior", "middle", "posterior"), HEIGHT_POSITIONS):
        a = front + f * (back - front)
        j = int(np.argmin(np.abs(sag.r2 - a)))
        col = disc[:, j]
        nz = np.flatnonzero(col)
        if nz.size == 0:
            continue
        # The run through (or nearest to) the disc centre row.
        runs = np.split(nz, np.flatnonzero(np.diff(nz) > 1) + 1)
        run = min(runs, key=lambda r: 0 if r[0] <= centre_row <= r[-1] else min(abs(r - centre_row)))
        h = (run[-1] - run[0] + 1) * step
        heights.append(h)
        top = sag.lps(sag.r1[run[0]] - step / 2, sag.r2[j])
        bottom = sag.lps(sag.r1[run[-1]] + step / 2, sag.r2[j])
        m.add(f"disc_height_{name}_mm", h, "mm", [top, bottom])
    if len(heights) == 3:
        m.add(
            "disc_height_index",
            float(np.mean(heights)) / (back - front),
            "1",
            [sag.lps(0.0, front), sag.lps(0.0, back)],
        )
    return {"front": front, "back": back, "height": float(heights[1] if len(heights) == 3 else h_mid)}


def _body_mask(ax: Reformat, bone_labels: np.ndarray) -> np.ndarray:
    """The vertebral body on an axial reformat: per left-right column, the first bone run from
    the anterior (posterior elements lie behind the canal and are left out).
    """
    return first_runs(label_mask(ax.values, bone_labels))


EDGE_MARGIN_MM = 2.0  # disc material this close to the slab's left-right edge is not read
MIN_BODY_PIXELS = 20
MIN_BODY_DEPTH_FRACTION = 0.75


def _inner_columns(ax: Reformat, margin_mm: float) -> np.ndarray:
    """Left-right columns inside the volume and at least ``margin_mm`` from its edge (and the plane's)."""
    inside = ax.valid.any(axis=1)
    k = int(np.ceil(margin_mm / ax.step))
    if k <= 0:
        return inside
    # A column is kept when its whole window of 2k + 1 columns is inside (outside the plane counts
    # as outside): the erosion by a line of 2k + 1, from the count of outside columns per window.
    outside = np.concatenate([np.ones(k, np.intp), ~inside, np.ones(k, np.intp)]).cumsum()
    outside = np.concatenate([[0], outside])
    return (outside[2 * k + 1:] - outside[:-2 * k - 1]) == 0


def displacement(
    m: LevelMeasurements, mid: Reformat, upper: Reformat, lower: Reformat, disc_label: int, bone_labels: np.ndarray,
    bodies: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Posterior displacement of disc material beyond the adjacent bodies' margins (axial plane).

    The reference outline is the union of the two adjacent vertebral bodies sampled just above
    and below the disc; **both** must be present (at L5-S without a segmented sacrum, or where the
    field of view ends, there is no reference and nothing is read), and only left-right columns
    where both bodies are seen and that lie at least :data:`EDGE_MARGIN_MM` inside the slab count
    (at a slab's cut edge the outline is wrong: 27 of 38 SPIDER peaks sat there). Displacement is
    the largest distance (normal to that outline) of disc material behind the bodies' centre; the
    displaced component's *base* is where it touches the outline: its width (across the
    displacement direction) and its angular span seen from the body centre (fraction of the
    circumference, Fardon's 25 % bulge criterion). ``m.section["disc_whole"]`` says whether the
    slab holds the disc's whole left-right extent (needed for a Fardon type). ``bodies``: the
    body masks of ``upper`` and ``lower`` when the caller has them (:func:`_body_mask`).
    """
    step = mid.step
    body_u, body_l = bodies if bodies is not None else (_body_mask(upper, bone_labels), _body_mask(lower, bone_labels))
    disc = mid.values == disc_label
    if not disc.any():
        m.notes.append("posterior displacement not measurable (no disc on the mid-disc plane)")
        return
    inner = _inner_columns(mid, EDGE_MARGIN_MM)
    disc_cols = disc.any(axis=1)
    m.section["disc_whole"] = bool(disc_cols.any() and not (disc_cols & ~inner).any())
    missing = [name for name, b in (("upper", body_u), ("lower", body_l)) if b.sum() < MIN_BODY_PIXELS]
    if missing:
        m.notes.append(f"posterior displacement not measured: needs both neighbouring vertebral bodies "
                       f"({' and '.join(missing)} body not segmented beside the disc)")
        return
    body = body_u | body_l
    # A reference outline much shallower than the disc is a partial cut of a body (a concave or
    # collapsed endplate): everything behind it would look displaced.
    depth_disc = float(np.median(disc[disc_cols].sum(axis=1))) * step
    depth_body = float(np.median(body[body.any(axis=1)].sum(axis=1))) * step
    if depth_body < MIN_BODY_DEPTH_FRACTION * depth_disc:
        m.notes.append(f"posterior displacement not measured: the vertebral body outline beside the disc is "
                       f"incomplete ({depth_body:.0f} mm deep for a {depth_disc:.0f} mm disc)")
        return
    cols_ok = inner & body_u.any(axis=1) & body_l.any(axis=1)
    bi, bj = np.nonzero(body)
    centre = np.array([bi.mean(), bj.mean()])
    dist, (ni, nj) = ndimage.distance_transform_edt(~body, return_indices=True)
    dist = dist * step
    behind = disc & ~body & (np.arange(disc.shape[1])[None, :] > centre[1])
    beyond = behind & cols_ok[:, None]
    if (behind & ~cols_ok[:, None] & (dist >= 1.0)).any():
        m.notes.append(f"disc material at the slab's edge (within {EDGE_MARGIN_MM:g} mm) or beside only one "
                       "body was not read as displacement")
    if not beyond.any():
        m.add("posterior_displacement_mm", 0.0, "mm", [])
        m.add("herniation_base_width_mm", 0.0, "mm", [])
        m.add("displacement_circumference_fraction", 0.0, "1", [])
        return
    comp, n = ndimage.label(beyond, structure=np.ones((3, 3), bool))
    peak = np.unravel_index(int(np.argmax(np.where(beyond, dist, -1))), dist.shape)
    d = float(dist[peak])
    base_pt = (int(ni[peak]), int(nj[peak]))
    m.add(
        "posterior_displacement_mm",
        d,
        "mm",
        [mid.lps(mid.r1[base_pt[0]], mid.r2[base_pt[1]]), mid.lps(mid.r1[peak[0]], mid.r2[peak[1]])],
    )
    if d < MIN_DISPLACEMENT_FOR_BASE_MM:
        m.add("herniation_base_width_mm", 0.0, "mm", [])
        m.add("displacement_circumference_fraction", 0.0, "1", [])
        return
    part = comp == comp[peak]
    base = part & (dist <= 1.5 * step)
    if not base.any():
        base = part
    pi, pj = np.nonzero(base)
    pts = np.stack([mid.r1[pi], mid.r2[pj]], axis=1)
    direction = np.array([mid.r1[peak[0]] - mid.r1[base_pt[0]], mid.r2[peak[1]] - mid.r2[base_pt[1]]])
    direction = direction / (np.linalg.norm(direction) or 1.0)
    tangent = np.array([direction[1], -direction[0]])
    proj = pts @ tangent
    k0, k1 = int(np.argmin(proj)), int(np.argmax(proj))
    width = float(proj[k1] - proj[k0]) + step
    ends = [mid.lps(*pts[k0]), mid.lps(*pts[k1])]
    m.add("herniation_base_width_mm", width, "mm", ends)
    # Circumferential extent: angular coverage (5 degree bins, seen from the body centre) of all
    # disc material displaced by at least 1 mm behind the bodies' centre (a bulge is broad).
    c_mm = np.array(
        [np.interp(centre[0], np.arange(len(mid.r1)), mid.r1), np.interp(centre[1], np.arange(len(mid.r2)), mid.r2)]
    )
    wi, wj = np.nonzero(beyond & (dist >= 1.0))
    ang = np.degrees(np.arctan2(mid.r2[wj] - c_mm[1], mid.r1[wi] - c_mm[0]))
    bins = np.unique(np.floor(ang / 5.0).astype(int))
    m.add("displacement_circumference_fraction", bins.size * 5.0 / 360.0, "1", ends)
