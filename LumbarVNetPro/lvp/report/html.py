"""``report.html``: the mid-sagittal slice with the label overlay and level names, and the grades.

One self-contained file (the figure is an embedded base64 PNG): it opens from a mail attachment
or a PACS folder without its neighbours. Every text taken from the report is HTML-escaped.
The figure is small and drawn with matplotlib's Agg canvas directly (no pyplot state), which
keeps it to a few tens of milliseconds per case.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from lvp.io.volume import Volume
from lvp.labels import STRUCTURES

# The columns of the grade table, in reading order.
PATHOLOGIES = ("herniation", "canal_stenosis", "lateral_recess_left", "lateral_recess_right", "pfirrmann",
               "narrowing")
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
    canal_per_slice = np.count_nonzero(labels == 2, axis=(1, 2))
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


def sagittal_figure_png(volume: Volume, labels: np.ndarray, level_points: list[tuple[str, np.ndarray]],
                        *, height_px: int = 360) -> bytes:
    """PNG of the mid-sagittal slice: grey image, coloured labels, level names at their centres.

    ``level_points`` pairs a name with an LPS point; each is drawn at its (si, ap) position.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = mid_sagittal_index(labels)
    n_si, n_ap = volume.array.shape[1:]
    # Draw at about display resolution: striding the slice first makes resampling, compositing
    # and PNG encoding several times cheaper, and nothing finer than a display pixel is lost.
    step = max(1, round(n_si / height_px))
    image = volume.array[k, ::step, ::step].astype(np.float32)
    overlay = _LUT[labels[k, ::step, ::step].astype(np.intp)]
    s_si, s_ap = volume.spacing[1], volume.spacing[2]
    height_mm, width_mm = n_si * s_si, n_ap * s_ap
    dpi = 100
    fig_h = height_px / dpi
    fig = Figure(figsize=(fig_h * width_mm / height_mm, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    lo, hi = _window(image)
    extent = (0.0, width_mm, height_mm, 0.0)  # mm, head up, anterior on the left
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="bilinear")
    ax.imshow(overlay, extent=extent, interpolation="nearest")
    for name, point in level_points:
        idx = volume.lps_to_index(np.asarray(point, dtype=float))
        y, x = idx[1] * s_si, idx[2] * s_ap
        # Names go on the anterior side of the structure so they do not hide the canal.
        ax.text(max(x - 18.0, 2.0), y, name, color="white", fontsize=8, va="center", ha="right",
                bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.0, "linewidth": 0})
    ax.set_axis_off()
    ax.set_xlim(0, width_mm)
    ax.set_ylim(height_mm, 0)
    buf = io.BytesIO()
    # Fast zlib level: the PNG is a little larger, encoding several times faster.
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


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
.meta td{border:none}
"""


def render_html(report: dict, figure_png: bytes | None) -> str:
    """The HTML report: status banner, figure, grade table, warnings and timings."""
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
        parts.append(f'<div class="fig"><img alt="mid-sagittal slice with segmentation overlay" '
                     f'src="data:image/png;base64,{b64}"></div>')
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
