"""``report.html``: the mid-sagittal slice with the label overlay and level names, and the grades.

One self-contained file (the figure is an embedded base64 PNG): it opens from a mail attachment
or a PACS folder without its neighbours. The page is the Jinja2 template ``report_page.html``
(with ``report.css`` inlined) rendered with autoescape on: every text taken from the report is
HTML-escaped by Jinja2, not by hand. This module computes what the template shows (figure
geometry, evidence projected to pixels, formatted numbers).

The figure is composed in numpy (windowed grey slice resampled to display size, label colours
alpha-blended) and encoded with zlib: a few milliseconds, and no matplotlib import (which alone
costs a few tenths of a second of a one-case run). The level names are not burnt into the
pixels: :func:`figure_labels` gives their positions and :func:`render_html` draws them as SVG
text over the image, which stays sharp at any zoom.

Over 400 lines on purpose: the figure's pixel geometry (panels, level names, evidence marks,
scan planes) is shared by all its parts and computed here; the page's markup is the template.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from lvp.io.volume import Volume
from lvp.labels import CANAL_LABEL, STRUCTURES
from lvp.measure.reformat import EXACT_IN_FLOAT32, lps_to_index
from lvp.report.colours import EVIDENCE_COLOURS  # the evidence strokes, as the Slicer markups draw them
from lvp.scales import PATHOLOGIES, SCALES, measurement_words  # the columns of the grade table, in reading order

_OVERLAY_ALPHA = 0.45


def _lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.float32)
    for value, st in STRUCTURES.items():
        lut[value, :3] = st.color
        lut[value, 3] = _OVERLAY_ALPHA
    return lut


_LUT = _lut()
# The blend's two terms per label value, as the per-pixel formula computes them (float32):
# ``grey * (1 - alpha) + colour * alpha``.
_ONE_MINUS_ALPHA = 1.0 - _LUT[:, 3]
_COLOUR_ALPHA = _LUT[:, :3] * _LUT[:, 3:]


def mid_sagittal_index(labels: np.ndarray, box: tuple[slice, ...] | None = None) -> int:
    """The sagittal slice (axis 0) through the spinal canal's centre, else the middle slice.

    ``box`` (e.g. the labelling's ``crop``): a region holding every nonzero label; only it is read,
    a few slices at a time, so neither time nor memory grows with the input's voxel count.
    """
    canal_per_slice = _count_per_slice(labels, box, CANAL_LABEL)
    if canal_per_slice.sum() == 0:
        fg = _count_per_slice(labels, box, None)
        if fg.sum() == 0:
            return labels.shape[0] // 2
        canal_per_slice = fg
    # Weighted centre rather than the fullest slice: stable when the canal is cut obliquely.
    return int(round(float(np.average(np.arange(labels.shape[0]), weights=canal_per_slice))))


_COUNT_CHUNK_VOXELS = 1 << 22  # slices counted together: a bounded temporary (4 MB of booleans)


def _count_per_slice(labels: np.ndarray, box: tuple[slice, ...] | None, value: int | None) -> np.ndarray:
    """Voxels per slice (axis 0) equal to ``value`` (nonzero when None), read inside ``box`` only."""
    n = labels.shape[0]
    (k0, k1, _), ys, zs = (s.indices(m) for s, m in zip(box or (slice(None),) * 3, labels.shape))
    counts = np.zeros(n, np.intp)
    per_slice = max(len(range(*ys)) * len(range(*zs)), 1)
    step = max(_COUNT_CHUNK_VOXELS // per_slice, 1)
    for k in range(k0, k1, step):
        part = labels[k:min(k + step, k1), slice(*ys), slice(*zs)]
        if value is not None:
            part = part == value
        # Slice by slice: a whole-array count_nonzero is much faster than one along axes.
        counts[k:k + part.shape[0]] = [np.count_nonzero(p) for p in part]
    return counts


def _window(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, (1.0, 99.5))
    return float(lo), float(max(hi, lo + 1e-6))


def _figure_geometry(volume: Volume, height_px: int) -> tuple[int, int, float, float]:
    """One panel's size in pixels (width, height) and the mm per pixel along si and ap."""
    n_si, n_ap = volume.array.shape[1:]
    height_mm, width_mm = n_si * volume.spacing[1], n_ap * volume.spacing[2]
    width_px = max(1, int(round(height_px * width_mm / height_mm)))
    return width_px, height_px, height_mm / height_px, width_mm / width_px


def _png(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 image as PNG (filter 0, fast zlib level)."""
    h, w, _ = rgb.shape
    raw = np.zeros((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 1:] = rgb.reshape(h, 3 * w)
    return _png_scanlines(raw)


def _png_scanlines(raw: np.ndarray) -> bytes:
    """PNG of ``(H, 1 + 3 W)`` uint8 scanlines (a filter byte 0, then RGB triplets)."""
    h, n = raw.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", (n - 1) // 3, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.data, 1))
            + chunk(b"IEND", b""))


_PANEL_GAP_PX = 6
_SIDE_MM = 12.0  # paramedian panels: this far either side of the mid-sagittal slice, at most


def panel_offsets(volume: Volume) -> list[int]:
    """The figure's panels as slice offsets from the mid-sagittal slice, left to right on screen.

    Three panels (mid and +-N mm, N = 12 mm or 30 % of the left-right extent on a thin slab, so
    both stay inside the field of view), or the mid slice alone when the slab has no room. It
    depends on the volume only, so the figure, its names and its marks agree without the labels.
    """
    n_lr, s_lr = volume.array.shape[0], float(volume.spacing[0])
    step = int(round(min(_SIDE_MM, 0.3 * n_lr * s_lr) / s_lr))
    return [-step, 0, step] if step >= 1 and n_lr >= 3 else [0]


def _panel_x0(volume: Volume, width_px: int, offset: int = 0) -> float:
    """Left edge (pixels) of the panel of ``offset`` in the composed figure."""
    return panel_offsets(volume).index(offset) * (width_px + _PANEL_GAP_PX)


@cache
def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero band of :func:`lvp.preprocess.resize_matrix` ``(n_out, n_in)``: per output
    sample, the input indices ``(n_out, T)`` and their float32 weights (0 where a row has fewer).
    """
    from lvp.preprocess import resize_matrix

    m = resize_matrix(n_in, n_out, n_out < n_in)
    nz = m != 0
    has = nz.any(axis=1)
    lo = np.where(has, nz.argmax(axis=1), 0)
    hi = np.where(has, n_in - nz[:, ::-1].argmax(axis=1), 0)
    t = np.arange(max(int((hi - lo).max()), 1))
    idx = np.minimum(lo[:, None] + t, n_in - 1)
    w = np.where(t < (hi - lo)[:, None], m[np.arange(n_out)[:, None], idx], 0).astype(np.float32)
    idx.flags.writeable = w.flags.writeable = False
    return idx, w


def _resize_rows(a: np.ndarray, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``resize_matrix @ a`` (float32) as a fused multiply-add per tap, in tap order.

    Each step is ``acc = float32(w * x + acc)`` with the product and the sum in float64 (the
    product of two float32 numbers is exact there): the rounding of a float32 fused multiply-add,
    as optimised BLAS kernels accumulate a dense product. The result then differs from the dense
    BLAS product about as much as that product differs from itself under another thread count.
    """
    idx, w = taps
    w64 = w.astype(np.float64)
    # First tap: acc = float32(w * x), which float32's own (correctly rounded) product gives.
    acc = np.multiply(a[idx[:, 0]], w[:, 0, None], dtype=np.float32)
    tmp = np.empty(acc.shape, np.float64)
    for t in range(1, idx.shape[1]):
        np.multiply(a[idx[:, t]], w64[:, t, None], out=tmp)
        tmp += acc
        acc = tmp.astype(np.float32)
    return acc


def resize_slice(image: np.ndarray, height_px: int, width_px: int) -> np.ndarray:
    """A 2-D slice resized to ``(height_px, width_px)`` (float32) with the anti-aliased bilinear
    weights of :func:`lvp.preprocess.resize_matrix` (si first, then ap).

    The weights are banded (about four taps per pixel), so the product is summed tap by tap
    (:func:`_resize_rows`): a few multiply-adds per pixel instead of a dense product over every
    input row and column (0.1 s of a case on two busy cores). Each value equals the dense
    product's up to float32 rounding; the dense product's own rounding depends on the BLAS build
    and its thread count.
    """
    image = np.asarray(image)
    if image.dtype not in EXACT_IN_FLOAT32:  # 8/16-bit integers and float32 are used as they are
        image = image.astype(np.float32)
    a = _resize_rows(image, _taps(image.shape[0], height_px))
    return np.ascontiguousarray(_resize_rows(np.ascontiguousarray(a.T), _taps(image.shape[1], width_px)).T)



def _slice_pixels(volume: Volume, labels: np.ndarray, k: int, width_px: int, height_px: int) -> np.ndarray:
    """One panel as ``(height_px, width_px, 3)`` uint8: the windowed grey slice with the label
    colours alpha-blended (only labelled pixels are blended; elsewhere the grey value itself).
    """
    n_si, n_ap = volume.array.shape[1:]
    image = resize_slice(volume.array[k], height_px, width_px)
    lo, hi = _window(image)
    grey = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    out = np.repeat(np.round(grey * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    # Labels: the source voxel under each pixel centre.
    r = np.minimum(((np.arange(height_px) + 0.5) * n_si / height_px).astype(np.intp), n_si - 1)
    c = np.minimum(((np.arange(width_px) + 0.5) * n_ap / width_px).astype(np.intp), n_ap - 1)
    lab = np.asarray(labels[k])[r][:, c]
    at = np.flatnonzero(lab)
    if at.size:
        # Unlabelled pixels (alpha 0) would blend to the grey value itself: only the rest is blended.
        value = lab.reshape(-1).take(at).astype(np.intp)
        blend = grey.reshape(-1).take(at)[:, None] * _ONE_MINUS_ALPHA[value][:, None] + _COLOUR_ALPHA[value]
        out.reshape(-1, 3)[at] = np.round(blend * 255.0).astype(np.uint8)
    return out


def sagittal_figure_png(volume: Volume, labels: np.ndarray, *, height_px: int = 360,
                        box: tuple[slice, ...] | None = None) -> bytes:
    """PNG of the sagittal panels (:func:`panel_offsets`: the mid-sagittal slice between two
    paramedian ones), each a grey image (bilinear) with the label colours blended in.

    Each panel keeps the field of view's aspect in mm (head up, anterior on the left). The level
    names are drawn by :func:`render_html` from :func:`figure_labels`. ``box`` (the labelling's
    ``crop``: every nonzero label lies inside it) limits the search for the mid-sagittal slice;
    otherwise only the drawn slices are read.
    """
    k = mid_sagittal_index(labels, box)
    n_lr = volume.array.shape[0]
    width_px, height_px, _, _ = _figure_geometry(volume, height_px)
    offsets = panel_offsets(volume)
    # The PNG scanlines directly: a filter byte 0, then the panels' RGB with white gaps between.
    raw = np.full((height_px, 1 + 3 * (len(offsets) * (width_px + _PANEL_GAP_PX) - _PANEL_GAP_PX)), 255, np.uint8)
    raw[:, 0] = 0
    for i, d in enumerate(offsets):
        x0 = 1 + 3 * i * (width_px + _PANEL_GAP_PX)
        panel = _slice_pixels(volume, labels, int(np.clip(k + d, 0, n_lr - 1)), width_px, height_px)
        raw[:, x0:x0 + 3 * width_px] = panel.reshape(height_px, 3 * width_px)
    return _png_scanlines(raw)


def figure_labels(volume: Volume, level_points: list[tuple[str, Any]], *,
                  height_px: int = 360) -> list[tuple[str, float, float]]:
    """``(name, x_px, y_px)`` of each name on the :func:`sagittal_figure_png` figure of that height:
    the level names on every panel, and each panel's title (its side and distance from the mid
    slice) at its top right.

    Names go 18 mm anterior of the structure's centre (right-aligned there) so they do not hide
    the canal.
    """
    width_px, height_px, mm_si, mm_ap = _figure_geometry(volume, height_px)
    s_si, s_ap = volume.spacing[1], volume.spacing[2]
    offsets = panel_offsets(volume)
    # Which way increasing slice index goes: LPS x grows to the patient's left.
    towards_left = float(volume.index_to_lps(np.array([1.0, 0, 0]))[0] - volume.index_to_lps(np.zeros(3))[0]) > 0
    to_index = partial(lps_to_index, volume)  # (the affine inverted once per volume)
    out = []
    for d in offsets:
        x0 = _panel_x0(volume, width_px, d)
        if len(offsets) > 1:
            side = "left" if (d > 0) == towards_left else "right"
            title = "mid-sagittal" if d == 0 else f"{abs(d) * volume.spacing[0]:.0f} mm {side}"
            out.append((title, x0 + width_px - 4.0, 10.0))
        for name, point in level_points:
            idx = to_index(point)
            y_mm, x_mm = (idx[1] + 0.5) * s_si, (idx[2] + 0.5) * s_ap
            out.append((str(name), x0 + max(x_mm - 18.0, 2.0) / mm_ap, y_mm / mm_si))
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# Short column titles (the scale's full title goes in the header's tooltip): six grade columns
# must fit a 1280 px window beside the level and notes columns.
_SHORT_TITLES = {"herniation": "Herniation", "canal_stenosis": "Canal stenosis",
                 "lateral_recess_left": "Lat. recess L", "lateral_recess_right": "Lat. recess R",
                 "pfirrmann": "Pfirrmann", "narrowing": "Disc height"}

# Severity tier (CSS class) of each grade name: none / mild / moderate / severe. Pfirrmann I-II are
# normal discs, III-V increasingly degenerated; "narrowing" is the one positive grade of its scale.
_SEVERITY = {"none": "none", "no narrowing": "none", "I": "none", "II": "none",
             "mild": "mild", "bulge": "mild", "III": "mild",
             "moderate": "moderate", "protrusion": "moderate", "IV": "moderate", "narrowing": "moderate",
             "severe": "severe", "extrusion": "severe", "V": "severe"}

def _grade_view(grade: dict | None) -> dict | None:
    """One grade cell: the grade in words with its severity class, the measurement behind it, the
    confidence and whether it is calibrated, and the rule; a withheld grade shows why (short; in
    full in the tooltip) and the measurement still drawn; named label probabilities follow.
    None: no grade (a dash).
    """
    if not grade:
        return None
    withheld = grade.get("grade") is None
    status = str(grade.get("status") or "")
    name = str(grade.get("name") or _fmt(grade.get("grade")))
    if withheld:
        severity = "notfound" if "not found" in (status, name) else "na"
    else:
        severity = _SEVERITY.get(name, "graded")
    reason = full_reason = None
    if withheld and grade.get("reason"):
        full_reason = str(grade["reason"]).removeprefix("not assessable: ").removeprefix("not found: ")
        reason = _short(full_reason, 70)
    measured = bool(grade.get("measurement") and grade.get("value") is not None)
    rule = str(grade.get("rule") or "")
    return {
        "name": name,
        "severity": severity,
        "withheld": withheld,
        "reason": reason,
        "measurement": measurement_words(str(grade["measurement"]), grade.get("value")) if measured else None,
        "value": _fmt(grade.get("value")),
        "confidence": _fmt(grade["confidence"], 2) if grade.get("confidence") is not None else None,
        "kind": str(grade.get("confidence_kind") or ""),
        "source": str(grade.get("source") or ""),
        "predicted": [{"name": str(q.get("name")), "value": _fmt(q.get("value"), 2), "kind": str(q.get("kind"))}
                      for q in grade.get("predicted") or []],
        "rule": rule,
        "rule_short": "" if withheld else _short(rule, 60),
        "tip": full_reason or rule,
    }


def coverage_bar(level: dict, width: int = 90) -> dict | None:
    """The slab's left-right coverage at the disc (grey bar) and the dural sac in it (blue), for
    the template: ``{"width", "sac": (x, w) or None, "text"}``, or None without coverage evidence.
    """
    item = next((e for e in level.get("evidence") or [] if e.get("kind") == "coverage"), None)
    if not item or len(item.get("points_lps") or []) < 2:
        return None
    a, b = (np.asarray(p, float) for p in item["points_lps"][:2])
    span = float(np.linalg.norm(b - a)) or 1.0
    axis = (b - a) / span
    sac = None
    sac_points = item.get("sac_points_lps") or []
    if len(sac_points) >= 2:
        x0, x1 = sorted(float(np.dot(np.asarray(q, float) - a, axis)) for q in sac_points[:2])
        sac = (f"{x0 / span * width:.1f}", f"{max(x1 - x0, 0.5) / span * width:.1f}")
    cov = (level.get("section") or {}).get("coverage_mm")
    text = f"slab {span:.0f} mm" + (f"; {cov[0]:.0f} / {cov[1]:.0f} mm beside the sac" if cov else "")
    return {"width": width, "sac": sac, "text": text}


def _level_warnings(report: dict) -> tuple[dict[str, list[dict]], list[dict]]:
    """The report's warnings split into those naming a level (by its name in the message, e.g.
    "L4-L5") and the general rest.
    """
    names = [str(lv.get("level")) for lv in report.get("levels") or [] if lv.get("level")]
    by_level: dict[str, list[dict]] = {}
    general = []
    for w in report.get("warnings") or []:
        item = {"code": str(w.get("code")), "message": str(w.get("message"))}
        hits = [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", item["message"])]
        for n in hits:
            by_level.setdefault(n, []).append(item)
        if not hits:
            general.append(item)
    return by_level, general


def _grade_rows(report: dict, by_level: dict[str, list[dict]]) -> tuple[list[dict], list[dict]]:
    """The grade table's columns (``{"title", "full"}``) and one row per level (cells in column order);
    ``by_level``: the warnings naming each level (:func:`_level_warnings`).
    """
    levels = report.get("levels") or []
    present = [p for p in PATHOLOGIES if any(p in (lv.get("grades") or {}) for lv in levels)]
    extra = sorted({p for lv in levels for p in (lv.get("grades") or {})} - set(PATHOLOGIES))
    cols = present + extra
    rows = []
    for lv in levels:
        grades = lv.get("grades") or {}
        status = str(lv.get("status") or "found")
        rows.append({"level": str(lv.get("level")), "confidence": _fmt(lv.get("confidence"), 2),
                     "missing": status == "not found", "cells": [_grade_view(grades.get(c)) for c in cols],
                     "coverage": coverage_bar(lv), "status": status if status != "found" else "",
                     "notes": [str(n) for n in lv.get("notes") or []],
                     "warnings": by_level.get(str(lv.get("level")), [])})
    columns = [{"title": _SHORT_TITLES.get(c, c.replace("_", " ")),
                "full": SCALES[c].title if c in SCALES else c.replace("_", " ")} for c in cols]
    return columns, rows


def evidence_overlay(volume: Volume, levels: list[dict], *, height_px: int = 360) -> list[dict]:
    """The report's evidence items projected onto the mid panel of :func:`sagittal_figure_png`
    (pixels), and each level's proposed axial scan plane as a line across every panel.

    Each item: ``{"level", "kind", "label", "measurement", "xy": [(x, y), ...], "slice_index"}``.
    Points are projected along left-right (an AP caliper read on another sagittal slice is drawn at
    its height and depth; its ``slice_index`` says where it was read). Coverage items (left-right
    only) are drawn as bars in the table instead. A scan plane (kind ``"plane"``) is its trace on
    the sagittal slices: the centre +- half its in-plane extent along its antero-posterior axis.
    """
    width_px, height_px, mm_si, mm_ap = _figure_geometry(volume, height_px)
    s_si, s_ap = volume.spacing[1], volume.spacing[2]
    mid_x0 = _panel_x0(volume, width_px)
    to_index = partial(lps_to_index, volume)  # (the affine inverted once per volume)

    def to_px(points: Any, x0: float) -> list[tuple[float, float]]:
        idx = to_index(points)
        return [(x0 + (i[2] + 0.5) * s_ap / mm_ap, (i[1] + 0.5) * s_si / mm_si) for i in np.atleast_2d(idx)]

    out = []
    for lv in levels:
        for e in lv.get("evidence") or []:
            if e.get("kind") == "coverage" or not e.get("points_lps"):
                continue
            out.append({"level": lv.get("level"), "kind": e["kind"], "label": e.get("label") or "",
                        "measurement": e.get("measurement"), "xy": to_px(e["points_lps"], mid_x0),
                        "slice_index": e.get("slice_index")})
        plane = lv.get("scan_plane") or {}
        if plane.get("center_lps") and plane.get("axis_v_lps") and plane.get("extent_mm"):
            centre, v = np.asarray(plane["center_lps"], float), np.asarray(plane["axis_v_lps"], float)
            half = float(plane["extent_mm"][-1]) / 2.0
            ends = [centre - half * v, centre + half * v]
            for d in panel_offsets(volume):
                out.append({"level": lv.get("level"), "kind": "plane", "label": "proposed axial scan plane",
                            "measurement": None, "xy": to_px(ends, _panel_x0(volume, width_px, d)),
                            "slice_index": None})
    return out


def _marks_view(marks: list[dict]) -> list[dict]:
    """The evidence marks as the template draws them (SVG points, colour, tooltip)."""
    out = []
    for mk in marks:
        where = f" (input slice {mk['slice_index']})" if mk.get("slice_index") is not None else ""
        out.append({"kind": mk["kind"], "colour": EVIDENCE_COLOURS.get(mk["kind"], "#fff"),
                    "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in mk["xy"]),
                    "tip": f"{mk['level']}: {mk['label']}{where}"})
    return out


def _evidence_rows(report: dict) -> list[dict]:
    """Every drawn measurement with the plane and input slice it was read on."""
    rows = []
    for lv in report.get("levels") or []:
        meas = lv.get("measurements") or {}
        for e in lv.get("evidence") or []:
            if e.get("kind") == "coverage":
                continue
            m = (meas.get(e.get("measurement")) or {}) if e.get("measurement") else {}
            rows.append({"level": str(lv.get("level")), "kind": str(e.get("kind")),
                         "what": str(e.get("label") or e.get("measurement") or ""), "value": _fmt(m.get("value"), 2),
                         "unit": str(m.get("unit", "") or ""), "plane": str(e.get("plane") or ""),
                         "slice": _fmt(e.get("slice_index"))})
    return rows


_HERE = Path(__file__).resolve().parent


@cache
def _environment():  # a jinja2.Environment (imported here: only report writing needs it)
    """The Jinja2 environment: templates beside this module, autoescape on, undefined names an error."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


@cache
def _style() -> str:
    """``report.css``, read once per process (it ships with the package)."""
    return (_HERE / "report.css").read_text()


def render_html(report: dict, figure_png: bytes | None,
                figure_names: list[tuple[str, float, float]] | None = None,
                evidence: list[dict] | None = None) -> str:
    """The HTML report: status banner, figure (with ``figure_names`` and the ``evidence`` marks of
    :func:`evidence_overlay` over it), grade table with reasons and notes, evidence table, warnings.
    """
    from lvp.report.study_header import study_items  # patient/study header (DICOM input only)

    inp = report.get("input") or {}
    model = report.get("model") or {}
    figure = None
    if figure_png:
        width, height = struct.unpack(">II", figure_png[16:24])
        figure = {"width": width, "height": height, "b64": base64.b64encode(figure_png).decode("ascii"),
                  "names": [(name, f"{x:.1f}", f"{y:.1f}") for name, x, y in figure_names or []],
                  "marks": _marks_view(evidence or [])}
    by_level, general_warnings = _level_warnings(report)
    columns, levels = _grade_rows(report, by_level)
    numbering = report.get("numbering") or None
    return _environment().get_template("report_page.html").render(
        style="\n" + _style(),
        input_path=str(inp.get("path", "")),
        partial=report.get("status") != "complete",
        failed_stage=str(report.get("failed_stage")),
        error=str(report.get("error")),
        numbering=numbering and {"confident": bool(numbering.get("confident")),
                                 "reasons": [str(r) for r in numbering.get("reasons") or []]},
        study=study_items(report),
        model_name=str(model.get("name", "")),
        model_version=str(model.get("version", "")),
        model_sha=str(model.get("sha256") or "")[:12],
        total_time=_fmt((report.get("timings_s") or {}).get("total"), 2),
        figure=figure,
        columns=columns,
        levels=levels,
        evidence_rows=_evidence_rows(report),
        warnings=general_warnings,
    )
