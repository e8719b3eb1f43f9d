"""Disc instances: components off the spine dropped, fragments joined to their disc or dropped,
two discs touching on the pooled grid split, one disc in pieces merged, a small disc squeezed
inside a vertebra dropped; and the check for a disc about twice as thick as the others.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from lvp.labelling.canal_axis import _off_axis_mm
from lvp.labelling.grid import _components, _components_in_box, _pool_any, _scaled_box, _shift, _union_box, _unpool
from lvp.labelling.thresholds import (
    BONE_BETWEEN_RATIO,
    DISC_BEYOND_CANAL_MM,
    DISC_FRAGMENT_LR_MM,
    DISC_MAX_ANTERIOR_MM,
    DISC_MAX_LR_MM,
    DISC_MAX_POSTERIOR_MM,
    FRAGMENT_JOIN_MM,
    MERGED_DISC_CONFIDENCE,
    MERGED_DISC_THICKNESS_RATIO,
    MIN_DISC_MM3,
    SAME_LEVEL_RATIO,
    SMALL_DISC_RATIO,
    SQUEEZED_RATIO,
)
from lvp.labelling.types import Labelling
from lvp.labelling.vertebrae import _index_sums
from lvp.labels import DISC, VERTEBRA


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


def _split_touching_discs(comp: np.ndarray, n: int, counts: np.ndarray, objs: list, sem: np.ndarray,
                          f: tuple[int, ...], sp: np.ndarray, origin: tuple[slice, ...]) -> tuple[np.ndarray, int, int]:
    """Split pooled disc components that hold two discs separate at full resolution.

    Two discs close together (a collapsed or small vertebra between them) can touch on the
    pooled grid and become one component. A pooled component is split when, at full resolution,
    it holds two or more big disc components (each at least ``MIN_DISC_MM3``) with bone between
    them; every pooled voxel goes to the nearest full-resolution piece. Returns the new map, the
    new component count and the number of splits. ``comp`` is the map of the pooled box ``origin``,
    ``counts`` and ``objs`` its components' voxel counts and boxes.
    """
    if f == (1, 1, 1):
        return comp, n, 0  # the components are the full-resolution ones
    full_mm3 = float(np.prod(sp)) / float(np.prod(f))
    sizes = counts * float(np.prod(sp))
    n_split = 0
    for i in range(1, n + 1):
        if objs[i - 1] is None or sizes[i] < 2 * MIN_DISC_MM3:
            continue
        box_c = objs[i - 1]
        box = _scaled_box(_shift(box_c, origin), f, sem.shape)
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
        vert = sem[box] == VERTEBRA
        groups = [[big[0]]]
        for j in big[1:]:
            prev = groups[-1][-1]
            if _bone_between(vert, cen[prev], cen[j], sp / np.array(f, float)) >= BONE_BETWEEN_RATIO:
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


class DiscComponents(NamedTuple):
    """Disc instances on the pooled grid (:func:`_disc_instances`)."""

    comp: np.ndarray  # instance id per cell of ``box`` (0: no disc)
    box: tuple[slice, ...] | None  # the disc class's box on the pooled grid (None: no disc voxel)
    ids: list[int]  # the discs kept, ascending
    sizes: np.ndarray  # cells per id (index 0 is not meaningful)
    objects: list[tuple[slice, ...] | None]  # each id's box on the pooled grid, as ndimage.find_objects
    discarded: int
    split: int


def _disc_instances(disc_c: np.ndarray, sp: np.ndarray, axis, sem: np.ndarray | None = None,
                    f: tuple[int, ...] = (1, 1, 1), vert_c: np.ndarray | None = None) -> DiscComponents:
    """Disc instances on a pooled grid (:class:`DiscComponents`: the instance map on the disc
    class's box, kept ids, their sizes and boxes, components discarded and discs split).

    Components off the spine (too far from the canal line: fat, bowel, muscle the network took
    for disc) are discarded; small fragments join the nearest big disc when close to it (else
    they are discarded); two big components at the same level (a disc split in two) are merged
    unless bone lies between them (two discs with a small or collapsed vertebra between). With
    ``sem`` (the full-resolution classes), a component holding two discs that are separate at
    full resolution (they touch only on the pooled grid) is split first.
    """
    comp, n, box = _components_in_box(disc_c)
    if n == 0:
        return DiscComponents(comp, box, [], np.zeros(1, np.int64), [], 0, 0)
    objs = ndimage.find_objects(comp)
    idx = np.nonzero(comp)
    lab = comp[idx]
    counts = np.bincount(lab, minlength=n + 1)
    n_split = 0
    if sem is not None:
        comp, n, n_split = _split_touching_discs(comp, n, counts, objs, sem, f, sp, box)
        if n_split:  # new ids: count again
            objs = ndimage.find_objects(comp)
            idx = np.nonzero(comp)
            lab = comp[idx]
            counts = np.bincount(lab, minlength=n + 1)
    cells = counts.copy()  # (counts of merged discs grow below)
    # Grid indices (exact integer sums, as on the whole grid).
    centers = _index_sums(lab.astype(np.intp), tuple(x + b.start for x, b in zip(idx, box)), n, None).sums
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
    if axis is not None and big.size >= 3:
        # A small disc-class piece to one side of the canal line is no level of its own (a disc
        # straddles the line): it joins a disc when close to one, as any fragment, or is dropped.
        med = float(np.median(sizes[big]))
        beside = (np.abs(d_lr[big]) > DISC_FRAGMENT_LR_MM) & (sizes[big] < SMALL_DISC_RATIO * med)
        if beside.any() and not beside.all():
            big = big[~beside]
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
    # Sizes and boxes of the mapped ids from those of the components (what bincount and
    # find_objects of the mapped map give, without another pass over it).
    sizes = np.zeros(int(lut.max()) + 1, np.int64)
    np.add.at(sizes, lut, cells)
    objects: list[tuple[slice, ...] | None] = [None] * (sizes.size - 1)
    for j in range(1, n + 1):
        if lut[j]:
            objects[lut[j] - 1] = _union_box([objects[lut[j] - 1], _shift(objs[j - 1], box)])
    return DiscComponents(lut.astype(np.int32)[comp], box, sorted(order), sizes, objects, discarded, n_split)


def _check_merged_discs(out: Labelling) -> None:
    """Warn about a disc about twice as thick as its neighbours (two discs the segmentation merged).

    Levels are counted from the bottom, so every level from that disc upwards may be named one
    level too far down: their confidences are lowered and a ``merged_disc`` warning says so.
    """
    h = np.array([d.plane.height_mm if d.plane is not None else np.nan for d in out.discs], float)
    if np.isfinite(h).sum() < 4:
        return
    for k, d in enumerate(out.discs):
        # Against the neighbouring discs (two on each side), not all: lumbar discs are normally
        # about twice as thick as the thoracic ones in the same field of view (SPIDER: 5 of 31
        # healthy reference masks were flagged against the median of all discs).
        others = np.concatenate([h[max(k - 2, 0):k], h[k + 1:k + 3]])
        if np.isfinite(others).sum() < 2:
            continue
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
            f"The disc named {d.name} is {h[k]:.1f} mm thick, {h[k] / ref:.1f} times the median of its "
            "neighbours: it may be two discs merged, in which case it and every level above it are named "
            "one level too far down. Check the level numbering.",
        )
