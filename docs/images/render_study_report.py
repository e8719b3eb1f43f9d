"""Screenshots of a study report for docs/reading-study.md (headless Chromium).

    python docs/images/render_study_report.py REPORT.html [--out docs/images]

``REPORT.html`` is written by ``lvp study report`` (e.g. by ``benchmarks/bench_study.py --keep
DIR``). The page is cut at its headings into three parts (flow and one pathology's AUC and
sensitivity tables; one pathology's agreement and AI-alone tables; reading time), each rendered by
``chromium --headless --screenshot`` and trimmed of the blank margin.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _shot(html: str, png: Path, width: int = 1250, height: int = 4000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html, encoding="utf-8")
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise SystemExit("chromium not found (apt-get install -y chromium)")
        subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                        f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=120)
    im = Image.open(png).convert("RGB")
    bbox = ImageChops.difference(im, Image.new("RGB", im.size, "white")).getbbox()
    if bbox:
        im = im.crop((0, 0, width, min(bbox[3] + 16, im.height)))
    im.save(png, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--pathology", default="herniation", help="pathology of the agreement / AI part")
    args = ap.parse_args()
    page = args.report.read_text(encoding="utf-8")
    head, body = page.split("<body>", 1)
    body = body.replace("</body></html>", "")
    sections = re.split(r"(?=<h2>)", body)  # [title, flow, pathology..., reading time]

    def doc(parts: list[str]) -> str:
        return f"{head}<body>{''.join(parts)}</body></html>"

    chosen = next(s for s in sections if s.startswith(f"<h2>{args.pathology}</h2>"))
    top = chosen.split("<h3>Agreement with the reference standard</h3>")[0]
    _shot(doc([sections[0], sections[1], top]), args.out / "study_report_top.png")
    middle = chosen.split("<h3>Agreement between readers")[1].split("<h3>AUC per reader</h3>")[0]
    _shot(doc([f"<h2>{args.pathology}</h2><h3>Agreement between readers" + middle]),
          args.out / "study_report_agreement.png")
    _shot(doc([sections[-1]]), args.out / "study_report_time.png", height=1200)
    print(f"wrote study_report_top.png, study_report_agreement.png, study_report_time.png to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
