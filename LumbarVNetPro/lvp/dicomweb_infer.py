"""``lvp infer dicomweb+http://host/dicom-web --study UID [--series UID] [--store] -o OUTDIR``.

Fetches the study's sagittal T2 series (QIDO-RS, WADO-RS: :mod:`lvp.io.dicomweb`) into a private
temporary folder, runs ``lvp infer`` on it exactly as on a DICOM folder (same outputs, printout
and exit codes), deletes the downloaded images, and with ``--store`` sends the DICOM SEG and SR
back to the server (STOW-RS). Only a complete result is stored: a partial one has no SEG/SR and
is never filed into the PACS. Credentials: ``LVP_DICOMWEB_USER``/``LVP_DICOMWEB_PASSWORD`` or
``LVP_DICOMWEB_TOKEN`` (never on the command line).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from lvp.errors import ConfigError


def run_dicomweb(args: argparse.Namespace, segmenter: Any = None) -> int:
    """Run ``lvp infer`` on a DICOMweb study (see module docstring); return the exit code."""
    from lvp.commands import infer
    from lvp.io.dicomweb import fetch_series, parse_case_ref, store

    if len(args.inputs) != 1:
        raise ConfigError("a DICOMweb input is read alone: give one dicomweb+http(s):// address")
    url, ref_study, ref_series = parse_case_ref(str(args.inputs[0]))  # also ...?study=UID&series=UID
    study = getattr(args, "study", None) or ref_study
    if not study:
        raise ConfigError("a DICOMweb input needs --study STUDY_INSTANCE_UID")
    if args.axial:
        raise ConfigError("--axial takes a local series; it cannot be combined with a DICOMweb input")
    out = Path(args.output)
    infer.check_outputs([out], out, [])  # before anything is downloaded
    quiet = bool(getattr(args, "quiet", False))
    with tempfile.TemporaryDirectory(prefix="lvp-dicomweb-") as tmp:
        folder = Path(tmp) / f"study-{study}"
        uid, count = fetch_series(url, study, folder, getattr(args, "series", None) or ref_series)
        if not quiet:
            print(f"{url}: study {study}: series {uid} ({count} instances) fetched", file=sys.stderr)
        local = copy.copy(args)
        local.inputs = [str(folder)]
        local.study = local.series = None
        local.store = False
        code = infer.run(local, segmenter)
    if not getattr(args, "store", False):
        return code
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    outputs = report.get("outputs") or {}
    files = [out / outputs[k] for k in ("dicom_seg", "dicom_sr") if outputs.get(k)]
    if code != infer.EXIT_COMPLETE or report.get("status") != "complete" or len(files) != 2:
        print(f"lvp infer: nothing stored on {url}: the result is not complete (no SEG and SR to file)",
              file=sys.stderr)
        return code if code != infer.EXIT_COMPLETE else infer.EXIT_PARTIAL
    uids = store(url, files)
    if not quiet:
        print(f"stored on {url} in study {study}: SEG {uids[0]}, SR {uids[1]}", file=sys.stderr)
    return code
