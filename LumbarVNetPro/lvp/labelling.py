"""Level labelling: vertebra and disc instances from a semantic segmentation, named by level.

Method (works on the canonical grid, cropped to the spine):

1. Disc instances are the connected components of the disc class on a grid pooled to ~1 mm
   in-plane. Only components in front of the canal's centre line count (the network's "disc" in
   fat, bowel or muscle does not); small fragments join the nearest large disc when close, two
   components at one level merge, a small one squeezed inside a vertebra and a stray one far
   beyond either end of the disc chain (no bone in between) are dropped
   (``disc_fragments_ignored``). Each disc gets a mid-plane (:func:`lvp.planes.fit_disc_plane`).
   A gap between discs about twice the neighbouring spacings and filled with bone is a disc the
   network missed: an interpolated separator splits the bone into two vertebrae
   (``missing_disc``). Bone far from the canal's centre line is not labelled.
2. Vertebra voxels are split into the intervals between consecutive disc planes (the discs are
   the separators along the spine axis, so posterior elements that touch the neighbour's body do
   not merge two vertebrae); inside an interval, large connected components that lie one above
   the other are separate vertebrae (a disc the network missed, or a body-only layout).
3. The sacrum is the bone below the lowest disc when there is image below it (yet no further
   disc), or, when the field of view cuts it, when it is long along the spine (at least 1.4
   times the median vertebra: SPIDER labels only the upper sacrum); levels are
   counted from the sacrum upwards (L5, L4, ...). Without a sacrum the lowest vertebra is
   *assumed* to be L5, with a warning and low confidence.
4. Check from the cranial end: thoracic bodies are smaller in anteroposterior depth than lumbar
   ones. When the field of view reaches above the level counted as L1, the depth profile is
   checked; six lumbar-like vertebrae or only four (a sacralised L5 or lumbarised S1) raise a
   ``transitional_anatomy`` warning. The numbering is never changed silently: with six
   lumbar-like vertebrae the count from the sacrum is kept (the extra one is labelled T12) and
   the warning says so. A rudimentary lumbosacral disc also raises the warning.

Only TotalSpineSeg values that :mod:`lvp.labels` defines are written; vertebrae above T11 are
listed but left unlabelled in :attr:`Labelling.labels` (a warning says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lvp.io.volume import Volume
from lvp.labels import (
    CANAL,
    CANAL_LABEL,
    DISC,
    DISC_LABELS,
    SACRUM_LABEL,
    VERTEBRA,
    VERTEBRA_LABELS,
    disc_name_between,
)
from lvp.planes import DiscPlane, fit_disc_plane, in_plane_axes

MIN_DISC_MM3 = 150.0  # smaller disc components are fragments
MIN_VERTEBRA_MM3 = 800.0
SACRUM_LENGTH_RATIO = 1.4
THORACIC_DEPTH_RATIO = 0.88  # a body shallower than this fraction of L3-L5 looks thoracic
RUDIMENTARY_DISC_RATIO = 0.4  # lumbosacral disc volume / L4-L5 disc volume
# A disc lies in front of the canal: its centre within these offsets (mm) of the canal's centre
# line at the same height; anything else the network called disc is not an intervertebral disc.
DISC_MAX_LR_MM = 30.0
DISC_MAX_ANTERIOR_MM = 75.0
DISC_MAX_POSTERIOR_MM = 10.0
# Bone this far from the canal line (mm) is not part of the spine (vertebrae reach ~50 mm in
# front of the canal, ~70 mm behind it with the spinous process and ~45 mm to each side).
BONE_MAX_LR_MM = 50.0
BONE_MAX_ANTERIOR_MM = 80.0
BONE_MAX_POSTERIOR_MM = 90.0
DISC_BEYOND_CANAL_MM = 100.0  # the canal may be segmented only part of the way down
BONE_BEYOND_CANAL_MM = 80.0
BODY_BEHIND_CANAL_CENTRE_MM = 8.0  # bone this far in front of the canal's centre is body
FRAGMENT_JOIN_MM = 20.0  # a small disc fragment farther than this from every disc is dropped
SAME_LEVEL_RATIO = 0.45  # two discs closer than this fraction of the median spacing: one disc
# A small disc (below this fraction of the median disc) squeezed between two others (both gaps
# below SQUEEZED_RATIO of the spacing) is a fragment inside a vertebra, not a level.
SMALL_DISC_RATIO = 0.3
SQUEEZED_RATIO = 0.7
STRAY_DISC_RATIO = 2.2  # a small disc this many spacings beyond the end of the chain is not a level
MISSING_DISC_RATIO = 1.65  # a gap this many times the neighbouring spacings hides missed disc(s)
# Two discs with a vertebra between them: at least this fraction of the segment joining their
# centres is bone (pieces of one disc have disc or nothing between them).
BONE_BETWEEN_RATIO = 0.3
# A disc at least this many times as thick as the median of the others is probably two discs
# merged (``merged_disc``): the names of the levels above it are not trusted.
MERGED_DISC_THICKNESS_RATIO = 1.75
MERGED_DISC_CONFIDENCE = 0.4


@dataclass
class Instance:
    """One labelled vertebra or disc."""

    name: str
    label: int  # TotalSpineSeg value, 0 when the level has no value (above T11)
    centroid_lps: np.ndarray
    voxels: int
    confidence: float
    kind: str = "vertebra"  # "vertebra", "sacrum" or "disc"
    plane: DiscPlane | None = None  # discs only: the fitted mid-plane
    body_depth_mm: float = float("nan")  # vertebrae only: AP depth of the body
    # Vertebrae only: centroid of the bone in front of the canal (the body without the posterior
    # elements), as body-only references (Chu VB) define a level's position; None without a canal.
    body_centroid_lps: np.ndarray | None = None

    def to_dict(self) -> dict:
        """Plain-JSON form (a ``structures`` entry of report.json, without the volume)."""
        return {
            "label": int(self.label),
            "name": self.name,
            "kind": self.kind,
            "center_lps": [float(v) for v in self.centroid_lps],
            "voxels": int(self.voxels),
            "confidence": float(self.confidence),
        }


@dataclass
class Labelling:
    """The result of :func:`label_levels`."""

    labels: np.ndarray  # int16, canonical grid, TotalSpineSeg values
    vertebrae: list[Instance] = field(default_factory=list)  # cranial -> caudal, sacrum last
    discs: list[Instance] = field(default_factory=list)  # cranial -> caudal
    warnings: list[dict] = field(default_factory=list)
    # Internal: instance id map on the cropped grid, for measurements.
    crop: tuple[slice, slice, slice] | None = None

    def disc(self, name: str) -> Instance | None:
        """The disc called ``name``, or None."""
        return next((d for d in self.discs if d.name == name), None)

    def vertebra(self, name: str) -> Instance | None:
        """The vertebra called ``name`` (or ``"sacrum"``), or None."""
        return next((v for v in self.vertebrae if v.name == name), None)

    def warn(self, code: str, message: str) -> None:
        """Add a warning (codes are stable strings, messages are for people)."""
        self.warnings.append({"code": code, "message": message})


def _bbox(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    m0 = mask.any(axis=0)  # one pass over the volume; the other projections come from it and a row test
    idx = [np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0], np.nonzero(m0.any(axis=1))[0],
           np.nonzero(m0.any(axis=0))[0]]
    return tuple(slice(max(int(x[0]) - margin, 0), int(x[-1]) + margin + 1) for x in idx)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def _spine_axis(canal_c: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Canal centre line on a (pooled) grid: per row along axis 1, the (lr, ap) index of the
    largest canal component's centre (rows without canal interpolated, constant beyond its ends).
    None when no canal long enough to define the spine's course was segmented.
    """
    if not canal_c.any():
        return None
    comp, n = _components(canal_c)
    if n > 1:
        comp = comp == int(np.argmax(np.bincount(comp.ravel())[1:]) + 1)
    else:
        comp = comp > 0
    count = comp.sum(axis=(0, 2)).astype(float)
    rows = np.flatnonzero(count)
    if rows.size < 5:
        return None
    lr = (comp.sum(axis=2) * np.arange(comp.shape[0])[:, None]).sum(axis=0)[rows] / count[rows]
    ap = (comp.sum(axis=0) * np.arange(comp.shape[2])[None, :]).sum(axis=1)[rows] / count[rows]
    all_rows = np.arange(comp.shape[1])
    return np.interp(all_rows, rows, lr), np.interp(all_rows, rows, ap), (int(rows[0]), int(rows[-1]))


def _off_axis_mm(points: np.ndarray, axis, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left-right, anteroposterior, beyond the canal's ends) offsets in mm of pooled-index
    points from the canal line (AP positive = posterior of the canal centre).
    """
    si = np.clip(np.round(points[:, 1]).astype(int), 0, axis[0].size - 1)
    beyond = np.maximum(axis[2][0] - points[:, 1], 0) + np.maximum(points[:, 1] - axis[2][1], 0)
    return (points[:, 0] - axis[0][si]) * sp[0], (points[:, 2] - axis[1][si]) * sp[2], beyond * sp[1]


def _bone_between(vert: np.ndarray, a: np.ndarray, b: np.ndarray, spacing: np.ndarray,
                  radius_mm: float = 2.0, samples: int = 41) -> float:
    """Fraction of the segment between index points ``a`` and ``b`` of ``vert`` that runs through
    bone: a sample counts when at least half of the box of ``radius_mm`` around it is bone (a
    thin strand of another class along the segment does not hide the bone around it).
    """
    t = np.linspace(0.0, 1.0, samples)[1:-1, None]
    p = np.rint(a[None, :] * (1 - t) + b[None, :] * t).astype(int)
    p = np.clip(p, 0, np.array(vert.shape) - 1)
    r = np.maximum(np.round(radius_mm / np.asarray(spacing, float)).astype(int), 0)
    hits = 0
    for q in p:
        box = tuple(slice(max(int(c) - k, 0), int(c) + k + 1) for c, k in zip(q, r))
        hits += bool(vert[box].mean() >= 0.5)
    return hits / len(p)


def _split_touching_discs(comp: np.ndarray, n: int, sem: np.ndarray, f: tuple[int, ...],
                          sp: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Split pooled disc components that hold two discs separate at full resolution.

    Two discs close together (a collapsed or small vertebra between them) can touch on the
    pooled grid and become one component. A pooled component is split when, at full resolution,
    it holds two or more big disc components (each at least ``MIN_DISC_MM3``) with bone between
    them; every pooled voxel goes to the nearest full-resolution piece. Returns the new map, the
    new component count and the number of splits.
    """
    if f == (1, 1, 1):
        return comp, n, 0  # the components are the full-resolution ones
    full_mm3 = float(np.prod(sp)) / float(np.prod(f))
    sizes = np.bincount(comp.ravel(), minlength=n + 1) * float(np.prod(sp))
    objs = ndimage.find_objects(comp)
    vert = sem == VERTEBRA
    n_split = 0
    for i in range(1, n + 1):
        if objs[i - 1] is None or sizes[i] < 2 * MIN_DISC_MM3:
            continue
        box_c = objs[i - 1]
        box = _scaled_box(box_c, f, sem.shape)
        own_c = comp[box_c] == i
        full = _unpool(own_c, f, sem[box].shape) & (sem[box] == DISC)
        pieces, m = _components(full)
        if m < 2:
            continue
        counts = np.bincount(pieces.ravel(), minlength=m + 1)
        big = [j for j in range(1, m + 1) if counts[j] * full_mm3 >= MIN_DISC_MM3]
        if len(big) < 2:
            continue
        cen = {j: np.array(c) for j, c in zip(big, ndimage.center_of_mass(full, pieces, big))}
        # Order along the image's SI axis; keep the pieces that have bone between them apart.
        big.sort(key=lambda j: cen[j][1])
        groups = [[big[0]]]
        for j in big[1:]:
            prev = groups[-1][-1]
            if _bone_between(vert[box], cen[prev], cen[j], sp / np.array(f, float)) >= BONE_BETWEEN_RATIO:
                groups.append([j])
            else:
                groups[-1].append(j)
        if len(groups) < 2:
            continue
        # Seeds on the pooled grid: cells covered by exactly one group's pieces.
        seeds = np.zeros(own_c.shape, np.int32)
        cover = np.zeros(own_c.shape, np.int32)
        for g, members in enumerate(groups, start=1):
            pooled = _pool_any(np.isin(pieces, members), f)
            cells = np.zeros(own_c.shape, bool)
            cells[: pooled.shape[0], : pooled.shape[1], : pooled.shape[2]] = pooled[
                : own_c.shape[0], : own_c.shape[1], : own_c.shape[2]]
            cells &= own_c
            seeds[cells] = g
            cover += cells
        seeds[cover != 1] = 0
        if not seeds.any():
            continue
        _, nearest = ndimage.distance_transform_edt(seeds == 0, sampling=sp, return_indices=True)
        owner = seeds[tuple(nearest)]
        sub = comp[box_c]
        for g in range(2, len(groups) + 1):
            n += 1
            sub[own_c & (owner == g)] = n
        n_split += len(groups) - 1
    return comp, n, n_split


def _disc_instances(disc_c: np.ndarray, sp: np.ndarray, axis, sem: np.ndarray | None = None,
                    f: tuple[int, ...] = (1, 1, 1), vert_c: np.ndarray | None = None
                    ) -> tuple[np.ndarray, list[int], int, int]:
    """Disc instances on a pooled grid: ``(lut-mapped component map, disc ids, discarded, split)``.

    Components off the spine (too far from the canal line: fat, bowel, muscle the network took
    for disc) are discarded; small fragments join the nearest big disc when close to it (else
    they are discarded); two big components at the same level (a disc split in two) are merged
    unless bone lies between them (two discs with a small or collapsed vertebra between). With
    ``sem`` (the full-resolution classes), a component holding two discs that are separate at
    full resolution (they touch only on the pooled grid) is split first.
    """
    comp, n = _components(disc_c)
    if n == 0:
        return comp, [], 0, 0
    n_split = 0
    if sem is not None:
        comp, n, n_split = _split_touching_discs(comp, n, sem, f, sp)
    idx = np.nonzero(comp)
    lab = comp[idx]
    counts = np.bincount(lab, minlength=n + 1)
    centers = np.stack([np.bincount(lab, weights=idx[j], minlength=n + 1) for j in range(3)], 1)
    centers = centers / np.maximum(counts[:, None], 1)
    sizes = counts * float(np.prod(sp))
    ids = np.arange(1, n + 1)
    on_axis = np.ones(n + 1, bool)
    if axis is not None:
        d_lr, d_ap, d_si = _off_axis_mm(centers, axis, sp)
        on_axis = (np.abs(d_lr) <= DISC_MAX_LR_MM) & (d_ap >= -DISC_MAX_ANTERIOR_MM) & (d_ap <= DISC_MAX_POSTERIOR_MM)
        on_axis &= d_si <= DISC_BEYOND_CANAL_MM
    big = ids[(sizes[1:] >= MIN_DISC_MM3) & on_axis[1:]]
    if big.size == 0:
        big = ids[on_axis[1:]] if on_axis[1:].any() else ids
    lut = np.zeros(n + 1, np.int64)
    lut[big] = big
    c_mm = centers * sp[None, :]
    for i in ids:
        if lut[i] or not on_axis[i]:
            continue
        d = np.linalg.norm(c_mm[big] - c_mm[i], axis=1)
        if d.min() <= FRAGMENT_JOIN_MM:
            lut[i] = big[int(np.argmin(d))]
    # Big components at the same level: merge into the larger (spacing from the others).
    order = sorted(big.tolist(), key=lambda i: c_mm[i, 1])
    merged = True
    while merged and len(order) >= 3:
        merged = False
        gaps = np.abs(np.diff(c_mm[order, 1]))  # along the image's SI axis
        ref = float(np.median(gaps))
        # Closest pair first; a pair with bone between them is two levels, not one disc.
        close = [k for k in np.argsort(gaps, kind="stable") if gaps[k] < SAME_LEVEL_RATIO * ref and not (
            vert_c is not None
            and _bone_between(vert_c, c_mm[order[k]] / sp, c_mm[order[k + 1]] / sp, sp) >= BONE_BETWEEN_RATIO)]
        if close:
            a, b = order[close[0]], order[close[0] + 1]
            keep, drop = (a, b) if counts[a] >= counts[b] else (b, a)
            lut[lut == drop] = keep
            w = counts[keep] + counts[drop]
            c_mm[keep] = (c_mm[keep] * counts[keep] + c_mm[drop] * counts[drop]) / w
            counts[keep] = w
            order.remove(drop)
            merged = True
    while len(order) >= 4:
        gaps = np.abs(np.diff(c_mm[order, 1]))  # along the image's SI axis
        ref = float(np.median(gaps))
        med = float(np.median(counts[order]))
        squeezed = [k for k in range(1, len(order) - 1)
                    if counts[order[k]] < SMALL_DISC_RATIO * med and max(gaps[k - 1], gaps[k]) < SQUEEZED_RATIO * ref]
        if not squeezed:
            break
        drop = order[min(squeezed, key=lambda k: counts[order[k]])]
        lut[lut == drop] = 0
        order.remove(drop)
    discarded = int(np.sum(lut[1:] == 0))
    return lut[comp], sorted(order), discarded, n_split


def _body_depth(vert: np.ndarray, canal: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """AP depth (mm) of a vertebral body: the anterior run of bone in the central rows/slices.

    Works on the canonical grid (AP = axis 2): for each sagittal row through the middle third of
    the bone's height, the first contiguous run of bone from the anterior is the body (the canal
    or a gap ends it); the median run over rows is the depth.
    """
    if not vert.any():
        return float("nan")
    lr = np.nonzero(vert.any(axis=(1, 2)))[0]
    si = np.nonzero(vert.any(axis=(0, 2)))[0]
    k0 = (lr[0] + lr[-1]) // 2
    r0, r1 = si[0] + (si[-1] - si[0]) // 3, si[-1] - (si[-1] - si[0]) // 3 + 1
    ks = slice(max(k0 - 1, 0), min(k0 + 2, vert.shape[0]))
    lines = vert[ks, r0:r1].reshape(-1, vert.shape[2])
    cont = (lines & ~canal[ks, r0:r1].reshape(-1, vert.shape[2]))
    has = lines.any(axis=1)
    if not has.any():
        return float("nan")
    lines, cont = lines[has], cont[has]
    start = lines.argmax(axis=1)
    j = np.arange(lines.shape[1])[None, :]
    stop_mask = ~cont & (j > start[:, None])
    stop = np.where(stop_mask.any(axis=1), stop_mask.argmax(axis=1) - 1, lines.shape[1] - 1)
    return float(np.median((stop - start + 1) * spacing[2]))


def _pool_any(mask: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    """Max-pool a boolean (or bit-flag) mask by integer factors (padding at the far edges)."""
    if f == (1, 1, 1):
        return mask
    shape = tuple(-(-n // k) for n, k in zip(mask.shape, f))
    out = np.zeros(shape, mask.dtype)
    for a in range(f[0]):
        for b in range(f[1]):
            for c in range(f[2]):
                part = mask[a :: f[0], b :: f[1], c :: f[2]]
                np.bitwise_or(out[: part.shape[0], : part.shape[1], : part.shape[2]], part,
                              out=out[: part.shape[0], : part.shape[1], : part.shape[2]])
    return out


def _scaled_box(box: tuple[slice, ...], f: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A bounding box on the pooled grid as a box on the full grid."""
    return tuple(slice(x.start * k, min(x.stop * k, n)) for x, k, n in zip(box, f, shape))


def _unpool(arr: np.ndarray, f: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upsampling by integer factors, cropped to ``shape``."""
    if f == (1, 1, 1):
        return arr
    a, b, c = arr.shape
    big = np.broadcast_to(arr[:, None, :, None, :, None], (a, f[0], b, f[1], c, f[2]))
    return big.reshape(a * f[0], b * f[1], c * f[2])[: shape[0], : shape[1], : shape[2]]


def _below_disc(pts: np.ndarray, plane: DiscPlane, inferior: np.ndarray) -> np.ndarray:
    """Signed distance of points below a disc (positive = inferior), with the plane bent flat.

    Within the disc's anteroposterior extent the distance is taken from the fitted plane; beyond
    it, from the disc's edge along the image's inferior axis. A tilted L5-S plane extended
    posteriorly would otherwise climb into the level above and cut through posterior elements.
    """
    w = pts - plane.center_lps.astype(np.float32)
    v = plane.axis_v_lps.astype(np.float32)
    vc = w @ v
    half = np.float32(plane.extent_v_mm / 2)
    vcl = np.clip(vc, -half, half)
    inside = w @ plane.normal_lps.astype(np.float32)
    outside = (w - vcl[:, None] * v) @ inferior.astype(np.float32)
    return np.where(vc == vcl, inside, outside)


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
    near = np.linalg.norm(w[sel] - t[sel, None] * d[None, :], axis=1) <= radius_mm
    bins = np.unique((t[sel][near] * 20).astype(int))
    return bins.size / 20.0


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


def label_levels(semantic: np.ndarray, volume: Volume, probability: np.ndarray | None = None) -> Labelling:
    """Label vertebrae, discs and canal with TotalSpineSeg values (see the module docstring).

    ``semantic`` holds the network classes 0..3 on ``volume``'s canonical grid; ``probability``
    (optional, same grid, the probability of the predicted class) lowers confidences where the
    network was unsure.
    """
    if semantic.shape != volume.shape:
        raise ValueError(f"segmentation shape {semantic.shape} differs from the image's {volume.shape}")
    out = Labelling(labels=np.zeros(semantic.shape, np.int16))
    if not (semantic > 0).any():
        out.warn("empty_segmentation", "No spine structure was segmented; no levels were labelled.")
        return out
    crop = _bbox(semantic > 0)
    out.crop = crop
    sem = semantic[crop]
    offset = np.array([c.start for c in crop], float)
    sub = volume.affine.copy()
    sub[:3, 3] = volume.index_to_lps(offset)
    voxel_mm3 = float(np.prod(volume.spacing))
    prob = probability[crop] if probability is not None else None
    labels = out.labels[crop]
    canal = sem == CANAL
    labels[canal] = CANAL_LABEL

    # Everything up to the level count runs on a grid pooled to ~1 mm in-plane (for speed).
    f = tuple(int(min(2, max(1, np.floor(0.95 / s)))) for s in volume.spacing)
    sp_c = np.array(volume.spacing, float) * np.array(f, float)
    sub_c = sub.copy()
    sub_c[:3, :3] = sub[:3, :3] * np.array(f, float)[None, :]
    sub_c[:3, 3] = sub[:3, :3] @ ((np.array(f, float) - 1) / 2) + sub[:3, 3]
    # One pooling pass for all classes: bit c set where class c occurs in the pooled cell.
    bits_c = _pool_any(np.left_shift(np.uint8(1), sem, dtype=np.uint8), f)
    axis = _spine_axis((bits_c & (1 << CANAL)) > 0)
    inferior = volume.affine[:3, 1] / np.linalg.norm(volume.affine[:3, 1])

    # Bone on the spine: near the canal's centre line (the rest is not vertebra).
    vert = sem == VERTEBRA
    vert_c = (bits_c & (1 << VERTEBRA)) > 0
    vidx = np.nonzero(vert_c)
    on_spine = np.ones(len(vidx[0]), bool)
    if axis is not None and len(vidx[0]):
        d_lr, d_ap, d_si = _off_axis_mm(np.stack(vidx, axis=1).astype(float), axis, sp_c)
        on_spine = (np.abs(d_lr) <= BONE_MAX_LR_MM) & (d_ap >= -BONE_MAX_ANTERIOR_MM) & (d_ap <= BONE_MAX_POSTERIOR_MM)
        on_spine &= d_si <= BONE_BEYOND_CANAL_MM
    vidx = tuple(x[on_spine] for x in vidx)
    in_front = (d_ap[on_spine] < -BODY_BEHIND_CANAL_CENTRE_MM) if axis is not None and len(on_spine) else None
    pts = np.stack(vidx, axis=1).astype(np.float32) @ sub_c[:3, :3].T.astype(np.float32)
    pts += sub_c[:3, 3].astype(np.float32)

    # 1. Discs: components in front of the canal, fragments joined or dropped.
    disc_c, disc_ids, n_discarded, n_split = _disc_instances((bits_c & (1 << DISC)) > 0, sp_c, axis, sem, f, vert_c)
    if n_split:
        out.warn(
            "merged_disc",
            f"{n_split} disc(s) separate in the segmentation touched on the labelling grid and were "
            "split again (a small or collapsed vertebra between them). Check the level numbering.",
        )
    disc_sizes = np.bincount(disc_c.ravel())
    disc_objs_c = ndimage.find_objects(disc_c)
    disc_objs = [None if b is None else _scaled_box(b, f, sem.shape) for b in disc_objs_c]

    def disc_mask(i: int) -> np.ndarray:
        box = disc_objs[i - 1]
        return _unpool(disc_c[disc_objs_c[i - 1]] == i, f, sem[box].shape) & (sem[box] == DISC)

    planes: list[tuple[int, DiscPlane]] = []
    for i in disc_ids:
        box = disc_objs[i - 1]
        box_affine = sub.copy()
        box_affine[:3, 3] = sub[:3, :3] @ np.array([b.start for b in box], float) + sub[:3, 3]
        plane = fit_disc_plane(disc_mask(i), box_affine, volume.spacing)
        if plane is not None:
            planes.append((i, plane))
    planes.sort(key=lambda p: float(p[1].center_lps @ inferior))
    # Discs at either end of the chain, far from it with no bone in between: not spine.
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
        n_discarded += 1
    if n_discarded:
        out.warn("disc_fragments_ignored",
                 f"{n_discarded} disc-class fragment(s) away from the spine or from any disc were not labelled.")
    separators = _with_missing_discs([p for _, p in planes], pts)
    if len(separators) > len(planes):
        out.warn(
            "missing_disc",
            f"{len(separators) - len(planes)} disc(s) appear not segmented (a gap between discs about twice "
            "the usual spacing, filled with bone): the bone there was counted as two vertebrae. Check the level "
            "numbering.",
        )

    # 2. Vertebrae: bone between disc planes, or (no discs segmented) connected components
    # (exact resolution is not needed to split at discs).
    vid_c = np.zeros(vert_c.shape, np.int32)
    if separators:
        interval = np.ones(len(pts), np.int32)
        s_inf = pts @ inferior.astype(np.float32)
        for plane in separators:
            # Farther from the plane's centre along the SI axis than half its AP extent, the bent
            # plane's side is the side along SI: evaluate the exact distance only in that band.
            d = s_inf - np.float32(plane.center_lps @ inferior)
            band = np.abs(d) <= plane.extent_v_mm / 2 + 2.0
            below = d > 0
            below[band] = _below_disc(pts[band], plane, inferior) > 0
            interval += below
        vid_c[vidx] = interval
    else:
        comp, _ = _components(vert_c)
        vid_c[vidx] = comp[vidx]
    n_ids = int(vid_c.max())
    labels_c = vid_c[vidx]
    counts = np.bincount(labels_c, minlength=n_ids + 1) * int(np.prod(f))
    sizes = counts * voxel_mm3
    keep = [i for i in range(1, n_ids + 1) if sizes[i] >= MIN_VERTEBRA_MM3]
    sums = np.stack([np.bincount(labels_c, weights=vidx[j], minlength=n_ids + 1) for j in range(3)], 1)
    vcenters_all = {i: (sums[i] / max(counts[i] // np.prod(f), 1)) @ sub_c[:3, :3].T + sub_c[:3, 3] for i in keep}
    keep.sort(key=lambda i: float(vcenters_all[i] @ inferior))
    objs_c = ndimage.find_objects(vid_c)
    objs = [None if b is None else _scaled_box(b, f, sem.shape) for b in objs_c]
    vcenters = [vcenters_all[i] for i in keep]
    body_centers: dict[int, np.ndarray] = {}
    if in_front is not None and in_front.any():
        lb = labels_c[in_front]
        nb = np.bincount(lb, minlength=n_ids + 1)
        sb = np.stack([np.bincount(lb, weights=vidx[j][in_front], minlength=n_ids + 1) for j in range(3)], 1)
        body_centers = {i: (sb[i] / nb[i]) @ sub_c[:3, :3].T + sub_c[:3, 3] for i in keep if nb[i] > 0}

    # 3. Sacrum: the bone below the lowest disc, long along the spine or reaching the FOV bottom.
    lengths = [(objs[i - 1][1].stop - objs[i - 1][1].start) * volume.spacing[1] for i in keep]
    has_sacrum = False
    if keep and planes:
        last_plane = planes[-1][1]
        below_last_disc = (vcenters[-1] - last_plane.center_lps) @ last_plane.normal_lps > 0
        ref = float(np.median(lengths[:-1])) if len(lengths) > 1 else 30.0
        reaches_bottom = objs[keep[-1] - 1][1].stop + crop[1].start >= semantic.shape[1] - 3
        long_enough = lengths[-1] >= SACRUM_LENGTH_RATIO * ref
        # Bone below the lowest disc with image below it but no further disc is the sacrum; bone
        # cut by the bottom of the field of view is the sacrum only when it is long.
        has_sacrum = bool(below_last_disc and (not reaches_bottom or long_enough))

    n_mobile = len(keep) - int(has_sacrum)
    # A disc below the lowest bone, with image below it: the lumbosacral disc of a mask that
    # leaves the sacrum out (as many SPIDER masks do).
    disc_at_bottom = bool(
        planes
        and not has_sacrum
        and (not keep or (vcenters[-1] - planes[-1][1].center_lps) @ planes[-1][1].normal_lps < 0)
    )
    if has_sacrum:
        base_conf = 0.95
    elif disc_at_bottom:
        base_conf = 0.75
        out.warn(
            "sacrum_not_segmented",
            "No bone was segmented below the lowest disc: it is taken as the lumbosacral disc (L5-S) "
            "and levels are counted from it. Check the level numbering.",
        )
    else:
        base_conf = 0.35
        out.warn(
            "sacrum_not_found",
            "No sacrum was found below the lowest disc: the lowest vertebra is assumed to be L5. "
            "Check the level numbering.",
        )
    # Names counted upwards from the sacrum; when the lowest bone is below no disc and there is
    # no sacrum, it is itself taken as L5.
    names: list[str] = []
    lumbar_from_bottom = ["L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6"]
    for i in range(n_mobile):
        j = n_mobile - 1 - i
        names.append(lumbar_from_bottom[j] if j < len(lumbar_from_bottom) else f"T{17 - j}")
    if has_sacrum:
        names.append("sacrum")

    # Confidence per vertebra: lower at the FOV edge (partial) and with an unsure network.
    vlut = np.zeros(n_ids + 1, np.int16)
    for i, name, c in zip(keep, names, vcenters):
        box = objs[i - 1]
        m = _unpool(vid_c[objs_c[i - 1]] == i, f, vert[box].shape) & vert[box]
        conf = base_conf
        si0, si1 = box[1].start + crop[1].start, box[1].stop + crop[1].start
        if name != "sacrum" and (si0 <= 1 or si1 >= semantic.shape[1] - 1):
            conf *= 0.8
        if prob is not None:
            conf *= float(np.clip(prob[box][m].mean(), 0.0, 1.0))
        vlut[i] = SACRUM_LABEL if name == "sacrum" else VERTEBRA_LABELS.get(name, 0)
        depth = _body_depth(m, canal[box], volume.spacing)
        kind = "sacrum" if name == "sacrum" else "vertebra"
        out.vertebrae.append(Instance(name, int(vlut[i]), c, int(m.sum()), round(conf, 3), kind, body_depth_mm=depth,
                                      body_centroid_lps=body_centers.get(i)))
    labels[vert] = _unpool(vlut[vid_c], f, sem.shape)[vert]
    if any(v.label == 0 for v in out.vertebrae):
        out.warn("levels_above_t11", "Vertebrae above T11 are listed but not labelled (no output value).")

    # Discs: named by the vertebrae above and below.
    order_names = ["T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    for n_from_bottom, (i, plane) in enumerate(reversed(planes)):
        above = [v for v in out.vertebrae if (v.centroid_lps - plane.center_lps) @ plane.normal_lps < 0]
        below = [v for v in out.vertebrae if (v.centroid_lps - plane.center_lps) @ plane.normal_lps > 0]
        if above:
            upper = above[-1].name
        elif below and below[0].name in order_names and order_names.index(below[0].name) > 0:
            upper = order_names[order_names.index(below[0].name) - 1]
        else:  # no vertebrae at all: count discs from the bottom, lowest = L5-S (assumed)
            upper = order_names[-1 - n_from_bottom] if n_from_bottom < len(order_names) else "T5"
        if below:
            lower = below[0].name
        elif upper == "L5":
            lower = "sacrum"
        else:
            lower = order_names[order_names.index(upper) + 1] if upper in order_names[:-1] else "sacrum"
        name = disc_name_between(upper, lower)
        label = DISC_LABELS.get(name, DISC_LABELS["L5-S"] if name.endswith("-S") else 0)
        box = disc_objs[i - 1]
        mask = disc_mask(i)
        conf = base_conf * (0.9 if not (above and below) else 1.0)
        if prob is not None:
            conf *= float(np.clip(prob[box][mask].mean(), 0.0, 1.0))
        labels[box][mask] = label
        out.discs.insert(
            0, Instance(name, label, plane.center_lps, int(mask.sum()), round(conf, 3), "disc", plane=plane)
        )
    _check_merged_discs(out)
    _check_transitional(out, has_sacrum)
    return out


def _check_merged_discs(out: Labelling) -> None:
    """Warn about a disc about twice as thick as the others (two discs the segmentation merged).

    Levels are counted from the bottom, so every level from that disc upwards may be named one
    level too far down: their confidences are lowered and a ``merged_disc`` warning says so.
    """
    h = np.array([d.plane.height_mm if d.plane is not None else np.nan for d in out.discs], float)
    if np.isfinite(h).sum() < 4:
        return
    for k, d in enumerate(out.discs):
        others = np.delete(h, k)
        ref = float(np.nanmedian(others))
        if not (np.isfinite(h[k]) and ref > 0 and h[k] >= MERGED_DISC_THICKNESS_RATIO * ref):
            continue
        # Everything cranial to (and including) this disc depends on it being one level.
        axis_n = d.plane.normal_lps
        for x in [*out.discs, *out.vertebrae]:
            if (x.centroid_lps - d.centroid_lps) @ axis_n <= 0 or x is d:
                x.confidence = round(min(x.confidence, MERGED_DISC_CONFIDENCE), 3)
        out.warn(
            "merged_disc",
            f"The disc named {d.name} is {h[k]:.1f} mm thick, {h[k] / ref:.1f} times the median of the "
            "others: it may be two discs merged, in which case it and every level above it are named "
            "one level too far down. Check the level numbering.",
        )


def _check_transitional(out: Labelling, has_sacrum: bool) -> None:
    """Flag transitional anatomy (see the module docstring); never renames levels."""
    if not has_sacrum:
        return
    discs = {d.name: d for d in out.discs}
    ls, l45 = discs.get("L5-S"), discs.get("L4-L5")
    if ls is not None and l45 is not None and ls.voxels < RUDIMENTARY_DISC_RATIO * l45.voxels:
        out.warn(
            "transitional_anatomy",
            f"The lumbosacral disc is rudimentary ({ls.voxels} voxels, L4-L5 {l45.voxels}): possible "
            "sacralised L5 / transitional lumbosacral vertebra. Levels were counted from the sacrum.",
        )
    depth = {v.name: v.body_depth_mm for v in out.vertebrae}
    ref = [depth[n] for n in ("L3", "L4", "L5") if n in depth and np.isfinite(depth[n])]
    if len(ref) < 2:
        return
    ref_depth = float(np.median(ref))

    def lumbar_like(name: str) -> bool | None:
        d = depth.get(name)
        if d is None or not np.isfinite(d):
            return None
        return d >= THORACIC_DEPTH_RATIO * ref_depth

    t12, t11, l1 = lumbar_like("T12"), lumbar_like("T11"), lumbar_like("L1")
    if t12 and t11 is False:
        for v in out.vertebrae:
            v.confidence = round(min(v.confidence, 0.6), 3)
        for d in out.discs:
            d.confidence = round(min(d.confidence, 0.6), 3)
        out.warn(
            "transitional_anatomy",
            "Six lumbar-like vertebrae above the sacrum: the one counted as T12 from the sacrum has a "
            "lumbar-sized body. Levels were kept as counted from the sacrum (L6 not assigned); confirm "
            "the numbering on a whole-spine localiser.",
        )
    elif l1 is False and (t12 is False or t12 is None):
        for v in out.vertebrae:
            v.confidence = round(min(v.confidence, 0.6), 3)
        for d in out.discs:
            d.confidence = round(min(d.confidence, 0.6), 3)
        out.warn(
            "transitional_anatomy",
            "Only four lumbar-like vertebrae above the sacrum: the one counted as L1 has a thoracic-"
            "sized body (sacralised L5 or thoracolumbar transition). Levels were kept as counted from "
            "the sacrum; confirm the numbering on a whole-spine localiser.",
        )
