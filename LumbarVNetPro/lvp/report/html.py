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


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _grade_cell(grade: dict | None) -> str:
    """One grade: its name, the measurement behind it, the confidence and whether it is calibrated;
    a withheld grade shows why and the measurement still drawn; named label probabilities follow.
    """
    esc = html.escape
    if not grade:
        return '<td class="na">–</td>'
    name = grade.get("name") or _fmt(grade.get("grade"))
    withheld = grade.get("grade") is None
    parts = [f"<b>{esc(str(name))}</b>"]
    if withheld and grade.get("reason"):
        reason = str(grade["reason"]).removeprefix("not assessable: ").removeprefix("not found: ")
        parts.append(f'<span class="why">{esc(_short(reason))}</span>')
    if grade.get("measurement") and grade.get("value") is not None:
        shown = " (measured, not graded)" if withheld else ""
        parts.append(f'{esc(str(grade["measurement"]))} = {esc(_fmt(grade.get("value")))}{shown}')
    if grade.get("confidence") is not None:
        kind = grade.get("confidence_kind")
        tag = f' <span class="{esc(str(kind))}">{esc(str(kind))}</span>' if kind else ""
        parts.append(f"confidence {esc(_fmt(grade['confidence'], 2))}{tag}")
    if grade.get("source"):
        parts.append(f'<span class="src">from {esc(str(grade["source"]))}</span>')
    for q in grade.get("predicted") or []:
        parts.append(f'{esc(str(q.get("name")))} = {esc(_fmt(q.get("value"), 2))} '
                     f'<span class="{esc(str(q.get("kind")))}">{esc(str(q.get("kind")))}</span>')
    title = esc(str(grade.get("rule") or ""), quote=True)
    cls = ' class="withheld"' if withheld else ""
    return f'<td{cls} title="{title}">' + "<br>".join(parts) + "</td>"


def coverage_bar(level: dict, width: int = 120) -> str:
    """An SVG bar of the slab's left-right coverage at the disc (grey) and the dural sac in it (blue)."""
    item = next((e for e in level.get("evidence") or [] if e.get("kind") == "coverage"), None)
    if not item or len(item.get("points_lps") or []) < 2:
        return "–"
    a, b = (np.asarray(p, float) for p in item["points_lps"][:2])
    span = float(np.linalg.norm(b - a)) or 1.0
    axis = (b - a) / span
    bar = f'<rect x="0" y="4" width="{width}" height="8" fill="#ccc"/>'
    sac = item.get("sac_points_lps") or []
    if len(sac) >= 2:
        x0, x1 = sorted(float(np.dot(np.asarray(q, float) - a, axis)) for q in sac[:2])
        bar += (f'<rect x="{x0 / span * width:.1f}" y="2" width="{max(x1 - x0, 0.5) / span * width:.1f}" '
                'height="12" fill="#36c"/>')
    cov = (level.get("section") or {}).get("coverage_mm")
    text = f"slab {span:.0f} mm" + (f"; {cov[0]:.0f} / {cov[1]:.0f} mm beside the sac" if cov else "")
    return (f'<svg width="{width}" height="16" role="img" aria-label="{html.escape(text, quote=True)}">{bar}'
            f"<title>{html.escape(text)}</title></svg><br><small>{html.escape(text)}</small>")


def _level_status(lv: dict) -> str:
    notes = [str(n) for n in lv.get("notes") or []]
    status = str(lv.get("status") or "found")
    head = f"<b>{html.escape(status)}</b>" if status != "found" else ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<td class="notes">{head}' + (f"<ul>{items}</ul>" if items else "") + "</td>"


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
        cls = ' class="missing"' if lv.get("status") == "not found" else ""
        rows.append(f"<tr{cls}><th>{html.escape(str(lv.get('level')))}</th>"
                    f"<td>{html.escape(_fmt(lv.get('confidence'), 2))}</td>{cells}"
                    f"<td>{coverage_bar(lv)}</td>{_level_status(lv)}</tr>")
    return (f'<table class="grades"><tr><th>level</th><th>level confidence</th>{head}'
            "<th>slab coverage</th><th>status and measurement notes</th></tr>" + "".join(rows) + "</table>")


# Evidence colours on the figure (SVG strokes).
_EVIDENCE_COLOURS = {"caliper": "#ffeb3b", "vector": "#ff5252", "region": "#40c4ff", "coverage": "#ffffff"}


def evidence_overlay(volume: Volume, levels: list[dict], *, height_px: int = 360) -> list[dict]:
    """The report's evidence items projected onto the :func:`sagittal_figure_png` figure (pixels).

    Each item: ``{"level", "kind", "label", "measurement", "xy": [(x, y), ...], "slice_index"}``.
    Points are projected along left-right (an AP caliper read on another sagittal slice is drawn at
    its height and depth; its ``slice_index`` says where it was read). Coverage items (left-right
    only) are drawn as bars in the table instead.
    """
    width_px, height_px, mm_si, mm_ap = _figure_geometry(volume, height_px)
    s_si, s_ap = volume.spacing[1], volume.spacing[2]
    out = []
    for lv in levels:
        for e in lv.get("evidence") or []:
            if e.get("kind") == "coverage" or not e.get("points_lps"):
                continue
            idx = volume.lps_to_index(np.asarray(e["points_lps"], float))
            xy = [((i[2] + 0.5) * s_ap / mm_ap, (i[1] + 0.5) * s_si / mm_si) for i in np.atleast_2d(idx)]
            out.append({"level": lv.get("level"), "kind": e["kind"], "label": e.get("label") or "",
                        "measurement": e.get("measurement"), "xy": xy, "slice_index": e.get("slice_index")})
    return out


def _evidence_svg(marks: list[dict], width: int, height: int) -> str:
    shapes = []
    for mk in marks:
        colour = _EVIDENCE_COLOURS.get(mk["kind"], "#fff")
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in mk["xy"])
        tip = html.escape(f"{mk['level']}: {mk['label']}" + (f" (input slice {mk['slice_index']})"
                                                                if mk.get("slice_index") is not None else ""))
        if mk["kind"] == "region":
            shapes.append(f'<polygon points="{pts}" fill="none" stroke="{colour}" stroke-width="1">'
                          f"<title>{tip}</title></polygon>")
        else:
            end = ' marker-end="url(#arrow)"' if mk["kind"] == "vector" else ""
            shapes.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"{end}>'
                          f"<title>{tip}</title></polyline>")
    defs = ('<defs><marker id="arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="4" markerHeight="4" '
            'orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#ff5252"/></marker></defs>')
    return (f'<svg class="evidence" viewBox="0 0 {width} {height}" width="{width}" height="{height}">{defs}'
            + "".join(shapes) + "</svg>")


def _evidence_table(report: dict) -> str:
    """Every drawn measurement with the plane and input slice it was read on."""
    rows = []
    for lv in report.get("levels") or []:
        meas = lv.get("measurements") or {}
        for e in lv.get("evidence") or []:
            if e.get("kind") == "coverage":
                continue
            value = (meas.get(e.get("measurement")) or {}).get("value") if e.get("measurement") else None
            unit = (meas.get(e.get("measurement")) or {}).get("unit", "") if e.get("measurement") else ""
            rows.append(f"<tr><td>{html.escape(str(lv.get('level')))}</td><td>{html.escape(str(e.get('kind')))}</td>"
                        f"<td>{html.escape(str(e.get('label') or e.get('measurement') or ''))}</td>"
                        f"<td>{html.escape(_fmt(value, 2))} {html.escape(str(unit or ''))}</td>"
                        f"<td>{html.escape(str(e.get('plane') or ''))}</td>"
                        f"<td>{html.escape(_fmt(e.get('slice_index')))}</td></tr>")
    if not rows:
        return ""
    return ('<details><summary>Evidence: where each measurement was read</summary><table class="evidence-table">'
            "<tr><th>level</th><th>kind</th><th>what</th><th>value</th><th>plane</th><th>input slice</th></tr>"
            + "".join(rows) + "</table></details>")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.partial{background:#fdd;border:2px solid #c00;padding:.6em;font-weight:bold}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #bbb;padding:.25em .5em;
vertical-align:top;font-size:90%}.na{color:#999}.fig{float:left;margin-right:1.5em}
.meta td{border:none}.figwrap{position:relative;display:inline-block}
.names{position:absolute;left:0;top:0;pointer-events:none}
.evidence{position:absolute;left:0;top:0}.why{color:#a40}.withheld{background:#f6f6f6}
.calibrated{color:#070;font-size:85%}.heuristic{color:#a60;font-size:85%}.src{color:#555;font-size:85%}
.missing{background:#fee}.numbering.ok{color:#070}
.numbering.check{background:#fff3cd;border:1px solid #d9a400;padding:4px 8px}
.notes ul{margin:0;padding-left:1.1em;font-size:85%}
"""


def _numbering_banner(numbering: dict | None) -> str:
    """The level-numbering check above everything else: a wrong level moves every grade."""
    if not numbering:
        return ""
    if numbering.get("confident"):
        return '<p class="numbering ok">Level numbering: confident (anchored on the sacrum).</p>'
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in numbering.get("reasons") or [])
    return ('<div class="numbering check"><b>Level numbering NOT confident: check the levels before '
            f"reading the grades.</b><ul>{reasons}</ul></div>")


def render_html(report: dict, figure_png: bytes | None,
                figure_names: list[tuple[str, float, float]] | None = None,
                evidence: list[dict] | None = None) -> str:
    """The HTML report: status banner, figure (with ``figure_names`` and the ``evidence`` marks of
    :func:`evidence_overlay` over it), grade table with reasons and notes, evidence table, warnings.
    """
    esc = html.escape
    inp = report.get("input") or {}
    model = report.get("model") or {}
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>LVP report – {esc(str(inp.get('path', '')))}</title><style>{_STYLE}</style></head><body>",
             "<h1>LumbarVNetPro report</h1>"]
    if report.get("status") != "complete":
        parts.append(f'<p class="partial">PARTIAL RESULT: the stage "{esc(str(report.get("failed_stage")))}" '
                     f"failed ({esc(str(report.get('error')))}). Results below are incomplete.</p>")
    parts.append(_numbering_banner(report.get("numbering")))
    from lvp.report.study_header import study_rows  # patient/study header (DICOM input only)

    parts.append('<table class="meta">' + study_rows(report) +
                 f"<tr><td>Input</td><td>{esc(str(inp.get('path', '')))}</td></tr>"
                 f"<tr><td>Model</td><td>{esc(str(model.get('name', '')))} {esc(str(model.get('version', '')))}"
                 f" (sha256 {esc(str(model.get('sha256') or '')[:12])})</td></tr>"
                 f"<tr><td>Total time</td><td>{esc(_fmt((report.get('timings_s') or {}).get('total'), 2))} s"
                 "</td></tr></table>")
    if figure_png:
        b64 = base64.b64encode(figure_png).decode("ascii")
        width, height = struct.unpack(">II", figure_png[16:24])
        names = _label_svg(figure_names, width, height) if figure_names else ""
        names = (_evidence_svg(evidence, width, height) if evidence else "") + names
        parts.append(f'<div class="fig"><div class="figwrap"><img alt="mid-sagittal slice with segmentation '
                     f'overlay" width="{width}" height="{height}" src="data:image/png;base64,{b64}">{names}'
                     "</div></div>")
    parts.append("<h2>Grades</h2>")
    parts.append(_grade_table(report))
    parts.append("<p>Each grade shows the measurement behind it and its confidence, marked <i>calibrated</i> "
                 "(fitted on radiologists' grades, checked on untouched patients) or <i>heuristic</i> (a literature "
                 "rule with the measured measurement error); hover for the rule. A grade the images cannot support "
                 "is withheld with the reason. On the figure: yellow calipers (disc heights, dural sac AP diameter), "
                 "red displacement vectors, blue signal regions.</p>")
    parts.append(_evidence_table(report))
    warnings = report.get("warnings") or []
    if warnings:
        items = "".join(f"<li><b>{esc(str(w.get('code')))}</b>: {esc(str(w.get('message')))}</li>"
                        for w in warnings)
        parts.append(f"<h2>Warnings</h2><ul>{items}</ul>")
    parts.append('<p style="clear:both;color:#666;font-size:80%">For research use; every finding needs a '
                 "radiologist's confirmation.</p></body></html>")
    return "".join(parts)
