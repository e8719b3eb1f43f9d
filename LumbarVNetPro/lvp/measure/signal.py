"""Disc signal relative to CSF on the mid-sagittal reformat (T2: bright nucleus, bright CSF)."""

from __future__ import annotations

import numpy as np

from lvp.labels import CANAL_LABEL
from lvp.measure.reformat import Reformat, interpolate_at
from lvp.measure.types import LevelMeasurements

CSF_PERCENTILE = 75  # the dural sac also holds roots: its bright part is CSF


def signal_ratio(m: LevelMeasurements, sag_labels: Reformat, image: np.ndarray | Reformat, disc_label: int,
                 frame: dict) -> None:
    """Mean signal of the central disc (middle 40 % of its depth, middle half of its height)
    divided by the CSF signal (75th percentile of the dural sac within 30 mm of the disc).

    ``image``: the volume's image array (canonical grid), read by trilinear interpolation at the
    reformat's sample points inside the two regions only (:func:`lvp.measure.reformat.interpolate_at`,
    the values a whole interpolated plane would hold there); or the image already sampled on the
    reformat's grid (a :class:`Reformat`).
    """
    if not frame:
        return
    disc = sag_labels.values == disc_label
    front, back, h = frame["front"], frame["back"], frame["height"]
    a0, a1 = front + 0.3 * (back - front), front + 0.7 * (back - front)
    core = disc & (sag_labels.r2[None, :] >= a0) & (sag_labels.r2[None, :] <= a1)
    core &= (np.abs(sag_labels.r1) <= h / 4)[:, None]
    csf = (sag_labels.values == CANAL_LABEL) & (np.abs(sag_labels.r1) <= 30)[:, None]
    if core.sum() < 4 or csf.sum() < 4:
        m.notes.append("disc or CSF signal not measurable")
        return
    disc_signal = float(_image_at(image, sag_labels, core).mean())
    csf_signal = float(np.percentile(_image_at(image, sag_labels, csf), CSF_PERCENTILE))
    if csf_signal <= 0:
        return
    ci, cj = np.nonzero(csf)
    k = len(ci) // 2
    m.add(
        "disc_signal_ratio",
        disc_signal / csf_signal,
        "1",
        [sag_labels.lps(0.0, (a0 + a1) / 2), sag_labels.lps(sag_labels.r1[ci[k]], sag_labels.r2[cj[k]])],
    )
    # The two regions read, as polygons on the disc's mid-sagittal plane (report evidence).
    core_poly = [sag_labels.lps(x, y) for x, y in ((-h / 4, a0), (-h / 4, a1), (h / 4, a1), (h / 4, a0))]
    m.evidence.append({"kind": "region", "measurement": "disc_signal_ratio", "plane": "sagittal (disc mid-plane)",
                       "label": "disc signal (central 40 % of depth, middle half of height)",
                       "points_lps": core_poly})
    m.evidence.append({"kind": "region", "measurement": "disc_signal_ratio", "plane": "sagittal (disc mid-plane)",
                       "label": f"CSF signal ({CSF_PERCENTILE}th percentile of the sac within 30 mm)",
                       "points_lps": _band(sag_labels, csf)})


def _image_at(image: np.ndarray | Reformat, plane: Reformat, mask: np.ndarray) -> np.ndarray:
    """float32 image values at the plane's samples under ``mask`` (row-major order)."""
    if isinstance(image, Reformat):
        return image.values[mask]
    if plane.index is None:
        raise ValueError("the label reformat has no sample positions (made without sample_plane)")
    return interpolate_at(image, plane.index[:, mask], order=1)


def _band(ax: Reformat, mask: np.ndarray, n: int = 12) -> list[list[float]]:
    """A polygon around a vertical band mask: its anterior edge down, its posterior edge up."""
    rows = np.flatnonzero(mask.any(axis=1))
    rows = rows[:: max(len(rows) // n, 1)]
    front = [ax.lps(ax.r1[r], ax.r2[np.flatnonzero(mask[r])[0]]) for r in rows]
    back = [ax.lps(ax.r1[r], ax.r2[np.flatnonzero(mask[r])[-1]]) for r in rows[::-1]]
    return front + back
