"""``lvp serve``: a warm worker that runs ``lvp infer`` jobs read from stdin, one after another.

A one-case ``lvp infer`` process spends most of its wall time starting (interpreter, numpy,
SimpleITK, scipy, ONNX Runtime, the model). A client that runs many cases (the Slicer module,
a PACS bridge) can keep one ``lvp serve`` child instead and pay that once.

Protocol (one JSON object per line, UTF-8):

* stdin, a job: ``{"job": ID, "args": [INPUT, "-o", OUTDIR, ...]}``; ``args`` are exactly the
  arguments of ``lvp infer`` (``--progress-json`` is implied). ``{"exit": true}`` or the end of
  stdin stops the worker (exit code 0).
* stdout: ``{"event": "ready", "pid": ..., "seconds": ...}`` once the code and the default model
  are loaded; per job ``{"event": "job", "job": ID}``, then the very lines ``lvp infer
  --progress-json`` prints, then ``{"event": "job_done", "job": ID, "exit_code": N}`` with the
  exit code ``lvp infer`` would have returned, and ``"error"`` (one line) whenever N is not 0:
  the message of a job refused before any case, else the last ``lvp infer: error: ...`` line the
  job printed (a client reading stderr on its own thread cannot tell which job wrote a line).
  Human-readable lines go to stderr, as with ``lvp infer --progress-json``.

Cancel and shut-down: a job is cancelled by ending the worker (SIGTERM to its process group, as
a cancelled ``lvp infer`` child): the running case leaves no trace (its staged result folder is
discarded, :mod:`lvp.io.result_folder`), cases already finished stay complete, the worker exits
143. The client starts a new worker for the next job. Between jobs the worker holds no lock and
no open output, so ending it then loses nothing. The Slicer module's client is
``LumbarVNetProLib.worker`` (one worker per model folder and device, reused between cases).

The model is loaded once per ``(--model, --device)`` pair and reused; ``--labels`` and
``--semantic`` jobs build their own stand-in segmenter as ``lvp infer`` does.

Warming while idle (``--warm``, default ``idle``): after "ready", while no job is waiting, the
worker pays, one short step at a time, the one-time costs a first case would otherwise pay
(:func:`warm_steps`: the modules a case imports late, ONNX Runtime's first run on a small input,
pydicom/highdicom and highdicom's DICOM-standard tables for a DICOM case). stdin is read by a
thread into a queue, and the main thread takes the next step only when that queue is empty, so a
job waits at most for the step under way (the longest, the standard tables, ≈ 0.3 s) and never
for the rest. ``before-ready`` takes the same steps before answering ready (later "ready", the
first job is warm even when sent the instant ready arrives); ``off`` none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lvp.errors import LVPError

EXIT_BAD_JOB = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command."""
    p = subparsers.add_parser("serve", help="a warm worker running lvp infer jobs read as JSON lines on stdin",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="device of the model loaded at start (jobs may name another)")
    p.add_argument("--model", metavar="DIR", help="model folder loaded at start (default: the bundled model)")
    p.add_argument("--no-preload", action="store_true", help="load code and model at the first job instead")
    p.add_argument("--warm-up", metavar="IMAGE",
                   help="run one case of IMAGE into a temporary folder before answering ready (the first real "
                        "job then runs as fast as later ones)")
    p.add_argument("--warm", choices=["idle", "before-ready", "off"], default="idle",
                   help="pay a first case's one-time costs (late imports, the first ONNX Runtime run, highdicom's "
                        "tables) while no job waits (idle, the default), before answering ready, or not at all")
    p.add_argument("--no-warm-dicom", action="store_true",
                   help="leave out pydicom/highdicom from the warm-up (a client whose jobs are never DICOM: about "
                        "120 MiB less resident while idle)")
    p.set_defaults(func=run)


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class _JobParser(argparse.ArgumentParser):
    """An argument parser whose errors are exceptions (a bad job must not end the worker)."""

    def error(self, message: str):  # overrides argparse's NoReturn method
        raise ValueError(message)


class _StderrTail:
    """Writes through to stderr and keeps the last ``lvp infer: error:`` line of the running job."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.error = ""
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if ": error: " in line:
                self.error = line.split(": error: ", 1)[1].strip()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):  # fileno, isatty, encoding...: the real stream's
        return getattr(self.stream, name)


class Worker:
    """Runs ``lvp infer`` argument lists in this process with cached segmenters."""

    def __init__(self) -> None:
        from lvp.commands import infer

        self.infer = infer
        self.parser = _JobParser(prog="lvp serve job", add_help=False)
        sub = self.parser.add_subparsers(dest="command")
        infer.register(sub)
        self.segmenters: dict[tuple, Any] = {}

    def segmenter(self, model: str | None, device: str) -> Any:
        """The loaded segmenter for ``(model, device)`` (loaded on first use)."""
        key = (model, device)
        if key not in self.segmenters:
            from lvp.pipeline import make_segmenter

            self.segmenters[key] = make_segmenter(model, device)
        return self.segmenters[key]

    def preload(self, model: str | None, device: str) -> None:
        """Import every stage's code and load the model, so the first job starts warm."""
        import lvp.grading  # imported for its start-up cost only
        import lvp.io.seg_nrrd
        import lvp.labelling
        import lvp.measure
        import lvp.planes
        import lvp.report.html  # noqa: F401

        self.segmenter(model, device)

    def parse(self, job_args: list[str]) -> argparse.Namespace:
        """``lvp infer`` arguments -> namespace; raises ValueError on bad arguments."""
        if not isinstance(job_args, list) or not all(isinstance(a, str) for a in job_args):
            raise ValueError('"args" must be a list of strings (the arguments of lvp infer)')
        try:
            args, extra = self.parser.parse_known_args(["infer", *job_args])
        except (ValueError, argparse.ArgumentError, SystemExit) as err:  # SystemExit: e.g. "-h"
            raise ValueError(f"invalid lvp infer arguments: {err}") from None
        if extra:
            raise ValueError(f"invalid lvp infer arguments: unrecognised {' '.join(extra)}")
        args.progress_json = True
        return args

    def run_job(self, job_args: list[str]) -> int:
        """Run one job as ``lvp infer`` would; return its exit code."""
        args = self.parse(job_args)
        segmenter = None
        if not (args.labels or args.semantic):  # those build their own stand-in from the job's files
            segmenter = self.segmenter(args.model, args.device)  # a DICOMweb job's fetched series too
        return int(self.infer.run(args, segmenter=segmenter) or 0)


# Modules a case imports only when it gets there (in lvp.pipeline, lvp.commands.infer and the
# writers), beyond what Worker.preload imports: a first case would pay for them.
LATE_MODULES = ("lvp.io.result_folder", "lvp.io.label_files", "lvp.report.study_header", "jinja2", "threadpoolctl")
# What a DICOM case imports on top (reading the series, writing the SEG and the SR).
DICOM_MODULES = ("pydicom", "lvp.io.dicom", "highdicom", "highdicom.seg", "highdicom.sr", "lvp.io.dicom_seg",
                 "lvp.io.dicom_sr")


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        __import__(name)


def _first_network_run(segmenter: Any) -> None:
    """One ONNX Runtime run on the smallest input the network takes: its first-run set-up is paid."""
    import numpy as np

    if getattr(segmenter, "runtime", None) != "onnxruntime":
        return
    segmenter.logits(np.zeros((1, 1, *segmenter.divisor), np.float32))


def _highdicom_tables() -> None:
    """Have highdicom parse the DICOM standard's tables now (a 22 MB JSON), not at a case's first SEG.

    Building one bare SOP instance through its public base class pays that here: ``SOPClass`` checks
    which attributes the IOD has, which loads the tables. Nothing is written.
    """
    import highdicom
    from pydicom.uid import SegmentationStorage, generate_uid

    highdicom.SOPClass(study_instance_uid=generate_uid(), series_instance_uid=generate_uid(), series_number=1,
                       sop_instance_uid=generate_uid(), sop_class_uid=SegmentationStorage, instance_number=1,
                       modality="SEG")


def warm_steps(worker: Worker, model: str | None, device: str,
               dicom: bool = True) -> Iterator[tuple[str, Callable[[], None]]]:
    """The warm-up steps, in the order a case needs them: ``(name, step)``; each takes ≤ ≈ 0.3 s.

    ``dicom``: also what a DICOM case adds (pydicom, highdicom and its standard tables: ≈ 0.5 s of
    a first DICOM case and ≈ 120 MiB resident).
    """
    yield "imports", lambda: _import_all(LATE_MODULES)
    yield "network", lambda: _first_network_run(worker.segmenter(model, device))
    if dicom:
        yield "dicom imports", lambda: _import_all(DICOM_MODULES)
        yield "dicom tables", _highdicom_tables


def _warm(name: str, step: Callable[[], None]) -> None:
    """Run one warm-up step; a failure only costs the first case what the step would have saved."""
    t = time.perf_counter()
    try:
        step()
    except Exception as err:  # a missing optional package (highdicom), an odd model: the job will say
        print(f"lvp serve: warm-up step {name!r} skipped: {type(err).__name__}: {err}", file=sys.stderr)
        return
    print(f"lvp serve: warmed {name} in {time.perf_counter() - t:.3f} s", file=sys.stderr)


def _read_lines(stream, lines: queue.Queue) -> None:
    """Put each line of ``stream`` on ``lines``, then None at its end (the reader thread)."""
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def run(args: argparse.Namespace) -> int:
    """Serve jobs until stdin ends, ``{"exit": true}`` arrives, or a job is cancelled."""
    t0 = time.perf_counter()
    # stdin is read by a thread from the start: a job sent before "ready" is already queued when
    # the worker is ready, so no warm-up step is started ahead of it.
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(sys.stdin, lines), name="lvp-serve-stdin", daemon=True).start()
    worker = Worker()
    if not args.no_preload:
        worker.preload(args.model, args.device)
    if args.warm_up:
        import tempfile

        # Its progress lines are not a job's: they go to stderr, stdout starts with "ready".
        with tempfile.TemporaryDirectory(prefix="lvp-warm-up-") as tmp, contextlib.redirect_stdout(sys.stderr):
            worker.run_job([args.warm_up, "-o", os.path.join(tmp, "case"), "--device", args.device, "--quiet",
                            *(["--model", args.model] if args.model else [])])
    warm: Iterator = iter(())
    if not args.no_preload and args.warm != "off":
        warm = warm_steps(worker, args.model, args.device, dicom=not args.no_warm_dicom)
    if args.warm == "before-ready":
        for name, step in warm:
            _warm(name, step)
    _emit(event="ready", pid=os.getpid(), seconds=round(time.perf_counter() - t0, 3))
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            step = next(warm, None)
            if step is not None:  # idle: one warm-up step, then look for a job again
                _warm(*step)
                continue
            line = lines.get()
        if line is None:  # end of stdin
            return 0
        if not line.strip():
            continue
        job_id = None
        try:
            job = json.loads(line)
            if not isinstance(job, dict):
                raise ValueError("a job is a JSON object")
            if job.get("exit"):
                return 0
            job_id = job.get("job")
            _emit(event="job", job=job_id)
            tail = _StderrTail(sys.stderr)
            with contextlib.redirect_stderr(tail):
                code = worker.run_job(job.get("args"))
        except (ValueError, LVPError) as err:
            code = err.exit_code if isinstance(err, LVPError) else EXIT_BAD_JOB
            print(f"lvp serve: job {job_id}: error: {err}", file=sys.stderr)
            _emit(event="job_done", job=job_id, exit_code=code, error=str(err))
            continue
        except Exception as err:  # a bug in one job must not end the worker's answers
            print(f"lvp serve: job {job_id}: {type(err).__name__}: {err}", file=sys.stderr)
            _emit(event="job_done", job=job_id, exit_code=1, error=f"{type(err).__name__}: {err}")
            continue
        if code:
            _emit(event="job_done", job=job_id, exit_code=code, error=tail.error or f"lvp infer exited with {code}")
        else:
            _emit(event="job_done", job=job_id, exit_code=code)
        if code == worker.infer.EXIT_SIGTERM:  # cancelled: the client starts a new worker
            return code
