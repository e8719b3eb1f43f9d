"""``lvp infer INPUT... -o OUTDIR``: segment, label, measure and grade one or more series.

Exit codes: 0 every case complete; 2 a case failed (unreadable input, not a spine, model error);
3 no case failed but at least one is partial; 143 stopped by SIGTERM; 130 by Ctrl-C.
With ``--progress-json`` one JSON object per line goes to stdout (format in docs/report-schema.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lvp.errors import LVPError

# Files that sit beside images in a folder but are not inputs (reference masks, our own outputs).
_NOT_INPUT_MARKERS = ("_labels.", "_label.", "_seg.", ".seg.", "segmentation.", "semantic.")

EXIT_FAILED = 2
EXIT_PARTIAL = 3
EXIT_SIGTERM = 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM so every ``finally`` (temporary files) runs."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``infer`` sub-command."""
    p = subparsers.add_parser("infer", help="segment, label levels, measure and grade lumbar spine MRI",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a sagittal series: DICOM folder, NIfTI, NRRD or MHA; several, or a folder of them")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (one sub-folder per case when there are several)")
    p.add_argument("--axial", metavar="SERIES", help="an axial series of the same study (single input only)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the bundled model)")
    p.add_argument("--semantic", metavar="MASK",
                   help="use this semantic mask (1 vertebra, 2 disc, 3 canal) instead of the network, e.g. a "
                        "corrected segmentation (single input only)")
    p.add_argument("--labels", metavar="LABELMAP",
                   help="use this TotalSpineSeg label map (e.g. a reader-corrected segmentation) as it is: no "
                        "network and no level labelling, the level names are kept; re-measures, re-grades and "
                        "re-plans (single input only)")
    p.add_argument("--previous", metavar="DIR",
                   help="with --labels: an earlier lvp infer output folder of the same image; levels whose "
                        "voxels are unchanged keep its confidence, edited ones get 1.0")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.add_argument("--progress-json", action="store_true",
                   help="print machine-readable progress lines (JSON) to stdout")
    p.set_defaults(func=run)


def _is_image_file(path: Path) -> bool:
    from lvp.io.read import IMAGE_SUFFIXES

    name = path.name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not any(m in name for m in _NOT_INPUT_MARKERS)


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Turn the command line's inputs into cases.

    A file is one case. A folder holding image files (not masks) gives one case per file; a folder
    whose sub-folders are the cases (DICOM studies) gives one per sub-folder; any other folder is
    read as one DICOM series.
    """
    cases: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and _is_image_file(p))
            subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            if files:
                cases.extend(files)
            elif subdirs and not any(p.is_file() and not p.name.startswith(".") for p in path.iterdir()):
                cases.extend(subdirs)
            else:
                cases.append(path)
        else:
            cases.append(path)
    return cases


def case_name(path: Path) -> str:
    """An output folder name for a case: the file name without its image suffixes."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "case"
    return name or "case"


def output_dirs(cases: list[Path], out: Path) -> list[Path]:
    """One output folder per case: ``out`` itself for a single case, else unique sub-folders."""
    if len(cases) == 1:
        return [out]
    seen: dict[str, int] = {}
    dirs = []
    for case in cases:
        name = case_name(case)
        seen[name] = seen.get(name, 0) + 1
        dirs.append(out / (name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return dirs


class Progress:
    """Progress output: JSON lines on stdout, or a tqdm bar on stderr for several cases."""

    def __init__(self, n_cases: int, json_lines: bool):
        self.n = n_cases
        self.json_lines = json_lines
        self.case = 0
        self.bar = None
        if not json_lines and n_cases > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=n_cases, unit="case", file=sys.stderr, dynamic_ncols=True)

    def emit(self, **fields: Any) -> None:
        """Print one progress object (JSON mode only)."""
        if self.json_lines:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()

    def stage(self, stage: str, fraction: float) -> None:
        """A stage of the current case started."""
        overall = (self.case + fraction) / max(self.n, 1)
        self.emit(event="stage", stage=stage, progress=round(fraction, 3), overall=round(overall, 3),
                  case=self.case + 1, cases=self.n)
        if self.bar is not None:
            self.bar.set_postfix_str(stage, refresh=True)

    def case_done(self, result: dict) -> None:
        """A case finished (whatever its status)."""
        self.emit(event="case", case=self.case + 1, cases=self.n, **result)
        self.case += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` (clean exit instead of sudden death)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def infer_cases(cases: list[Path], dirs: list[Path], *, segmenter: Any, progress: Progress,
                axial: str | None = None, html: bool = True) -> list[dict]:
    """Run every case; a failure in one is recorded and the others go on."""
    from lvp.pipeline import run_inference

    results = []
    for case, out in zip(cases, dirs):
        t0 = time.perf_counter()
        result: dict[str, Any] = {"input": str(case), "output": str(out)}
        try:
            report = run_inference(case, out, axial=axial, segmenter=segmenter, progress=progress.stage,
                                   html=html)
            result.update(status=report["status"], failed_stage=report["failed_stage"], error=report["error"],
                          levels=[lv["level"] for lv in report["levels"]])
        except LVPError as err:
            result.update(status="failed", error=str(err))
        except Exception as err:  # noqa: BLE001 - one broken case must not stop the batch
            result.update(status="failed", error=f"{type(err).__name__}: {err}")
        result["seconds"] = round(time.perf_counter() - t0, 3)
        progress.case_done(result)
        results.append(result)
    return results


def run(args: argparse.Namespace, segmenter: Any = None) -> int:
    """Run ``lvp infer`` (``segmenter``: an already loaded one, else made from the options)."""
    cases = expand_inputs(args.inputs)
    if not cases:
        from lvp.errors import InputError

        raise InputError("no input series found")
    labels = getattr(args, "labels", None)
    previous = getattr(args, "previous", None)
    if (args.axial or args.semantic or labels) and len(cases) > 1:
        from lvp.errors import ConfigError

        raise ConfigError("--axial, --semantic and --labels take a single input series")
    if labels and args.semantic:
        from lvp.errors import ConfigError

        raise ConfigError("use either --semantic (levels are labelled again) or --labels (levels kept), not both")
    if previous and not labels:
        from lvp.errors import ConfigError

        raise ConfigError("--previous goes with --labels")
    dirs = output_dirs(cases, Path(args.output))
    progress = Progress(len(cases), args.progress_json)
    try:
        with sigterm_raises():
            progress.emit(event="start", cases=len(cases))
            progress.stage("load_model", 0.0)
            if segmenter is None and labels:
                from lvp.pipeline import LabelMapSegmenter

                segmenter = LabelMapSegmenter(labels, previous)
            elif segmenter is None and args.semantic:
                from lvp.pipeline import MaskSegmenter

                segmenter = MaskSegmenter(args.semantic)
            elif segmenter is None:
                from lvp.pipeline import make_segmenter

                segmenter = make_segmenter(args.model, args.device)
            results = infer_cases(cases, dirs, segmenter=segmenter, progress=progress, axial=args.axial,
                                  html=not args.no_html)
    except Terminated:
        progress.close()
        progress.emit(event="cancelled")
        print("lvp infer: stopped (SIGTERM)", file=sys.stderr)
        return EXIT_SIGTERM
    finally:
        progress.close()
    return summarise(results, progress)


def summarise(results: list[dict], progress: Progress) -> int:
    """Print the outcome of every case and return the exit code."""
    failed = [r for r in results if r["status"] == "failed"]
    partial = [r for r in results if r["status"] == "partial"]
    code = EXIT_FAILED if failed else EXIT_PARTIAL if partial else 0
    progress.emit(event="done", complete=len(results) - len(failed) - len(partial), partial=len(partial),
                  failed=len(failed), exit_code=code)
    out = sys.stderr if progress.json_lines else sys.stdout
    for r in results:
        if r["status"] == "complete":
            print(f"{r['input']}: complete ({', '.join(r['levels'])}) -> {r['output']}", file=out)
        elif r["status"] == "partial":
            print(f"{r['input']}: PARTIAL, stage {r['failed_stage']} failed: {r['error']} -> {r['output']}",
                  file=out)
    for r in failed:
        print(f"lvp infer: error: {r['input']}: {r['error']}", file=sys.stderr)
    if len(results) > 1 and (failed or partial):
        print(f"lvp infer: {len(failed)} of {len(results)} cases failed, {len(partial)} partial", file=sys.stderr)
    return code
