"""``report.html``: the mid-sagittal slice with the label overlay and level names, and the grades.

One self-contained file (the figure is an embedded base64 PNG): it opens from a mail attachment
or a PACS folder without its neighbours. Every text taken from the report is HTML-escaped.

The figure is composed in numpy (windowed grey slice resampled to display size, label colours
alpha-blended) and encoded with zlib: a few milliseconds, and no matplotlib import (which alone
costs a few tenths of a second of a one-case run). The level names are not burnt into the
pixels: :func:`figure_labels` gives their positions and :func:`render_html` draws them as SVG
text over the image, which stays sharp at any zoom.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from typing import Any

import numpy as np

from lvp.io.volume import Volume
from lvp.labels import CANAL_LABEL, STRUCTURES
from lvp.scales import PATHOLOGIES  # the columns of the grade table, in reading order

_OVERLAY_ALPHA = 0.45


def _lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.float32)
    for value, st in STRUCTURES.items():
        lut[value, :3] = st.color
        lut[value, 3] = _OVERLAY_ALPHA
    return lut


_LUT = _lut()


def mid_sagittal_index(labels: np.ndarray) -> int:
    """The sagittal slice (axis 0) through the spinal canal's centre, else the middle slice."""
    canal_per_slice = np.count_nonzero(labels == CANAL_LABEL, axis=(1, 2))
    if canal_per_slice.sum() == 0:
        fg = np.count_nonzero(labels, axis=(1, 2))
        if fg.sum() == 0:
            return labels.shape[0] // 2
        canal_per_slice = fg
    # Weighted centre rather than the fullest slice: stable when the canal is cut obliquely.
    return int(round(float(np.average(np.arange(labels.shape[0]), weights=canal_per_slice))))


def _window(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, (1.0, 99.5))
    return float(lo), float(max(hi, lo + 1e-6))


def _figure_geometry(volume: Volume, height_px: int) -> tuple[int, int, float, float]:
    """Figure size in pixels (width, height) and the mm per pixel along si and ap."""
    n_si, n_ap = volume.array.shape[1:]
    height_mm, width_mm = n_si * volume.spacing[1], n_ap * volume.spacing[2]
    width_px = max(1, int(round(height_px * width_mm / height_mm)))
    return width_px, height_px, height_mm / height_px, width_mm / width_px


def _png(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 image as PNG (filter 0, fast zlib level)."""
    h, w, _ = rgb.shape
    raw = np.zeros((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))
            + chunk(b"IEND", b""))


def sagittal_figure_png(volume: Volume, labels: np.ndarray, *, height_px: int = 360) -> bytes:
    """PNG of the mid-sagittal slice: grey image (bilinear) with the label colours blended in.

    The image keeps the field of view's aspect in mm (head up, anterior on the left). The level
    names are drawn by :func:`render_html` from :func:`figure_labels`.
    """
    from lvp.preprocess import _resize_matrix

    k = mid_sagittal_index(labels)
    n_si, n_ap = volume.array.shape[1:]
    width_px, height_px, _, _ = _figure_geometry(volume, height_px)
    m_si = _resize_matrix(n_si, height_px, height_px < n_si)
    m_ap = _resize_matrix(n_ap, width_px, width_px < n_ap)
    image = m_si @ volume.array[k].astype(np.float32) @ m_ap.T
    lo, hi = _window(image)
    grey = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    # Labels: the source voxel under each pixel centre.
    r = np.minimum(((np.arange(height_px) + 0.5) * n_si / height_px).astype(np.intp), n_si - 1)
    c = np.minimum(((np.arange(width_px) + 0.5) * n_ap / width_px).astype(np.intp), n_ap - 1)
    over = _LUT[np.asarray(labels[k])[np.ix_(r, c)].astype(np.intp)]
    alpha = over[..., 3:]
    rgb = grey[..., None] * (1.0 - alpha) + over[..., :3] * alpha
    return _png(np.round(rgb * 255.0).astype(np.uint8))


def figure_labels(volume: Volume, level_points: list[tuple[str, Any]], *,
                  height_px: int = 360) -> list[tuple[str, float, float]]:
    """``(name, x_px, y_px)`` of each name on the :func:`sagittal_figure_png` figure of that height.

    Names go 18 mm anterior of the structure's centre (right-aligned there) so they do not hide
    the canal.
    """
    width_px, height_px, mm_si, mm_ap = _figure_geometry(volume, height_px)
    s_si, s_ap = volume.spacing[1], volume.spacing[2]
    out = []
    for name, point in level_points:
        idx = volume.lps_to_index(np.asarray(point, dtype=float))
        y_mm, x_mm = (idx[1] + 0.5) * s_si, (idx[2] + 0.5) * s_ap
        out.append((str(name), max(x_mm - 18.0, 2.0) / mm_ap, y_mm / mm_si))
    return out


def _label_svg(labels: list[tuple[str, float, float]], width: int, height: int) -> str:
    texts = "".join(
        f'<text x="{x:.1f}" y="{y:.1f}">{html.escape(name)}</text>' for name, x, y in labels)
    return (f'<svg class="names" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            'font-size="11" font-family="sans-serif" fill="white" stroke="black" stroke-width="3" '
            f'paint-order="stroke" text-anchor="end" dominant-baseline="middle">{texts}</svg>')


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _grade_cell(grade: dict | None) -> str:
    if not grade:
        return '<td class="na">–</td>'
    name = grade.get("name") or _fmt(grade.get("grade"))
    parts = [f"<b>{html.escape(str(name))}</b>"]
    if grade.get("measurement"):
        parts.append(f'{html.escape(str(grade["measurement"]))} = {html.escape(_fmt(grade.get("value")))}')
    if grade.get("confidence") is not None:
        parts.append(f"confidence {html.escape(_fmt(grade['confidence'], 2))}")
    title = html.escape(str(grade.get("rule") or ""), quote=True)
    return f'<td title="{title}">' + "<br>".join(parts) + "</td>"


def _grade_table(report: dict) -> str:
    levels = report.get("levels") or []
    if not levels:
        return "<p>No disc levels were found.</p>"
    present = [p for p in PATHOLOGIES if any(p in (lv.get("grades") or {}) for lv in levels)]
    extra = sorted({p for lv in levels for p in (lv.get("grades") or {})} - set(PATHOLOGIES))
    cols = present + extra
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
    rows = []
    for lv in levels:
        grades = lv.get("grades") or {}
        cells = "".join(_grade_cell(grades.get(c)) for c in cols)
        rows.append(f"<tr><th>{html.escape(str(lv.get('level')))}</th>"
                    f"<td>{html.escape(_fmt(lv.get('confidence'), 2))}</td>{cells}</tr>")
    return (f'<table class="grades"><tr><th>level</th><th>level confidence</th>{head}</tr>'
            + "".join(rows) + "</table>")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.partial{background:#fdd;border:2px solid #c00;padding:.6em;font-weight:bold}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #bbb;padding:.25em .5em;
vertical-align:top;font-size:90%}.na{color:#999}.fig{float:left;margin-right:1.5em}
.meta td{border:none}.figwrap{position:relative;display:inline-block}
.names{position:absolute;left:0;top:0;pointer-events:none}
"""


def render_html(report: dict, figure_png: bytes | None,
                figure_names: list[tuple[str, float, float]] | None = None) -> str:
    """The HTML report: status banner, figure (with ``figure_names`` over it), grade table, warnings."""
    esc = html.escape
    inp = report.get("input") or {}
    model = report.get("model") or {}
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>LVP report – {esc(str(inp.get('path', '')))}</title><style>{_STYLE}</style></head><body>",
             "<h1>LumbarVNetPro report</h1>"]
    if report.get("status") != "complete":
        parts.append(f'<p class="partial">PARTIAL RESULT: the stage "{esc(str(report.get("failed_stage")))}" '
                     f"failed ({esc(str(report.get('error')))}). Results below are incomplete.</p>")
    parts.append('<table class="meta">'
                 f"<tr><td>Input</td><td>{esc(str(inp.get('path', '')))}</td></tr>"
                 f"<tr><td>Model</td><td>{esc(str(model.get('name', '')))} {esc(str(model.get('version', '')))}"
                 f" (sha256 {esc(str(model.get('sha256') or '')[:12])})</td></tr>"
                 f"<tr><td>Total time</td><td>{esc(_fmt((report.get('timings_s') or {}).get('total'), 2))} s"
                 "</td></tr></table>")
    if figure_png:
        b64 = base64.b64encode(figure_png).decode("ascii")
        width, height = struct.unpack(">II", figure_png[16:24])
        names = _label_svg(figure_names, width, height) if figure_names else ""
        parts.append(f'<div class="fig"><div class="figwrap"><img alt="mid-sagittal slice with segmentation '
                     f'overlay" width="{width}" height="{height}" src="data:image/png;base64,{b64}">{names}'
                     "</div></div>")
    parts.append("<h2>Grades</h2>")
    parts.append(_grade_table(report))
    parts.append("<p>Each grade shows the measurement behind it and its confidence; hover for the rule.</p>")
    warnings = report.get("warnings") or []
    if warnings:
        items = "".join(f"<li><b>{esc(str(w.get('code')))}</b>: {esc(str(w.get('message')))}</li>"
                        for w in warnings)
        parts.append(f"<h2>Warnings</h2><ul>{items}</ul>")
    parts.append('<p style="clear:both;color:#666;font-size:80%">For research use; every finding needs a '
                 "radiologist's confirmation.</p></body></html>")
    return "".join(parts)
