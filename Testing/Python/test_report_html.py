"""report.html renders: figure, grade table with measurement and confidence, escaping, partial banner."""

from __future__ import annotations

import base64
import html
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from lvp.io.read import read_volume
from lvp.report.html import mid_sagittal_index, render_html, sagittal_figure_png


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _report(status: str = "complete") -> dict:
    return {
        "status": status, "failed_stage": None if status == "complete" else "measure",
        "error": None if status == "complete" else "ValueError: <broken>",
        "input": {"path": "<script>alert(1)</script>.nii.gz"}, "model": {"name": "lvp-vnet", "version": "1"},
        "timings_s": {"total": 0.4},
        "levels": [{"level": "L4-L5", "confidence": 0.91, "grades": {
            "herniation": {"grade": 2, "name": "protrusion", "confidence": 0.63,
                           "measurement": "posterior_displacement_mm", "value": 4.12, "rule": "d > 3 mm & <b>"},
            "canal_stenosis": {"grade": 0, "name": "none", "confidence": 0.8, "measurement": "dural_sac_area_mm2",
                               "value": 140.0}}}],
        "warnings": [{"code": "transitional_anatomy", "message": "L6 <present>"}],
    }


@pytest.fixture(scope="module")
def sample(sample_case):
    vol = read_volume(sample_case)
    ref = read_volume(str(sample_case).replace("_t2.nii.gz", "_labels.nii.gz"), validate=False).array
    labels = np.zeros(ref.shape, np.uint8)
    labels[ref == 1], labels[ref == 2], labels[ref == 3] = 43, 94, 2
    return vol, labels


def test_html_escapes_text_and_shows_grade_measurement_and_confidence():
    page = render_html(_report(), None)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;present&gt;" in page and "<present>" not in page
    parser = _Collect()
    parser.feed(page)
    text = " ".join(parser.text)
    assert "protrusion" in text and "posterior displacement 4.1 mm" in text and "confidence 0.63" in text
    assert "PARTIAL" not in text
    grade_table = page.split('class="grades"', 1)[1].split("</table>", 1)[0]
    assert grade_table.count("<tr") == 2  # header + one level


def test_partial_report_is_flagged():
    page = render_html(_report("partial"), None)
    assert 'class="partial"' in page and "measure" in page and "&lt;broken&gt;" in page


def test_figure_is_a_png_of_the_slice_with_overlay(sample):
    vol, labels = sample
    png = sagittal_figure_png(vol, labels, height_px=300)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(io.BytesIO(png))
    assert img.shape[0] == 300
    # Aspect follows the field of view in mm (SI x AP), not the voxel counts.
    from lvp.report.html import panel_offsets

    panel_w = 300 * (vol.shape[2] * vol.spacing[2]) / (vol.shape[1] * vol.spacing[1])
    n = len(panel_offsets(vol))
    assert n == 3  # the sample's 15 mm slab has room for two paramedian panels
    assert abs(img.shape[1] - (n * panel_w + (n - 1) * 6)) <= 2 * n
    # The overlay colours pixels: some are clearly not grey.
    rgb = img[..., :3]
    assert np.mean(np.ptp(rgb, axis=-1) > 0.15) > 0.02
    page = render_html(_report(), png)
    parser = _Collect()
    parser.feed(page)
    src = parser.imgs[0]
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == png


def test_mid_sagittal_index_follows_the_canal():
    labels = np.zeros((20, 10, 10), np.uint8)
    labels[13:16, 2:8, 5] = 2
    labels[2:5, 2:8, 2] = 43  # vertebra elsewhere does not move the slice
    assert mid_sagittal_index(labels) == 14
    assert mid_sagittal_index(np.zeros((9, 4, 4), np.uint8)) == 4


def test_no_levels_message():
    report = _report()
    report["levels"] = []
    assert re.search("No disc levels", render_html(report, None))


def _withheld_report() -> dict:
    report = _report()
    report["levels"] = [
        {"level": "L4-L5", "confidence": 0.9, "status": "found",
         "notes": ["dural sac cut by the field of view (left-right): area not measured"],
         "section": {"coverage_mm": [6.0, 8.0]},
         "measurements": {"canal_ap_diameter_mm": {"value": 11.5, "unit": "mm",
                                                   "points_lps": [[0, 0, 0], [0, 11.5, 0]]}},
         "evidence": [{"kind": "caliper", "measurement": "canal_ap_diameter_mm", "plane": "axial (disc mid-plane)",
                       "label": "dural sac AP diameter", "points_lps": [[0, 0, 0], [0, 11.5, 0]], "slice_index": 7},
                      {"kind": "coverage", "measurement": None, "plane": "axial", "label": "slab",
                       "points_lps": [[-7, 0, 0], [7, 0, 0]], "sac_points_lps": [[-5, 0, 0], [9, 0, 0]]}],
         "grades": {
             "canal_stenosis": {"grade": None, "name": "not assessable", "confidence": None,
                                "status": "not assessable", "measurement": "canal_ap_diameter_mm", "value": 11.5,
                                "reason": "not assessable: needs an axial series (here the slab cuts the sac)"},
             "herniation": {"grade": None, "name": "not assessable", "confidence": None, "status": "not assessable",
                            "reason": "not assessable: needs an axial series",
                            "measurement": "posterior_displacement_mm",
                            "value": 1.5, "confidence_kind": "calibrated",
                            "predicted": [{"name": "P(SPIDER 'Disc herniation' label)", "value": 0.07,
                                           "kind": "calibrated"}]},
             "pfirrmann": {"grade": 3, "name": "III", "confidence": 0.55, "confidence_kind": "calibrated",
                           "status": "graded", "measurement": "disc_signal_ratio", "value": 0.12}}},
        {"level": "L5-S", "confidence": None, "status": "not found",
         "notes": ["not found: no disc was segmented between L5 and the sacrum"],
         "grades": {"pfirrmann": {"grade": None, "name": "not found", "status": "not found",
                                  "reason": "not found: no disc was segmented between L5 and the sacrum"}}},
    ]
    return report


def test_withheld_grades_show_reason_measurement_kind_and_named_probability():
    page = render_html(_withheld_report(), None)
    parser = _Collect()
    parser.feed(page)
    text = " ".join(parser.text)
    assert "needs an axial series (here the slab cuts the sac)" in text
    assert "canal AP diameter 11.5 mm (measured, not graded)" in text
    assert "P(SPIDER 'Disc herniation' label) = 0.07" in html.unescape(page)
    assert "calibrated" in text and "confidence 0.55" in text
    # Notes and the missing level are rows of the table, not dropped.
    assert "dural sac cut by the field of view" in text
    assert "no disc was segmented between L5 and the sacrum" in text and 'class="missing"' in page
    # The evidence table gives the plane and the input slice of the caliper.
    evidence = page.split('class="evidence-table"', 1)[1].split("</table>", 1)[0]
    assert "dural sac AP diameter" in evidence and "<td>7</td>" in evidence
    # Coverage bar: the sac (blue) drawn beside the slab (grey), scaled to the slab's 14 mm.
    assert 'fill="#36c"' in page and "slab 14 mm" in text


def test_evidence_is_drawn_on_the_figure_at_its_points(sample):
    from lvp.report.html import evidence_overlay

    vol, labels = sample
    centre = vol.index_to_lps(np.array(vol.shape) / 2.0)
    top = vol.index_to_lps(np.array(vol.shape) / 2.0 + [0, 20, 0])
    report = _withheld_report()
    report["levels"][0]["evidence"][0]["points_lps"] = [list(centre), list(top)]
    marks = evidence_overlay(vol, report["levels"], height_px=300)
    assert [m["kind"] for m in marks] == ["caliper"]  # coverage goes to the table, not the figure
    (x0, y0), (x1, y1) = marks[0]["xy"]
    w = round(300 * (vol.shape[2] * vol.spacing[2]) / (vol.shape[1] * vol.spacing[1]))
    assert w + 6 <= x0 <= 2 * w + 6 and 0 <= y0 <= 300 and x1 == pytest.approx(x0, abs=1e-6)  # mid panel
    assert y1 - y0 == pytest.approx(20 * vol.spacing[1] * 300 / (vol.shape[1] * vol.spacing[1]), rel=1e-3)
    png = sagittal_figure_png(vol, labels, height_px=300)
    page = render_html(report, png, None, marks)
    assert '<svg class="evidence"' in page and "<polyline" in page and "input slice 7" in page


def test_pipeline_report_draws_every_evidence_item_and_keeps_the_notes(sample_case, tmp_path):
    """report.html of a real run draws each non-coverage evidence item of report.json and lists the notes."""
    import json

    from lvp.pipeline import MaskSegmenter, run_inference

    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, tmp_path, segmenter=MaskSegmenter(mask))
    page = (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["levels"] == report["levels"]
    items = [e for lv in report["levels"] for e in lv["evidence"] if e["kind"] != "coverage"]
    assert items
    svg = page.split('<svg class="evidence"', 1)[1].split("</svg>", 1)[0]
    planes = svg.count('<polyline class="plane"')
    assert svg.count("<polyline") - planes + svg.count("<polygon") == len(items)
    # Each level's proposed axial plane crosses every panel.
    from lvp.report.html import panel_offsets

    with_plane = [lv for lv in report["levels"] if lv.get("scan_plane")]
    assert with_plane and planes == len(with_plane) * len(panel_offsets(read_volume(sample_case)))
    notes = [n for lv in report["levels"] for n in lv["notes"]]
    assert notes and all(n in html.unescape(page) for n in notes)


def test_numbering_status_and_reasons_are_shown_first():
    from lvp.report.html import render_html

    base = {"status": "complete", "input": {"path": "x"}, "levels": [], "warnings": []}
    flagged = render_html({**base, "numbering": {"confident": False, "reasons": ["sacrum <not> in view"]}}, None)
    assert "Level numbering NOT confident" in flagged
    assert "sacrum &lt;not&gt; in view" in flagged  # escaped
    assert flagged.index("Level numbering") < flagged.index("<h2>Grades</h2>")
    confident = render_html({**base, "numbering": {"confident": True, "reasons": []}}, None)
    assert "Level numbering: confident" in confident and "NOT confident" not in confident


def test_every_report_text_is_escaped_by_the_template():
    """Autoescape (issue 12 item 6): markup in any report text reaches the page as text, never as tags."""
    evil = "<img src=x onerror=alert(1)>"
    report = {"status": "partial", "failed_stage": evil, "error": evil, "input": {"path": evil},
              "model": {"name": evil, "version": evil, "sha256": evil}, "numbering": {"confident": False,
              "reasons": [evil]}, "study": {"PatientName": evil, "StudyInstanceUID": evil},
              "levels": [{"level": evil, "status": evil, "notes": [evil], "confidence": 0.5,
                          "grades": {evil: {"name": evil, "grade": None, "reason": evil, "rule": evil,
                                            "measurement": evil, "value": 1.0, "confidence": 0.5,
                                            "confidence_kind": evil, "source": evil,
                                            "predicted": [{"name": evil, "value": 0.1, "kind": evil}]}},
                          "evidence": [{"kind": "caliper", "label": evil, "measurement": evil, "plane": evil}]}],
              "warnings": [{"code": evil, "message": evil}]}
    page = render_html(report, None)
    assert "<img" not in page and "onerror=alert(1)&gt;" in page
    assert html.unescape(page).count(evil) >= 20  # every text is there, as text


def test_grades_are_words_with_severity_colour_and_missing_levels_are_rows():
    """Each grade cell carries its severity class (words, not numbers); withheld is grey, not found red."""
    page = render_html(_withheld_report(), None)
    cells = re.findall(r'<td class="g sev-(\w+)"[^>]*><b class="word">([^<]*)</b>', page)
    by_name = {name: sev for sev, name in cells}
    assert by_name["III"] == "mild"  # Pfirrmann III: a degenerated disc, mildest tier
    assert by_name["not assessable"] == "na" and by_name["not found"] == "notfound"
    graded = render_html(_report(), None)
    sev = dict((n, s) for s, n in re.findall(r'<td class="g sev-(\w+)"[^>]*><b class="word">([^<]*)</b>', graded))
    assert sev == {"protrusion": "moderate", "none": "none"}
    # The full reason is in the tooltip even where the visible line is shortened.
    assert 'title="needs an axial series (here the slab cuts the sac)"' in page
    # Every level is a row, the missing one marked.
    rows = re.findall(r'<tr class="(level|missing)"><th class="lv">([^<]*)<', page)
    assert rows == [("level", "L4-L5"), ("missing", "L5-S")]


def test_a_warning_naming_a_level_is_shown_in_its_row():
    report = _withheld_report()
    report["warnings"] = [{"code": "fov_cut", "message": "L5-S is at the edge of the field of view"},
                          {"code": "general", "message": "something about the whole series"}]
    page = render_html(report, None)
    missing_row = page.split('<tr class="missing">', 1)[1].split("</tr>", 1)[0]
    assert "fov_cut" in missing_row and 'class="warn"' in missing_row
    general = page.split('class="warnings"', 1)[1]
    assert "something about the whole series" in general and "fov_cut" not in general
    # "L5-S" must not be matched inside a longer name such as "L5-S1".
    report["warnings"] = [{"code": "other", "message": "L5-S1 transitional"}]
    page = render_html(report, None)
    assert "other" not in page.split('<tr class="missing">', 1)[1].split("</tr>", 1)[0]


def test_scan_plane_is_drawn_along_its_trace_on_every_panel(sample):
    """A plane tilted in the sagittal plane is drawn as a line of that tilt, the same on each panel."""
    from lvp.report.html import evidence_overlay, panel_offsets

    vol, _ = sample
    centre = vol.index_to_lps(np.array(vol.shape) / 2.0)
    a, b = vol.index_to_lps(np.zeros(3)), vol.index_to_lps(np.array([0.0, 1.0, 1.0]))
    v = (b - a) / np.linalg.norm(b - a)  # 45 degrees between si and ap in mm on this grid's pixel axes
    levels = [{"level": "L4-L5", "evidence": [], "scan_plane": {"center_lps": list(centre), "axis_v_lps": list(v),
                                                                "extent_mm": [60.0, 40.0]}}]
    marks = evidence_overlay(vol, levels, height_px=300)
    assert [m["kind"] for m in marks] == ["plane"] * len(panel_offsets(vol))
    (x0, y0), (x1, y1) = marks[0]["xy"]
    mm_per_px = vol.shape[1] * vol.spacing[1] / 300
    assert np.hypot(x1 - x0, y1 - y0) * mm_per_px == pytest.approx(40.0, rel=0.02)
    assert abs(x1 - x0) == pytest.approx(abs(y1 - y0), rel=0.02)
    shifts = {round(m["xy"][0][0] - x0, 3) for m in marks}
    assert len(shifts) == len(marks) and all(m["xy"][0][1] == y0 for m in marks)
