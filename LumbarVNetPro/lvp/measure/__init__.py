"""Measurements per disc level from a labelled segmentation and the image.

Everything is measured on reformats in each disc's own frame (from its fitted mid-plane:
``n`` inferior, ``u`` left, ``v`` posterior), sampled every 0.5 mm:

* mid-sagittal plane through the disc centre: disc heights (anterior, middle, posterior at 10 %,
  50 %, 90 % of the disc depth), disc height index (mean height / depth), disc/CSF signal ratio;
* axial plane through the disc centre: posterior displacement beyond the posterior margins of
  both adjacent bodies (not at the slab's edge), its base width and circumferential span, dural
  sac AP diameter, and the dural sac area where that axial section is valid
  (:func:`lvp.measure.canal.section_facts`);
* axial planes 2.5-6.5 mm beyond each endplate (the one showing most body): the bodies' posterior
  margins (reference line);
* after all levels: each disc's mean height relative to the median of the other discs.

No lateral recess is measured (it is bony; see :mod:`lvp.measure.canal`). A disc that touches
the volume's front or back face, or lies within 5 mm of its top or bottom, is *cut by the field
of view* (``cut_by_fov``, with a note): the grading grades nothing there.

All lengths are in mm, areas in mm², with the points (LPS mm) where they were read; each level's
``evidence`` lists what the report draws (calipers with the input slice they lie on, the signal
regions, the displacement vector, the slab's coverage).
"""

from __future__ import annotations

import math

import numpy as np

from lvp.io.volume import Volume
from lvp.labels import SACRUM_LABEL, VERTEBRA_LABELS
from lvp.measure.canal import canal_at_disc
from lvp.measure.disc import _body_mask, disc_geometry, displacement
from lvp.measure.reformat import axis_range, lps_to_index, sample_plane
from lvp.measure.signal import signal_ratio
from lvp.measure.types import LevelMeasurements, Measurement

__all__ = ["LevelMeasurements", "Measurement", "measure_levels"]

BONE_LABELS = np.array(list(VERTEBRA_LABELS.values()) + [SACRUM_LABEL])
BODY_PLANE_BEYOND_MM = (2.5, 4.5, 6.5)


def measure_levels(volume: Volume, lab) -> dict[str, LevelMeasurements]:
    """Measure every labelled disc level (``lab``: :class:`lvp.labelling.Labelling`)."""
    # The image is read where it is sampled (signal_ratio): no float copy of the whole volume.
    image = volume.array
    labels = lab.labels
    faces = _Faces(labels, lab.crop, volume.spacing)
    out: dict[str, LevelMeasurements] = {}
    r_s = axis_range(-45.0, 45.0)
    r_l = axis_range(-35.0, 35.0)
    r_a = axis_range(-45.0, 55.0)
    voxel_mm = float(max(volume.spacing))
    for disc in lab.discs:
        p = disc.plane
        if p is None or disc.label == 0:
            continue
        m = LevelMeasurements(disc.name, disc.label, p.center_lps)
        m.cut_by_fov = _cut_by_fov(faces, int(disc.label))
        if m.cut_by_fov:
            m.notes.append(f"disc cut by the field of view (it reaches the image's front or back, or lies within "
                           f"{FOV_MARGIN_MM:g} mm of its top or bottom): not graded")
        c, n, u, v = p.center_lps, p.normal_lps, p.axis_u_lps, p.axis_v_lps
        sag = sample_plane(labels, volume, c, n, v, r_s, r_a)
        frame = disc_geometry(m, sag, disc.label, BONE_LABELS)
        h = frame.get("height", p.height_mm)
        mid = sample_plane(labels, volume, c, u, v, r_l, r_a)
        upper, body_u = _body_plane(labels, volume, c, -n, u, v, r_l, r_a, h)
        lower, body_l = _body_plane(labels, volume, c, n, u, v, r_l, r_a, h)
        displacement(m, mid, upper, lower, disc.label, BONE_LABELS, bodies=(body_u, body_l))
        if int(disc.label) in faces.lr_faces:
            # The slab's left-right faces cut the disc somewhere (a tilted or thin disc can look whole
            # on the mid-disc plane alone, spider50 L5-S): no Fardon type from this slab.
            m.section["disc_whole"] = False
        canal_at_disc(m, mid, upper, lower, voxel_mm)
        signal_ratio(m, sag, image, disc.label, frame)
        _measurement_evidence(m, volume)
        out[disc.name] = m
    _height_ratios(out)
    return out


def _body_plane(labels, volume: Volume, c, n, u, v, r_l, r_a, h: float):
    """The axial plane beyond one endplate that shows the most vertebral body, and that body's mask.

    Tried at 2.5, 4.5 and 6.5 mm beyond the disc's half-height: near a concave or collapsed
    endplate the first plane cuts only part of the body, whose outline would then make disc
    material look displaced by 20 mm (spider185 L4-L5).
    """
    best, area = (None, None), -1
    for extra in BODY_PLANE_BEYOND_MM:
        plane = sample_plane(labels, volume, c + (h / 2 + extra) * n, u, v, r_l, r_a)
        body = _body_mask(plane, BONE_LABELS)
        a = int(np.count_nonzero(body))
        if a > area:
            best, area = (plane, body), a
    return best


FOV_MARGIN_MM = 5.0  # a disc this close to the top or bottom face has its neighbouring body cut


def _values_present(region: np.ndarray) -> set[int]:
    """The positive values in a (small) label region."""
    flat = np.ravel(region)
    if flat.size == 0:
        return set()
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 2:
        # A count per value of the unsigned view: signed negatives land above the positive range.
        counts = np.bincount(flat.view(f"u{flat.dtype.itemsize}"))
        top = 1 << (8 * flat.dtype.itemsize - (1 if flat.dtype.kind == "i" else 0))
        return {int(v) for v in np.flatnonzero(counts[:top]) if v > 0}
    return {int(v) for v in np.unique(flat) if v > 0}


class _Faces:
    """The label values on the volume's faces and in its top and bottom margins, read once per case.

    Only these thin regions decide whether the field of view cuts a disc (:func:`_cut_by_fov`) and
    whether the slab's left-right faces cut it, so no pass over the whole label map is made per
    disc; the labelling's ``crop`` (which holds every labelled voxel) narrows them further.
    """

    def __init__(self, labels: np.ndarray, crop: tuple[slice, ...] | None, spacing) -> None:
        self._labels = labels
        self._box = [s.indices(n)[:2] for s, n in zip(crop or (slice(None),) * 3, labels.shape)]
        n_lr, n_si, n_ap = labels.shape
        self.lr_faces = self._values(0, (0, 1)) | self._values(0, (n_lr - 1, n_lr))
        self.ap_faces = self._values(2, (0, 1)) | self._values(2, (n_ap - 1, n_ap))
        # Rows j with j < margin (top) or n_si - 1 - j < margin (bottom): for an integer j,
        # j < margin exactly when j < ceil(margin), so each band is ceil(margin) rows deep.
        depth = min(n_si, math.ceil(FOV_MARGIN_MM / float(spacing[1])))
        self.si_margins = self._values(1, (0, depth)) | self._values(1, (n_si - depth, n_si))

    def _values(self, axis: int, span: tuple[int, int]) -> set[int]:
        """Positive values in the crop's part of the index range ``span`` along ``axis``."""
        box = list(self._box)
        box[axis] = (max(span[0], box[axis][0]), min(span[1], box[axis][1]))
        if any(hi <= lo for lo, hi in box):
            return set()
        return _values_present(self._labels[tuple(slice(lo, hi) for lo, hi in box)])


def _cut_by_fov(faces: _Faces, value: int) -> bool:
    """Whether the field of view cuts the disc or the body beside it.

    True when the disc touches the front or back face, or comes within :data:`FOV_MARGIN_MM` of the
    top or bottom face (spider5 T11-T12 starts 2.8 mm below the top: the T11 endplate and body
    margin its measurements rely on are outside the image). The left-right faces are the sagittal
    slab's own limits (a thin slab cuts every disc there); they are judged per quantity
    (:func:`lvp.measure.canal.section_facts`, displacement masking).
    """
    return value in faces.ap_faces or value in faces.si_margins


# Measurement -> (evidence kind, plane it was read on, label).
_DRAWN = {
    "disc_height_anterior_mm": ("caliper", "sagittal (disc mid-plane)", "anterior disc height"),
    "disc_height_middle_mm": ("caliper", "sagittal (disc mid-plane)", "middle disc height"),
    "disc_height_posterior_mm": ("caliper", "sagittal (disc mid-plane)", "posterior disc height"),
    "canal_ap_diameter_mm": ("caliper", "axial (disc mid-plane)", "dural sac AP diameter"),
    "posterior_displacement_mm": ("vector", "axial (disc mid-plane)", "posterior displacement"),
    "dural_sac_area_mm2": ("region", "axial (disc mid-plane)", "dural sac cross-section"),
}


def source_slice(volume: Volume, point_lps) -> int:
    """The input series' slice (0-based index along its axis nearest left-right) holding a point."""
    k = float(lps_to_index(volume, np.asarray(point_lps, float))[0])
    k = int(np.clip(round(k), 0, volume.shape[0] - 1))
    return volume.shape[0] - 1 - k if volume.source.flip[0] else k


def _measurement_evidence(m: LevelMeasurements, volume: Volume) -> None:
    """Evidence items for the measurements with points, each with the input slice it lies on."""
    for name, (kind, plane, label) in _DRAWN.items():
        item = m.items.get(name)
        if item is None or len(item.points_lps) < 2:
            continue
        pts = np.asarray(item.points_lps, float)
        m.evidence.append({"kind": kind, "measurement": name, "plane": plane, "label": label,
                           "points_lps": [list(map(float, p)) for p in pts],
                           "slice_index": source_slice(volume, pts.mean(axis=0))})
    for e in m.evidence:
        if "slice_index" not in e and e.get("points_lps"):
            e["slice_index"] = source_slice(volume, np.mean(np.asarray(e["points_lps"], float), axis=0))


def _height_ratios(levels: dict[str, LevelMeasurements]) -> None:
    """Each disc's mean height over the median mean height of the patient's other discs."""
    means = {}
    for name, m in levels.items():
        hs = [m.value(f"disc_height_{k}_mm") for k in ("anterior", "middle", "posterior")]
        if all(h is not None for h in hs):
            means[name] = float(np.mean(hs))
    for name, h in means.items():
        others = [v for k, v in means.items() if k != name]
        if len(others) >= 2:
            ref = float(np.median(others))
            levels[name].add("disc_height_ratio", h / ref, "1", [])
