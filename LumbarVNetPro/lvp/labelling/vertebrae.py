"""Vertebrae: the side of a disc plane a bone point lies on, and the depth of a vertebral body."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lvp.labelling.thresholds import MIN_VERTEBRA_MM3, VERTEBRA_CORE_LR_MM, VERTEBRA_MAX_MEAN_LR_MM
from lvp.planes import DiscPlane


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
    out = w @ plane.normal_lps.astype(np.float32)  # inside the extent
    # Beyond the extent (a product per row: those rows give the values they gave among all rows).
    rows = np.flatnonzero(vc != vcl)  # (an index array: faster than a boolean one)
    out[rows] = (w[rows] - vcl[rows, None] * v) @ inferior.astype(np.float32)
    return out


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


def _on_axis_ids(keep: list[int], labels_c: np.ndarray, d_lr: np.ndarray, n_ids: int,
                 sp_c: np.ndarray) -> tuple[list[int], int]:
    """The vertebra candidates (ids of ``labels_c``, bone on the pooled grid) that lie on the
    canal's centre line, and how many were dropped as lateral bone.

    A vertebra's bone is spread evenly about the canal's centre line in left-right (the body
    straddles it, the transverse processes reach out on both sides), so its mean LR offset is small
    and it has a body-sized amount of bone close to the line. Bone of the sacral ala or the ilium
    that the network calls vertebra lies to one side (``d_lr``: LR offsets in mm of the points).
    """
    n = np.bincount(labels_c, minlength=n_ids + 1).astype(float)
    mean_lr = np.bincount(labels_c, weights=d_lr, minlength=n_ids + 1) / np.maximum(n, 1)
    # Per id, the points within the core (one histogram of (id, in the core): no gathered copy).
    central = np.bincount(labels_c * 2 + (np.abs(d_lr) <= VERTEBRA_CORE_LR_MM), minlength=2 * n_ids + 2)[1::2]
    core_mm3 = central * float(np.prod(sp_c))
    on_axis = [i for i in keep if abs(mean_lr[i]) <= VERTEBRA_MAX_MEAN_LR_MM and core_mm3[i] >= MIN_VERTEBRA_MM3]
    return on_axis, len(keep) - len(on_axis)


class IndexSums(NamedTuple):
    """Per id, sums of the points' grid indices (:func:`_index_sums`)."""

    sums: np.ndarray  # (n_ids + 1, 3) float, exact
    flagged: np.ndarray | None  # the same over the flagged points (None without a flag)
    count: np.ndarray | None  # flagged points per id
    boxes: list  # per id, the box of its points (None without points), as ndimage.find_objects


def _index_sums(ids: np.ndarray, idx: tuple[np.ndarray, ...], n_ids: int, flag: np.ndarray | None) -> IndexSums:
    """Per id (0..``n_ids``) of points with grid indices ``idx``: the sums of their indices
    (``(n_ids + 1, 3)``), the sums and count of those where ``flag`` is set (None without it) and
    the box of each id's points.

    Exact integer sums from one histogram of (id, index, flag) per axis: the same floats as
    ``np.bincount(ids, weights=idx[j])`` gives (its float sums of integers are exact too), with
    no weighted bincount (slow) and no gathered copies for the flagged points; the boxes are those
    ``ndimage.find_objects`` finds on a map of the ids, without the map.
    """
    n = n_ids + 1
    sums = np.zeros((n, 3))
    flagged = np.zeros((n, 3)) if flag is not None else None
    count = np.zeros(n, np.int64) if flag is not None else None
    if ids.size == 0:
        return IndexSums(sums, flagged, count, [None] * n)
    ranges = []
    for j, x in enumerate(idx):
        lo, hi = int(x.min()), int(x.max())
        width = hi - lo + 1
        key = ids * width + (x - lo)
        if flag is not None:
            key = key * 2 + flag
        hist = np.bincount(key, minlength=n * width * (1 if flag is None else 2)).reshape(n, width, -1)
        at = np.arange(lo, hi + 1, dtype=np.int64)
        per_id = hist.sum(axis=2)
        sums[:, j] = per_id @ at
        if flag is not None:
            flagged[:, j] = hist[:, :, 1] @ at
            count = hist[:, :, 1].sum(axis=1)
        there = per_id > 0
        ranges.append((lo + there.argmax(axis=1), hi + 1 - there[:, ::-1].argmax(axis=1)))
    present = np.bincount(ids, minlength=n) > 0
    boxes = [tuple(slice(int(r[0][i]), int(r[1][i])) for r in ranges) if present[i] else None for i in range(n)]
    return IndexSums(sums, flagged, count, boxes)
