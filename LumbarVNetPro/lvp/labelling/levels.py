"""The level labelling in order (see :mod:`lvp.labelling` for the method): :func:`label_levels`."""

from __future__ import annotations

import numpy as np

from lvp.io.volume import Volume
from lvp.labelling.canal_axis import _near_line, _spine_axis
from lvp.labelling.counting import _check_transitional, _disc_name, _is_sacrum, _vertebra_names
from lvp.labelling.disc_gaps import _drop_stray_end_discs, _with_missing_discs
from lvp.labelling.discs import _check_merged_discs, _disc_instances
from lvp.labelling.grid import (
    _box_or_none,
    _components_in_box,
    _foreground_box,
    _masked,
    _one_blas_thread,
    _pool_bits,
    _relative,
    _scaled_box,
    _shift,
    _union_box,
    _unpool,
    _write_class,
)
from lvp.labelling.numbering import assess_numbering, finish_numbering, unique_disc_names
from lvp.labelling.sacrum import _sacrum_instance, _sacrum_mask, drop_sacral_discs, lowest_disc_ratio
from lvp.labelling.thresholds import (
    BODY_BEHIND_CANAL_CENTRE_MM,
    BONE_BEYOND_CANAL_MM,
    BONE_MAX_ANTERIOR_MM,
    BONE_MAX_LR_MM,
    BONE_MAX_POSTERIOR_MM,
    MIN_VERTEBRA_MM3,
    REMNANT_DISC_RATIO,
    SACRUM_TRUST_RATIO,
    SMALL_LOWEST_DISC_RATIO,
    VERTEBRA_CORE_LR_MM,
)
from lvp.labelling.types import Instance, Labelling
from lvp.labelling.vertebrae import _below_disc, _body_depth, _index_sums, _on_axis_ids
from lvp.labels import (
    CANAL,
    CANAL_LABEL,
    DISC,
    DISC_LABELS,
    SACRUM,
    SACRUM_LABEL,
    VERTEBRA,
    VERTEBRA_LABELS,
)
from lvp.planes import DiscPlane, fit_disc_plane


def label_levels(semantic: np.ndarray, volume: Volume, probability: np.ndarray | None = None,
                 sacrum_class: bool | None = None) -> Labelling:
    """Label vertebrae, discs and canal with TotalSpineSeg values (see the module docstring).

    ``semantic`` holds the network classes 0..3 (0..4 with a sacrum class) on ``volume``'s
    canonical grid; ``probability`` (optional, same grid, the probability of the predicted class)
    lowers confidences where the network was unsure. ``sacrum_class`` says whether the model has a
    sacrum class (None: whether ``semantic`` holds any); the numbering check names its absence.
    The result's ``numbering`` is the numbering check (:mod:`lvp.labelling.numbering`) and no two
    of its structures share a level name.
    """
    with _one_blas_thread():
        return _label_levels(semantic, volume, probability, sacrum_class)


def _label_levels(semantic: np.ndarray, volume: Volume, probability: np.ndarray | None,
                  sacrum_class: bool | None) -> Labelling:
    if semantic.shape != volume.shape:
        raise ValueError(f"segmentation shape {semantic.shape} differs from the image's {volume.shape}")
    # uint8: every TotalSpineSeg value is below 256 (half the bytes of int16 on a full field of view;
    # np.zeros leaves the pages outside the crop untouched).
    out = Labelling(labels=np.zeros(semantic.shape, np.uint8))
    out.facts = {"sacrum_class": bool(sacrum_class),  # None: whether the crop holds the class (below)
                 "anchor": None, "remnants": 0, "rudimentary_lowest": False, "bone_above_sacrum": False,
                 "fov_below_mm": None, "renumbered": False}
    # Unsigned classes are their own foreground mask (no full-size "semantic > 0" array).
    crop = _foreground_box(semantic if semantic.dtype.kind in "bu" else semantic > 0)
    if crop is None:
        out.warn("empty_segmentation", "No spine structure was segmented; no levels were labelled.")
        out.numbering = assess_numbering(out)
        return out
    out.crop = crop
    sem = semantic[crop]
    if sacrum_class is None:  # every class voxel lies in the crop
        out.facts["sacrum_class"] = bool((sem == SACRUM).any())
    offset = np.array([c.start for c in crop], float)
    sub = volume.affine.copy()
    sub[:3, 3] = volume.index_to_lps(offset)
    voxel_mm3 = float(np.prod(volume.spacing))
    labels = out.labels[crop]

    # Everything up to the level count runs on a grid pooled to ~1 mm in-plane (for speed).
    f = tuple(int(min(2, max(1, np.floor(0.95 / s)))) for s in volume.spacing)
    sp_c = np.array(volume.spacing, float) * np.array(f, float)
    sub_c = sub.copy()
    sub_c[:3, :3] = sub[:3, :3] * np.array(f, float)[None, :]
    sub_c[:3, 3] = sub[:3, :3] @ ((np.array(f, float) - 1) / 2) + sub[:3, 3]
    # One pooling pass for all classes: bit c set where class c occurs in the pooled cell.
    bits_c = _pool_bits(sem, f)
    canal_c = (bits_c & (1 << CANAL)) > 0
    canal_box = _box_or_none(canal_c)
    if canal_box is not None:  # every canal voxel lies in the canal cells' box
        region = _scaled_box(canal_box, f, sem.shape)
        _write_class(labels[region], sem[region], CANAL, CANAL_LABEL)
    axis = _spine_axis(canal_c)
    inferior = volume.affine[:3, 1] / np.linalg.norm(volume.affine[:3, 1])
    # The sacrum class (a model trained with one): its largest component, as LPS points.
    voxel_c_mm3 = float(np.prod(sp_c))
    sac_c = _sacrum_mask((bits_c & (1 << SACRUM)) > 0, voxel_c_mm3, axis, sp_c)
    sac_pts = None
    if sac_c is not None:
        sac_idx = np.argwhere(sac_c[1]) + np.array([b.start for b in sac_c[0]])
        sac_pts = sac_idx.astype(np.float32) @ sub_c[:3, :3].T.astype(np.float32)
        sac_pts += sub_c[:3, 3].astype(np.float32)

    # Bone on the spine: near the canal's centre line (the rest is not vertebra).
    vert_c = (bits_c & (1 << VERTEBRA)) > 0
    spine_c, in_front, d_lr = vert_c, None, None  # spine_c: the bone points kept, as a mask
    if axis is not None:
        spine_c, lr_grid, ap_grid = _near_line(vert_c, axis, sp_c, BONE_MAX_LR_MM, BONE_MAX_ANTERIOR_MM,
                                               BONE_MAX_POSTERIOR_MM, BONE_BEYOND_CANAL_MM)
    vidx = np.nonzero(spine_c)
    if axis is not None:
        d_lr, d_ap = lr_grid[vidx[0], vidx[1]], ap_grid[vidx[1], vidx[2]]
        # The body: bone in front of the canal's centre and within a body's half-width of its line in
        # LR (bone farther to the side, ala or ilium the network called vertebra, would pull the centre).
        in_front = (d_ap < -BODY_BEHIND_CANAL_CENTRE_MM) & (np.abs(d_lr) <= VERTEBRA_CORE_LR_MM)
        del d_ap, lr_grid, ap_grid
    pts = np.stack(vidx, axis=1).astype(np.float32) @ sub_c[:3, :3].T.astype(np.float32)
    pts += sub_c[:3, 3].astype(np.float32)

    # 1. Discs: components in front of the canal, fragments joined or dropped.
    discs_c = _disc_instances((bits_c & (1 << DISC)) > 0, sp_c, axis, sem, f, vert_c)
    disc_c, disc_box, disc_ids, n_discarded, n_split = discs_c.comp, discs_c.box, discs_c.ids, discs_c.discarded, \
        discs_c.split
    if n_split:
        out.warn(
            "merged_disc",
            f"{n_split} disc(s) separate in the segmentation touched on the labelling grid and were "
            "split again (a small or collapsed vertebra between them). Check the level numbering.",
        )
    disc_sizes = discs_c.sizes
    disc_objs_c = discs_c.objects  # boxes on the pooled grid (disc_c: the map of its disc_box)
    disc_objs = [None if b is None else _scaled_box(b, f, sem.shape) for b in disc_objs_c]

    planes: list[tuple[int, DiscPlane]] = []
    disc_masks: dict[int, np.ndarray] = {}  # full-resolution mask per disc, reused when writing labels
    for i in disc_ids:
        box = disc_objs[i - 1]
        box_affine = sub.copy()
        box_affine[:3, 3] = sub[:3, :3] @ np.array([b.start for b in box], float) + sub[:3, 3]
        disc_masks[i] = _unpool(disc_c[_relative(disc_objs_c[i - 1], disc_box)] == i, f, sem[box].shape) \
            & (sem[box] == DISC)
        plane = fit_disc_plane(disc_masks[i], box_affine, volume.spacing)
        if plane is not None:
            planes.append((i, plane))
    planes.sort(key=lambda p: float(p[1].center_lps @ inferior))
    # Discs at either end of the chain, far from it with no bone in between: not spine.
    lowest_before = planes[-1][0] if planes else None
    n_discarded += _drop_stray_end_discs(planes, disc_sizes, pts)
    out.facts["caudal_stray_dropped"] = bool(planes) and planes[-1][0] != lowest_before
    if n_discarded:
        out.warn("disc_fragments_ignored",
                 f"{n_discarded} disc-class fragment(s) away from the spine or from any disc were not labelled.")
    # 3a. Discs inside or below the sacrum (S1-S2 remnants) are not lumbar; nor is a rudimentary
    # lowest disc (see lvp.labelling.sacrum). Their voxels are written as sacrum.
    remnants = drop_sacral_discs(planes, sac_pts, inferior, voxel_c_mm3) if sac_pts is not None else []
    ratio = lowest_disc_ratio([float(disc_sizes[i]) for i, _ in planes])
    if ratio is not None and ratio < SMALL_LOWEST_DISC_RATIO:
        lowest_box = disc_objs[planes[-1][0] - 1]
        cut = lowest_box[1].stop + crop[1].start >= semantic.shape[1] - 2  # the FOV cuts it
        # (A small lowest disc above a segmented sacrum is no remnant by that alone: degenerated L5-S
        # discs of 0.26-0.37 of the median occur in SPIDER.)
        if not cut and ratio < REMNANT_DISC_RATIO:
            remnants.append(planes.pop())
            out.facts["rudimentary_lowest"] = True
        elif not cut:
            out.facts["small_lowest"] = round(ratio, 2)
    out.facts["remnants"] = len(remnants)
    if remnants:
        out.warn(
            "sacral_disc",
            f"{len(remnants)} disc-like structure(s) below the lowest lumbar disc (inside the sacrum, or much "
            "smaller than the discs above: an S1-S2 remnant or a rudimentary lumbosacral disc) were not "
            "named as lumbar levels. Check the level numbering.",
        )
    separators = _with_missing_discs([p for _, p in planes], pts)
    out.facts["interpolated"] = len(separators) - len(planes)
    if len(separators) > len(planes):
        out.warn(
            "missing_disc",
            f"{len(separators) - len(planes)} disc(s) appear not segmented (a gap between discs about twice "
            "the usual spacing, filled with bone): the bone there was counted as two vertebrae. Check the level "
            "numbering.",
        )

    # 2. Vertebrae: bone between disc planes, or (no discs segmented) connected components
    # (exact resolution is not needed to split at discs). ``labels_c``: the id of each bone point.
    if separators:
        labels_c = np.ones(len(pts), np.int32)
        s_inf = pts @ inferior.astype(np.float32)
        for plane in separators:
            # Farther from the plane's centre along the SI axis than half its AP extent, the bent
            # plane's side is the side along SI: evaluate the exact distance only in that band.
            d = s_inf - np.float32(plane.center_lps @ inferior)
            band = np.abs(d) <= plane.extent_v_mm / 2 + 2.0
            below = d > 0
            # (numpy's boolean indexing is several times slower than compress / an index array)
            below[np.flatnonzero(band)] = _below_disc(np.compress(band, pts, axis=0), plane, inferior) > 0
            labels_c += below
    else:
        comp, _, comp_box = _components_in_box(vert_c)  # (spine_c lies in vert_c's box; same point order)
        labels_c = comp[spine_c[comp_box]] if comp_box is not None else np.zeros(0, np.int32)
    labels_c = labels_c.astype(np.intp)  # (bincount's index type: cast once)
    n_ids = int(labels_c.max(initial=0))
    # The id map on the box of the bone points (pooled grid), and the ids' boxes.
    vbox = tuple(slice(int(x.min()), int(x.max()) + 1) for x in vidx) if len(vidx[0]) else None
    vid_c = np.zeros(tuple(b.stop - b.start for b in vbox) if vbox else (0, 0, 0), np.int32)
    if vbox is not None:
        vid_c[spine_c[vbox]] = labels_c  # (a mask assigns in the order np.nonzero lists the points)
    counts = np.bincount(labels_c, minlength=n_ids + 1) * int(np.prod(f))
    sizes = counts * voxel_mm3
    keep = (np.flatnonzero(sizes[1:] >= MIN_VERTEBRA_MM3) + 1).tolist()
    if axis is not None and keep:
        keep, n_lateral = _on_axis_ids(keep, labels_c, d_lr, n_ids, sp_c)
        if n_lateral:
            out.facts["lateral_bone_dropped"] = n_lateral
            out.warn("lateral_bone_ignored",
                     f"{n_lateral} vertebra-class structure(s) beside the spine (no vertebral body on the canal's "
                     "centre line: sacral ala, ilium) were not counted as vertebrae.")
    sums, sb, nb, id_boxes = _index_sums(labels_c, vidx, n_ids, in_front)
    vcenters_all = {i: (sums[i] / max(counts[i] // np.prod(f), 1)) @ sub_c[:3, :3].T + sub_c[:3, 3] for i in keep}
    keep.sort(key=lambda i: float(vcenters_all[i] @ inferior))
    # Each id's box on vid_c (the bone points' box) and on the crop.
    objs_c = [None if b is None else _relative(b, vbox) for b in id_boxes[1:]]
    objs = [None if b is None else _scaled_box(b, f, sem.shape) for b in id_boxes[1:]]
    vcenters = [vcenters_all[i] for i in keep]
    body_centers: dict[int, np.ndarray] = {}
    if in_front is not None and in_front.any():
        body_centers = {i: (sb[i] / nb[i]) @ sub_c[:3, :3].T + sub_c[:3, 3] for i in keep if nb[i] > 0}
    del in_front

    # 3. Sacrum: the sacrum class below the lowest disc; without it, the bone below the lowest
    # disc, long along the spine or reaching the FOV bottom.
    lengths = [(objs[i - 1][1].stop - objs[i - 1][1].start) * volume.spacing[1] for i in keep]
    has_sacrum = False
    s1_ids: list[int] = []  # vertebra-class bone that belongs to the sacrum (an S1 body)
    if planes:
        low = planes[-1][1]
        out.facts["fov_below_mm"] = _fov_below_mm(low, volume, inferior)
    if sac_pts is not None and planes and float((sac_pts.mean(axis=0) - low.center_lps) @ low.normal_lps) > 0:
        out.facts["anchor"] = "sacrum_class"
        below_ids = [i for i in keep if float((vcenters_all[i] - low.center_lps) @ low.normal_lps) > 0]
        # Bone below the lowest disc whose centre lies lower than the sacrum's is no vertebra
        # between the two (an L5 or S1 lies above the sacrum): pelvic bone beside or below the
        # sacrum that the network called vertebra. Not counted.
        # (Compared along the image's SI axis: the lumbosacral disc's normal is tilted.)
        sac_level = float(sac_pts.mean(axis=0) @ inferior)
        beside = [i for i in below_ids if float(vcenters_all[i] @ inferior) > sac_level]
        if beside:
            out.facts["bone_beside_sacrum"] = len(beside)
            keep = [i for i in keep if i not in beside]
            below_ids = [i for i in below_ids if i not in beside]
        above_len = [lengths[k] for k, i in enumerate(keep) if i not in below_ids][-3:]
        short = bool(above_len) and all(
            lengths[keep.index(i)] < 0.5 * float(np.median(above_len)) for i in below_ids)
        if below_ids and (remnants or short):
            # S1 segmented as a vertebra above a remnant disc, or a sliver of it (less than half a
            # vertebra, as spider136's mask labels): part of the sacrum, not a lumbar vertebra.
            s1_ids = below_ids
        elif below_ids:
            out.facts["bone_above_sacrum"] = True  # a vertebra below the lowest disc: L5-S missed?
        keep = [i for i in keep if i not in s1_ids]
        vcenters = [vcenters_all[i] for i in keep]
    elif sac_pts is not None:
        out.facts["sacrum_misplaced"] = True
    if keep and planes and out.facts["anchor"] is None:
        reaches_bottom = objs[keep[-1] - 1][1].stop + crop[1].start >= semantic.shape[1] - 3
        has_sacrum = _is_sacrum(lengths, vcenters[-1], planes[-1][1], reaches_bottom)
        if has_sacrum:
            out.facts["anchor"] = "sacrum_bone"
            # Trusted as the sacrum (numbering anchor) only when twice as long as the vertebrae
            # above it: an L5 whose L5-S disc was missed reaches 1.8 times (SPIDER), a sacrum that
            # a model without the class called vertebra 2.5 times (Chu VB t214).
            ref = float(np.median(lengths[-4:-1])) if len(lengths) > 1 else 30.0
            out.facts["sacrum_long"] = bool(lengths[-1] >= SACRUM_TRUST_RATIO * ref)

    n_mobile = len(keep) - int(has_sacrum)
    # A disc below the lowest bone, with image below it: the lumbosacral disc of a mask that
    # leaves the sacrum out (as many SPIDER masks do).
    disc_at_bottom = bool(
        planes
        and not has_sacrum
        and (not keep or (vcenters[-1] - planes[-1][1].center_lps) @ planes[-1][1].normal_lps < 0)
    )
    # Without a sacrum the lowest disc (or vertebra) is assumed to be L5-S (L5): the numbering
    # check says so (the former warnings sacrum_not_segmented / sacrum_not_found fired on every
    # normal case of a model without a sacrum class).
    if has_sacrum or out.facts["anchor"] == "sacrum_class":
        base_conf = 0.95
    elif disc_at_bottom:
        base_conf = 0.75
        out.facts["assumed"] = "lowest_disc"
    else:
        base_conf = 0.35
        out.facts["assumed"] = "lowest_vertebra"
    names = _vertebra_names(n_mobile, has_sacrum)

    def mean_prob(box: tuple[slice, ...], mask: np.ndarray) -> float:
        """Mean probability over ``mask``, a mask of the crop's ``box`` (read for that box only:
        the same values in the same order as from the whole crop).
        """
        return float(np.clip(_masked(probability[_shift(box, crop)], mask).mean(), 0.0, 1.0))

    # Confidence per vertebra: lower at the FOV edge (partial) and with an unsure network.
    vlut = np.zeros(n_ids + 1, np.uint8)
    for i, name, c in zip(keep, names, vcenters):
        box = objs[i - 1]
        vert_box = sem[box] == VERTEBRA
        m = _unpool(vid_c[objs_c[i - 1]] == i, f, vert_box.shape) & vert_box
        conf = base_conf
        si0, si1 = box[1].start + crop[1].start, box[1].stop + crop[1].start
        if name != "sacrum" and (si0 <= 1 or si1 >= semantic.shape[1] - 1):
            conf *= 0.8
            out.facts.setdefault("edge_vertebrae", []).append(name)
        if probability is not None:
            conf *= mean_prob(box, m)
        vlut[i] = SACRUM_LABEL if name == "sacrum" else VERTEBRA_LABELS.get(name, 0)
        depth = _body_depth(m, sem[box] == CANAL, volume.spacing)
        kind = "sacrum" if name == "sacrum" else "vertebra"
        out.vertebrae.append(Instance(name, int(vlut[i]), c, np.count_nonzero(m), round(conf, 3), kind,
                                      body_depth_mm=depth, body_centroid_lps=body_centers.get(i)))
        np.copyto(labels[box], vlut[i], where=m)  # (bone of no kept id, or off the spine, keeps 0)
    for i in s1_ids:
        box = objs[i - 1]
        np.copyto(labels[box], SACRUM_LABEL, where=_unpool(vid_c[objs_c[i - 1]] == i, f, labels[box].shape)
                  & (sem[box] == VERTEBRA))
    if out.facts["anchor"] == "sacrum_class":
        # The box of the sacrum component and of the S1 bone already written as sacrum.
        sac_region = _union_box([_scaled_box(sac_c[0], f, sem.shape), *(objs[i - 1] for i in s1_ids)])
        out.vertebrae.append(_sacrum_instance(sem, labels, sac_c, f, sub, sac_region,
                                              mean_prob if probability is not None else None))
    for i, _ in remnants:
        np.copyto(labels[disc_objs[i - 1]], SACRUM_LABEL, where=disc_masks[i])
    if any(v.label == 0 for v in out.vertebrae):
        out.warn("levels_above_t11", "Vertebrae above T11 are listed but not labelled (no output value).")

    # Discs: named by the vertebrae above and below; two alike are renumbered by order (a level
    # name is never given twice).
    named = []
    for n_from_bottom, (_, plane) in enumerate(reversed(planes)):
        above = [v for v in out.vertebrae if (v.centroid_lps - plane.center_lps) @ plane.normal_lps < 0]
        below = [v for v in out.vertebrae if (v.centroid_lps - plane.center_lps) @ plane.normal_lps > 0]
        named.append((_disc_name(above, below, n_from_bottom), bool(above and below)))
    unique, out.facts["renumbered"] = unique_disc_names([n for n, _ in reversed(named)])
    if out.facts["renumbered"]:
        out.warn("levels_renumbered",
                 "Two discs were named alike (no vertebra was found between them): the discs were renumbered by "
                 "their order above the lowest one. Check the level numbering.")
    for (i, plane), name, (_, between) in zip(reversed(planes), reversed(unique), named):
        label = DISC_LABELS.get(name, DISC_LABELS["L5-S"] if name.endswith("-S") else 0)
        box = disc_objs[i - 1]
        mask = disc_masks[i]
        conf = base_conf * (0.9 if not between else 1.0)
        if probability is not None:
            conf *= mean_prob(box, mask)
        np.copyto(labels[box], label, where=mask)
        out.discs.insert(
            0, Instance(name, label, plane.center_lps, np.count_nonzero(mask), round(conf, 3), "disc", plane=plane)
        )
    _check_merged_discs(out)
    _check_transitional(out, out.facts["anchor"] is not None)
    finish_numbering(out)
    out.check_unique_names()
    return out


def _fov_below_mm(plane: DiscPlane, volume: Volume, inferior: np.ndarray) -> float:
    """How far (mm, along the image's inferior axis) the image reaches below a disc's centre."""
    idx = volume.lps_to_index(plane.center_lps[None])[0]
    return float((volume.shape[1] - 1 - idx[1]) * volume.spacing[1])
