"""report.html in a real browser (headless Chromium): it renders, its figure shows, nothing overflows.

The page is the one ``lvp infer`` writes for the bundled sample (its reference mask standing in for
the network), opened at 1280 CSS pixels, a common reading-room laptop width.
"""

from __future__ import annotations

import numpy as np
import pytest
from chromium_helpers import chromium_or_skip, measure, print_pdf, screenshot

from lvp.pipeline import MaskSegmenter, run_inference

WIDTH = 1280


@pytest.fixture(scope="module")
def page(sample_case, tmp_path_factory):
    chromium_or_skip()
    out = tmp_path_factory.mktemp("report")
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, out, segmenter=MaskSegmenter(mask))
    assert report["status"] == "complete", report["error"]
    return out / "report.html"


@pytest.fixture(scope="module")
def facts(page):
    return measure(page, WIDTH)


def test_page_renders_with_its_text(facts):
    assert facts["viewport"] == WIDTH
    assert facts["body_text"] > 200


def test_figure_shows(facts):
    figures = [img for img in facts["images"] if img["natural"][0] > 0]
    assert figures, f"no image decoded: {facts['images']}"
    for img in figures:
        assert img["complete"]
        assert img["drawn"][0] >= 200 and img["drawn"][1] >= 200, img  # drawn at a readable size


# Was a real defect, measured: the grade table (10 columns with long unbreakable texts) was 1382 px
# wide at a 1280 px window; the fixed-layout, wrapping table of issue 14 fits.
def test_nothing_overflows_at_1280_px(facts):
    assert facts["scroll_width"] <= facts["viewport"], f"page wider than the window: {facts['wide'][:5]}"
    assert facts["wide"] == []


def test_overflow_probe_finds_a_too_wide_element(tmp_path):
    """The overflow check above can fail: a 2000 px wide box in a 1280 px window is found."""
    page = tmp_path / "wide.html"
    page.write_text("<!DOCTYPE html><html><body><p>text</p><div class='wide' style='width:2000px'>x</div>"
                    "</body></html>")
    chromium_or_skip()
    facts = measure(page, WIDTH)
    assert facts["scroll_width"] > WIDTH
    assert any(w["cls"] == "wide" for w in facts["wide"])


def test_screenshot_shows_the_page(page, tmp_path):
    from PIL import Image

    png = screenshot(page, tmp_path / "report.png", WIDTH, 1200)
    with Image.open(png) as img:
        assert img.size == (WIDTH, 1200)
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    # Not a blank page: text and the MR figure give a spread of grey levels and colour.
    assert pixels.std() > 20
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 40).mean() > 0.001  # the coloured label overlay


def test_report_prints_on_few_pages(page, tmp_path):
    """The print stylesheet (A4 landscape, compact table) keeps the sample's report to two pages;
    without it the same page prints on three or more."""
    pages = print_pdf(page, tmp_path / "report.pdf")
    assert 1 <= pages <= 2, pages
    bare = tmp_path / "bare.html"
    bare.write_text(page.read_text(encoding="utf-8").replace("@media print", "@media never"), encoding="utf-8")
    assert print_pdf(bare, tmp_path / "bare.pdf") > pages
