"""Headless Chromium for the report.html tests: layout measurements and screenshots of a real browser.

:func:`measure` loads a copy of the page with a small script appended that, once the page and its
images have loaded, records what the tests check (document and viewport widths, every element
that reaches past the viewport's right edge, each image's natural and drawn size) into an attribute
of ``<body>``; ``--dump-dom`` prints the DOM after loading, from which the attribute is read back.
:func:`screenshot` writes a PNG of the page at a given window size.

Chromium runs with a throwaway profile, no sandbox (CI runs as root), no GPU and no network
services. Tests skip when chromium is absent, except in CI, where .ci/run installs it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--virtual-time-budget=5000"]

_PROBE = """
<script>
window.addEventListener('load', function () {
  var view = document.documentElement.clientWidth;
  var wide = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > view + 0.5) {
      wide.push({tag: e.tagName.toLowerCase(), cls: String(e.className || ''), right: Math.round(r.right)});
    }
  });
  var images = Array.prototype.map.call(document.images, function (img) {
    var r = img.getBoundingClientRect();
    return {complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            drawn: [Math.round(r.width), Math.round(r.height)], alt: img.alt};
  });
  document.body.setAttribute('data-lvp-measure', JSON.stringify({
    viewport: view, scroll_width: document.documentElement.scrollWidth,
    body_text: document.body.innerText.length, wide: wide.slice(0, 20), images: images}));
});
</script>
"""


def chromium_or_skip() -> str:
    """The chromium binary; CI must have it, elsewhere the test skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
    pytest.skip("chromium is not installed")


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="lvp-chromium-") as profile:
        return subprocess.run([chromium_or_skip(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def measure(page: Path, width: int = 1280, height: int = 900) -> dict:
    """Layout facts of ``page`` rendered at ``width`` x ``height`` CSS pixels (see module docstring)."""
    with tempfile.TemporaryDirectory(prefix="lvp-page-") as tmp:
        probe = Path(tmp) / "page.html"
        text = page.read_text(encoding="utf-8")
        cut = text.rfind("</body>")
        probe.write_text((text[:cut] + _PROBE + text[cut:]) if cut >= 0 else text + _PROBE, encoding="utf-8")
        run = _run([f"--window-size={width},{height}", "--dump-dom", probe.as_uri()])
    found = re.search(r'data-lvp-measure="([^"]*)"', run.stdout)
    assert found, f"chromium did not render the page (exit {run.returncode}): {run.stderr[-500:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> Path:
    """A PNG screenshot of ``page`` at ``width`` x ``height``."""
    run = _run([f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()])
    assert png.is_file(), f"chromium wrote no screenshot (exit {run.returncode}): {run.stderr[-500:]}"
    return png


def print_pdf(page: Path, pdf: Path) -> int:
    """Print ``page`` to ``pdf`` as Chromium does (its print stylesheet applies); the page count."""
    run = _run(["--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()])
    assert pdf.is_file(), f"chromium wrote no PDF (exit {run.returncode}): {run.stderr[-500:]}"
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))
