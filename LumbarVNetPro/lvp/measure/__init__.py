"""Measurements per disc level from a labelled segmentation and the image.

Everything is measured on reformats in each disc's own frame (from its fitted mid-plane:
``n`` inferior, ``u`` left, ``v`` posterior), sampled every 0.5 mm:

* mid-sagittal plane through the disc centre: disc heights (anterior, middle, posterior at 10 %,
  50 %, 90 % of the disc depth), disc height index (mean height / depth), disc/CSF signal ratio;
* axial plane through the disc centre: posterior displacement beyond the posterior margins of
  the adjacent bodies, its base width and circumferential span, canal AP diameter, dural sac area;
* axial planes 2.5 mm beyond each endplate: the bodies' posterior margins (reference line);
* axial plane 4 mm below the disc's lower surface (pedicle level of the vertebra below):
  lateral recess depth, left and right;
* after all levels: each disc's mean height relative to the median of the other discs.

All lengths are in mm, areas in mm², with the points (LPS mm) where they were read.
"""

from __future__ import annotations

import numpy as np

from lvp.io.volume import Volume
from lvp.labels import SACRUM_LABEL, VERTEBRA_LABELS
from lvp.measure.canal import canal_at_disc, lateral_recesses
from lvp.measure.disc import disc_geometry, displacement
from lvp.measure.reformat import axis_range, sample_plane
from lvp.measure.signal import signal_ratio
from lvp.measure.types import LevelMeasurements, Measurement

__all__ = ["LevelMeasurements", "Measurement", "measure_levels"]

BONE_LABELS = np.array(list(VERTEBRA_LABELS.values()) + [SACRUM_LABEL])
RECESS_PLANE_BELOW_MM = 4.0
BODY_PLANE_BEYOND_MM = 2.5


def measure_levels(volume: Volume, lab) -> dict[str, LevelMeasurements]:
    """Measure every labelled disc level (``lab``: :class:`lvp.labelling.Labelling`)."""
    image = np.asarray(volume.array, dtype=np.float32)
    labels = lab.labels
    out: dict[str, LevelMeasurements] = {}
    r_s = axis_range(-45.0, 45.0)
    r_l = axis_range(-35.0, 35.0)
    r_a = axis_range(-45.0, 55.0)
    for disc in lab.discs:
        p = disc.plane
        if p is None or disc.label == 0:
            continue
        m = LevelMeasurements(disc.name, disc.label, p.center_lps)
        c, n, u, v = p.center_lps, p.normal_lps, p.axis_u_lps, p.axis_v_lps
        sag = sample_plane(labels, volume, c, n, v, r_s, r_a)
        frame = disc_geometry(m, sag, disc.label, BONE_LABELS)
        h = frame.get("height", p.height_mm)
        mid = sample_plane(labels, volume, c, u, v, r_l, r_a)
        off = h / 2 + BODY_PLANE_BEYOND_MM
        upper = sample_plane(labels, volume, c - off * n, u, v, r_l, r_a)
        lower = sample_plane(labels, volume, c + off * n, u, v, r_l, r_a)
        displacement(m, mid, upper, lower, disc.label, BONE_LABELS)
        canal_at_disc(m, mid, upper, lower)
        h_post = m.value("disc_height_posterior_mm") or h
        recess = sample_plane(labels, volume, c + (h_post / 2 + RECESS_PLANE_BELOW_MM) * n, u, v, r_l, r_a)
        lateral_recesses(m, recess)
        sag_img = sample_plane(image, volume, c, n, v, r_s, r_a, order=1)
        signal_ratio(m, sag, sag_img, disc.label, frame)
        out[disc.name] = m
    _height_ratios(out)
    return out


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
