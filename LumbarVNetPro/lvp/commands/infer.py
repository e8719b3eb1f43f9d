"""``lvp infer INPUT... -o OUTDIR``: segment, label, measure and grade one or more series.

Inputs: image files, DICOM folders, or a folder of them (one case per image file, or one per
sub-folder when it holds only sub-folders). A folder holding both image files and DICOM
sub-folders is refused, naming both: list the inputs you mean explicitly.

Output: OUTDIR is the result folder of a single case, or holds one sub-folder per case and a
summary.csv (one row per level) for several. Each result folder always holds one run's result,
whole: it is written beside the folder and swapped in when complete, so files of an earlier run
(e.g. report.html after --no-html) never remain next to new ones. A result folder in use by
another lvp run is refused (no waiting), as are an output path that is a file, cannot be
written, or is a folder holding other files; these are checked before any work starts.

Exit codes:
  0    every case complete
  2    a case failed: input refused or unreadable, not a lumbar spine, output folder unusable,
       model error (also: invalid options)
  3    no case failed but at least one is partial (a stage after the network failed)
  130  stopped by Ctrl-C
  143  stopped by SIGTERM (finished cases stay complete; the running one leaves no trace)
With --progress-json one JSON object per line goes to stdout (format in docs/report-schema.md)
and the human-readable lines go to stderr; --quiet prints errors only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lvp.errors import InputError, LVPError, OutputError
from lvp.io.case_inputs import SUMMARY_CSV, case_name, expand_inputs, output_dirs  # noqa: F401 - part of this command's API

EXIT_COMPLETE = 0
EXIT_FAILED = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
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
    p.add_argument("--no-dicom", action="store_true",
                   help="from a DICOM input, write no DICOM SEG and SR (the other outputs as usual)")
    p.add_argument("--progress-json", action="store_true",
                   help="print machine-readable progress lines (JSON) to stdout")
    p.add_argument("--memory-limit", type=int, metavar="MIB",
                   help="memory one case may use (default 1024 MiB, or $LVP_MEMORY_LIMIT_MIB); a larger input "
                        "is refused before the work, saying so")
    # DICOMweb input (lvp.dicomweb_infer): INPUT is dicomweb+http(s)://host/dicom-web.
    p.add_argument("--study", metavar="UID", help="with a dicomweb+http(s):// input: the StudyInstanceUID to read")
    p.add_argument("--series", metavar="UID",
                   help="with a DICOMweb input: the series to read (default: the study's sagittal T2 series)")
    p.add_argument("--store", action="store_true",
                   help="with a DICOMweb input: store the DICOM SEG and SR back in the study (STOW-RS)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors (no per-case lines, warnings or progress bar)")
    p.set_defaults(func=run)


# Result fields kept for the printout and summary.csv, not sent in the JSON "case" line.
_NOT_EMITTED = ("report", "warnings", "numbering", "missing_levels")


class Progress:
    """Progress output: JSON lines on stdout, or a tqdm bar on stderr for several cases."""

    def __init__(self, n_cases: int, json_lines: bool, quiet: bool = False):
        self.n = n_cases
        self.json_lines = json_lines
        self.quiet = quiet
        self.case = 0
        self.bar = None
        if not json_lines and not quiet and n_cases > 1:
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
        self.emit(event="case", case=self.case + 1, cases=self.n,
                  **{k: v for k, v in result.items() if k not in _NOT_EMITTED})
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


# What a case imports after the network, in the order its stages need them (scipy.sparse: the
# resampling before the network). A fresh process imports them in a thread (start_preload) while
# the main thread loads the model, reads the series and runs the network: ONNX Runtime's session
# set-up and run and the gzip decoding of the input release the GIL, so on two cores part of the
# ≈ 0.2 s these imports take is hidden behind that work (one-case process on the bundled sample:
# median 0.916 -> 0.857 s, 12 interleaved runs; the first case of a batch likewise).
#
# Two threads importing at once can deadlock only where their import chains cross in opposite
# orders (a package whose __init__ imports a sub-module another thread imports directly). The
# main thread therefore imports lvp.pipeline whole before the thread starts, and waits for the
# thread to finish before the first stage after the network: in between it imports only ONNX
# Runtime, and scipy.sparse from the top (``from scipy import sparse``).
CASE_MODULES = ("scipy.sparse", "scipy.ndimage", "lvp.labelling", "lvp.labelling.numbering", "lvp.measure",
                "lvp.grading", "lvp.planes", "lvp.io.seg_nrrd", "lvp.report.html")


# Stages of a case that run before the preload thread must be done (lvp.pipeline's stage names).
_UP_TO_NETWORK = frozenset({"load_model", "read", "network"})


def _import_quietly(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            __import__(name)  # as an import statement does (and audits): the module is not needed here
        except Exception:  # the stage that needs the module imports it again and reports the error
            pass


def start_preload(names: tuple[str, ...] = CASE_MODULES) -> threading.Thread | None:
    """Import ``names`` in a background thread; None when they are all imported already (a warm process).

    The thread is not a daemon (interpreter shutdown never interrupts an import half-way) and the
    caller joins it (see CASE_MODULES for when).
    """
    missing = tuple(n for n in names if n not in sys.modules)
    if not missing:
        return None
    thread = threading.Thread(target=_import_quietly, args=(missing,), name="lvp-preload")
    thread.start()
    return thread


def infer_cases(cases: list[Path], dirs: list[Path], *, segmenter: Any, progress: Progress,
                axial: str | None = None, html: bool = True, preload: threading.Thread | None = None,
                dicom_out: bool = True) -> list[dict]:
    """Run every case; a failure in one is recorded and the others go on.

    ``preload``: the thread of :func:`start_preload`, joined when the first case's stages after the
    network begin. ``dicom_out``: a DICOM input also gets its DICOM SEG and SR (not with --no-dicom).
    """
    from lvp.pipeline import run_inference

    def stage(name: str, fraction: float) -> None:
        if name not in _UP_TO_NETWORK:
            join_preload()
        progress.stage(name, fraction)

    def join_preload() -> None:
        nonlocal preload
        if preload is not None:
            preload.join()
            preload = None

    results = []
    for case, out in zip(cases, dirs):
        t0 = time.perf_counter()
        result: dict[str, Any] = {"input": str(case), "output": str(out)}
        try:
            report = run_inference(case, out, axial=axial, segmenter=segmenter, progress=stage, html=html,
                                   dicom_out=dicom_out)
            result.update(status=report["status"], failed_stage=report["failed_stage"], error=report["error"],
                          levels=[lv["level"] for lv in report["levels"] if lv.get("status") != "not found"],
                          missing_levels=[lv["level"] for lv in report["levels"] if lv.get("status") == "not found"],
                          report=report,
                          warnings=list(report.get("warnings") or []), numbering=report.get("numbering"))
        except LVPError as err:
            result.update(status="failed", error=str(err))
        except Exception as err:  # one broken case must not stop the batch
            result.update(status="failed", error=f"{type(err).__name__}: {err}")
        result["seconds"] = round(time.perf_counter() - t0, 3)
        progress.case_done(result)
        results.append(result)
    return results


def check_outputs(dirs: list[Path], out: Path, inputs: list[Any]) -> None:
    """Refuse unusable output folders before any work (a file, not writable, not an LVP result,
    holding an input: a result replaces its folder as a whole).
    """
    from lvp.io.result_folder import check_output_dir

    if len(dirs) > 1:
        batch = Path(out)
        if batch.exists() and not batch.is_dir():
            raise OutputError(f"the output path {batch} is a file, not a folder; choose a folder name")
        if (batch / "report.json").is_file():
            raise OutputError(f"the output folder {batch} holds a single case's result (report.json); give a batch "
                              "its own folder")
    for d in dirs:
        check_output_dir(d, inputs)


@contextmanager
def memory_limit(mib: int | None) -> Iterator[None]:
    """``--memory-limit``: the budget of :func:`lvp.io.validate.memory_budget_bytes` for this run only.

    Set in the environment and restored after, so a warm worker's next job has its own.
    """
    if mib is None:
        yield
        return
    from lvp.errors import ConfigError
    from lvp.io.validate import MEMORY_LIMIT_ENV, MIN_MEMORY_LIMIT_MIB

    if mib < MIN_MEMORY_LIMIT_MIB:
        raise ConfigError(f"--memory-limit {mib}: a case needs at least {MIN_MEMORY_LIMIT_MIB} MiB")
    before = os.environ.get(MEMORY_LIMIT_ENV)
    os.environ[MEMORY_LIMIT_ENV] = str(mib)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MEMORY_LIMIT_ENV, None)
        else:
            os.environ[MEMORY_LIMIT_ENV] = before


def run(args: argparse.Namespace, segmenter: Any = None) -> int:
    """Run ``lvp infer`` (``segmenter``: an already loaded one, else made from the options)."""
    with memory_limit(getattr(args, "memory_limit", None)):
        return _run(args, segmenter)


def _run(args: argparse.Namespace, segmenter: Any = None) -> int:
    from lvp.errors import ConfigError

    if getattr(args, "no_dicom", False) and getattr(args, "store", False):
        raise ConfigError("--store sends the DICOM SEG and SR, which --no-dicom leaves out: use one of them")
    # lvp.io.dicomweb (urllib, hashlib) only for inputs that may be DICOMweb addresses.
    if any(str(i).startswith("dicomweb") for i in args.inputs):
        from lvp.io.dicomweb import is_dicomweb

        if any(is_dicomweb(i) for i in args.inputs):
            from lvp.dicomweb_infer import run_dicomweb

            return run_dicomweb(args, segmenter)
    if getattr(args, "study", None) or getattr(args, "store", False) or getattr(args, "series", None):
        raise ConfigError("--study, --series and --store go with a dicomweb+http(s):// input")
    cases = expand_inputs(args.inputs, exclude=Path(args.output))
    if not cases:
        raise InputError("no input series found")
    labels = getattr(args, "labels", None)
    previous = getattr(args, "previous", None)
    quiet = bool(getattr(args, "quiet", False))
    if (args.axial or args.semantic or labels) and len(cases) > 1:
        raise ConfigError("--axial, --semantic and --labels take a single input series")
    if labels and args.semantic:
        raise ConfigError("use either --semantic (levels are labelled again) or --labels (levels kept), not both")
    if previous and not labels:
        raise ConfigError("--previous goes with --labels")
    dirs = output_dirs(cases, Path(args.output))
    check_outputs(dirs, Path(args.output), [*cases, args.axial, args.semantic, labels])
    progress = Progress(len(cases), args.progress_json, quiet)
    preload = None
    try:
        with sigterm_raises():
            progress.emit(event="start", cases=len(cases))
            progress.stage("load_model", 0.0)
            import lvp.pipeline  # noqa: F401 - imported whole before the preload thread starts (see CASE_MODULES)

            preload = start_preload()
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
                                  html=not args.no_html, preload=preload,
                                  dicom_out=not getattr(args, "no_dicom", False))
            if len(cases) > 1:
                from lvp.report.summary_csv import write_summary_csv

                write_summary_csv(results, Path(args.output) / SUMMARY_CSV)
    except Terminated:
        progress.close()
        progress.emit(event="cancelled")
        print("lvp infer: stopped (SIGTERM)", file=sys.stderr)
        return EXIT_SIGTERM
    finally:
        progress.close()
        if preload is not None:
            preload.join()
    return summarise(results, progress)


def report_notes(numbering: dict | None, warnings: list[dict]) -> list[str]:
    """The lines a reader must see about a case: numbering status and warnings."""
    lines = []
    if numbering:
        reasons = [f"  - {r}" for r in numbering.get("reasons") or []]
        if numbering.get("confident"):
            lines.append("numbering: confident")
        else:
            lines.append("numbering: NOT CONFIDENT, check the level names" + (":" if reasons else ""))
        lines += reasons
    for w in warnings:
        lines.append(f"warning: {w.get('code', '?')}: {w.get('message', '')}")
    return lines


def summarise(results: list[dict], progress: Progress) -> int:
    """Print the outcome of every case (numbering, warnings) and return the exit code."""
    failed = [r for r in results if r["status"] == "failed"]
    partial = [r for r in results if r["status"] == "partial"]
    code = EXIT_FAILED if failed else EXIT_PARTIAL if partial else EXIT_COMPLETE
    progress.emit(event="done", complete=len(results) - len(failed) - len(partial), partial=len(partial),
                  failed=len(failed), exit_code=code)
    out = sys.stderr if progress.json_lines else sys.stdout
    for r in results if not progress.quiet else []:
        if r["status"] == "complete":
            missing = f"; not found: {', '.join(r['missing_levels'])}" if r.get("missing_levels") else ""
            print(f"{r['input']}: complete ({', '.join(r['levels'])}{missing}) -> {r['output']}", file=out)
        elif r["status"] == "partial":
            print(f"{r['input']}: PARTIAL, stage {r['failed_stage']} failed: {r['error']} -> {r['output']}",
                  file=out)
        if r["status"] != "failed":
            for line in report_notes(r.get("numbering"), r.get("warnings") or []):
                print(f"  {line}", file=out)
    for r in failed:
        print(f"lvp infer: error: {r['input']}: {r['error']}", file=sys.stderr)
    if len(results) > 1 and (failed or partial):
        print(f"lvp infer: {len(failed)} of {len(results)} cases failed, {len(partial)} partial", file=sys.stderr)
    return code
