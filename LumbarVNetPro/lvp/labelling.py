"""Level labelling: vertebra and disc instances from a semantic segmentation, named by level.

Method (works on the canonical grid, cropped to the spine):

1. Disc instances are the connected components of the disc class (small fragments join the
   nearest large disc). Each disc gets a mid-plane (:func:`lvp.planes.fit_disc_plane`).
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
from lvp.planes import DiscPlane, fit_disc_plane

MIN_DISC_MM3 = 150.0  # smaller disc components are fragments
MIN_VERTEBRA_MM3 = 800.0
SACRUM_LENGTH_RATIO = 1.4
THORACIC_DEPTH_RATIO = 0.88  # a body shallower than this fraction of L3-L5 looks thoracic
RUDIMENTARY_DISC_RATIO = 0.4  # lumbosacral disc volume / L4-L5 disc volume


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
    idx = [np.nonzero(mask.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    return tuple(slice(max(int(x[0]) - margin, 0), int(x[-1]) + margin + 1) for x in idx)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def _disc_instances(disc: np.ndarray, voxel_mm3: float, f: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """Label discs on a pooled grid; fragments join the big disc with the nearest centroid."""
    comp, n = _components(_pool_any(disc, f))
    if n == 0:
        return np.zeros(disc.shape, np.int32), []
    idx = np.nonzero(comp)
    lab = comp[idx]
    counts = np.bincount(lab, minlength=n + 1)
    sizes = counts[1:] * voxel_mm3 * np.prod(f)
    ids = np.arange(1, n + 1)
    big = ids[sizes >= MIN_DISC_MM3]
    small = ids[sizes < MIN_DISC_MM3]
    if big.size == 0:
        big, small = ids, ids[:0]
    if small.size:
        centers = np.stack([np.bincount(lab, weights=idx[j], minlength=n + 1) for j in range(3)], 1)
        centers = centers[1:] / np.maximum(counts[1:, None], 1)
        lut = np.arange(n + 1)
        for i in small:
            d = np.linalg.norm(centers[big - 1] - centers[i - 1], axis=1)
            lut[i] = big[int(np.argmin(d))]
        comp = lut[comp]
    return _unpool(comp, f, disc.shape) * disc, [int(i) for i in big]


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
    rows = range(si[0] + (si[-1] - si[0]) // 3, si[-1] - (si[-1] - si[0]) // 3 + 1)
    runs = []
    for k in range(max(k0 - 1, 0), min(k0 + 2, vert.shape[0])):
        for r in rows:
            line = vert[k, r]
            nz = np.nonzero(line)[0]
            if nz.size == 0:
                continue
            start = nz[0]
            stop = start
            while stop + 1 < line.size and line[stop + 1] and not canal[k, r, stop + 1]:
                stop += 1
            runs.append((stop - start + 1) * spacing[2])
    return float(np.median(runs)) if runs else float("nan")


def _pool_any(mask: np.ndarray, f: tuple[int, ...]) -> np.ndarray:
    """Max-pool a boolean mask by integer factors (padding at the far edges)."""
    if f == (1, 1, 1):
        return mask
    pad = [(0, (-n) % k) for n, k in zip(mask.shape, f)]
    m = np.pad(mask, pad)
    s = m.shape
    return m.reshape(s[0] // f[0], f[0], s[1] // f[1], f[1], s[2] // f[2], f[2]).any(axis=(1, 3, 5))


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
    labels[sem == CANAL] = CANAL_LABEL
    canal = sem == CANAL

    # 1. Discs (instances found on a grid pooled to ~1 mm in-plane, for speed).
    f = tuple(int(min(2, max(1, np.floor(0.95 / s)))) for s in volume.spacing)
    disc_map, disc_ids = _disc_instances(sem == DISC, voxel_mm3, f)
    planes: list[tuple[int, DiscPlane]] = []
    disc_objs = ndimage.find_objects(disc_map)
    for i in disc_ids:
        box = disc_objs[i - 1]
        box_affine = sub.copy()
        box_affine[:3, 3] = sub[:3, :3] @ np.array([b.start for b in box], float) + sub[:3, 3]
        plane = fit_disc_plane(disc_map[box] == i, box_affine, volume.spacing)
        if plane is not None:
            planes.append((i, plane))
    inferior = volume.affine[:3, 1] / np.linalg.norm(volume.affine[:3, 1])
    planes.sort(key=lambda p: float(p[1].center_lps @ inferior))

    # 2. Vertebrae: between disc planes, or (no discs segmented) connected components. Done on
    # a grid pooled to ~1 mm in-plane (exact resolution is not needed to split at discs).
    vert = sem == VERTEBRA
    vert_c = _pool_any(vert, f)
    sub_c = sub.copy()
    sub_c[:3, :3] = sub[:3, :3] * np.array(f, float)[None, :]
    sub_c[:3, 3] = sub[:3, :3] @ ((np.array(f, float) - 1) / 2) + sub[:3, 3]
    vidx = np.nonzero(vert_c)
    vid_c = np.zeros(vert_c.shape, np.int32)
    if planes:
        pts = np.stack(vidx, axis=1).astype(np.float32) @ sub_c[:3, :3].T.astype(np.float32)
        pts += sub_c[:3, 3].astype(np.float32)
        interval = np.ones(len(pts), np.int32)
        for _, plane in planes:
            interval += (_below_disc(pts, plane, inferior) > 0).astype(np.int32)
        vid_c[vidx] = interval
    else:
        vid_c, _ = _components(vert_c)
    n_ids = int(vid_c.max())
    labels_c = vid_c[vidx]
    counts = np.bincount(labels_c, minlength=n_ids + 1) * int(np.prod(f))
    sizes = counts * voxel_mm3
    keep = [i for i in range(1, n_ids + 1) if sizes[i] >= MIN_VERTEBRA_MM3]
    sums = np.stack([np.bincount(labels_c, weights=vidx[j], minlength=n_ids + 1) for j in range(3)], 1)
    vcenters_all = {i: (sums[i] / max(counts[i] // np.prod(f), 1)) @ sub_c[:3, :3].T + sub_c[:3, 3] for i in keep}
    keep.sort(key=lambda i: float(vcenters_all[i] @ inferior))
    vid = _unpool(vid_c, f, sem.shape) * vert
    objs = ndimage.find_objects(vid)
    vcenters = [vcenters_all[i] for i in keep]

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
        m = vid[box] == i
        conf = base_conf
        si0, si1 = box[1].start + crop[1].start, box[1].stop + crop[1].start
        if name != "sacrum" and (si0 <= 1 or si1 >= semantic.shape[1] - 1):
            conf *= 0.8
        if prob is not None:
            conf *= float(np.clip(prob[box][m].mean(), 0.0, 1.0))
        vlut[i] = SACRUM_LABEL if name == "sacrum" else VERTEBRA_LABELS.get(name, 0)
        depth = _body_depth(m, canal[box], volume.spacing)
        kind = "sacrum" if name == "sacrum" else "vertebra"
        out.vertebrae.append(Instance(name, int(vlut[i]), c, int(m.sum()), round(conf, 3), kind, body_depth_mm=depth))
    labels[vert] = vlut[vid[vert]]
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
        mask = disc_map[box] == i
        conf = base_conf * (0.9 if not (above and below) else 1.0)
        if prob is not None:
            conf *= float(np.clip(prob[box][mask].mean(), 0.0, 1.0))
        labels[box][mask] = label
        out.discs.insert(
            0, Instance(name, label, plane.center_lps, int(mask.sum()), round(conf, 3), "disc", plane=plane)
        )
    _check_transitional(out, has_sacrum)
    return out


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
