"""``lvp demo [-o OUTDIR]``: run ``lvp infer`` on the bundled SPIDER sample and summarise it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lvp.errors import InputError
from lvp.scales import SCALES


def sample_path() -> Path:
    """The bundled sample image (``LVP_SAMPLE`` overrides; the Slicer extension ships it in Resources)."""
    env = os.environ.get("LVP_SAMPLE")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for root in here.parents:
        candidate = root / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
        if candidate.is_file():
            return candidate
    raise InputError("the bundled sample (Resources/Sample/spider_sample_t2.nii.gz) was not found; "
                     "set LVP_SAMPLE to its path")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser("demo", help="run inference on the bundled sample case and summarise it")
    p.add_argument("-o", "--output", default="lvp-demo", metavar="OUTDIR", help="output folder (default lvp-demo)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the bundled model)")
    p.set_defaults(func=run)


def _level_line(level: dict) -> str:
    """One level in words: graded findings with confidence, then what could not be assessed."""
    if level.get("status") not in (None, "found"):
        return f"{level.get('status')}: {level.get('reason') or ''}".rstrip(": ")
    graded, withheld = [], []
    for key, g in (level.get("grades") or {}).items():
        title = SCALES[key].title if key in SCALES else key
        if g.get("grade") is None:
            withheld.append(title)
            continue
        conf, kind = g.get("confidence"), g.get("confidence_kind")
        detail = ", ".join(x for x in (f"{conf:.2f}" if isinstance(conf, (int, float)) else "", kind or "") if x)
        graded.append(f"{title}: {g.get('name') or g.get('grade')}" + (f" ({detail})" if detail else ""))
    parts = graded + ([f"not assessable: {', '.join(withheld)}"] if withheld else [])
    return "; ".join(parts) or "no grades"


def summary_lines(report: dict, out_dir: Path) -> list[str]:
    """The demo's printout: levels, grades with their confidence, timings, where the files are."""
    lines = [f"LumbarVNetPro demo on {report['input']['path']}",
             f"model {report['model'].get('name')} {report['model'].get('version')} "
             f"on {report['model'].get('device', '?')}; status: {report['status'].upper()}"]
    if report["status"] != "complete":
        lines.append(f"  stage {report['failed_stage']} failed: {report['error']}")
    vertebrae = [s["name"] for s in report["structures"] if s["kind"] == "vertebra"]
    lines.append(f"vertebrae: {' '.join(vertebrae) or '-'}")
    for lv in report["levels"]:
        lines.append(f"  {lv['level']:<7} " + _level_line(lv))
    t = report["timings_s"]
    stages = ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "total")
    lines.append(f"time {t['total']:.2f} s ({stages})")
    from lvp.commands.infer import report_notes

    lines += report_notes(report.get("numbering"), report["warnings"])
    lines.append(f"report: {out_dir / 'report.html'} (and report.json, segmentation.nii.gz, "
                 "segmentation.seg.nrrd)")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit non-zero when the result is partial."""
    from lvp.commands.infer import EXIT_PARTIAL, sigterm_raises
    from lvp.pipeline import run_inference

    out = Path(args.output)
    with sigterm_raises():
        report = run_inference(sample_path(), out, device=args.device, model_dir=args.model)
    print("\n".join(summary_lines(report, out)))
    return 0 if report["status"] == "complete" else EXIT_PARTIAL
