"""``lvp infer`` for one case: read → segment → label levels → measure → grade → plan → write.

:func:`run_inference` returns the report (the content of ``report.json``) and writes, in
``out_dir``: ``segmentation.nii.gz`` (TotalSpineSeg label values on the input's own voxel grid),
``segmentation.seg.nrrd`` (the same as a Slicer segmentation with names, colours and SNOMED
terminology), ``report.html`` and ``report.json``.

``lvp infer IMAGE --labels LABELMAP`` (:class:`LabelMapSegmenter`) starts from a TotalSpineSeg
label map instead of the network and keeps its level names (:mod:`lvp.labelling.from_labels`):
the way to re-measure, re-grade and re-plan after a reader corrected the levels.

Failure policy (the product rule "a partial result is never shown as complete"):

* the input cannot be read, or no vertebra / disc is found → :class:`~lvp.errors.InputError`,
  nothing is written (an earlier run's files in ``out_dir`` stay as they were);
* the model cannot be loaded → :class:`~lvp.errors.ModelError`, nothing is written;
* a later stage fails (labelling, measurement, grading, scan planes, axial series, figure) →
  the outputs are written with ``"status": "partial"``, ``"failed_stage"`` and ``"error"``
  naming it, and the HTML report says so in a red banner; ``lvp infer`` exits non-zero. From a
  DICOM input the SEG and SR (stage "dicom", after the figure) are written when every stage but
  the figure succeeded; the SR is then marked PARTIAL.

Every file is written into a staging folder, ``report.json`` last, and the staging folder then
replaces ``out_dir`` as a whole (:mod:`lvp.io.result_folder`): an interrupted run never leaves a
truncated file, a report describing files that do not exist, or files of two runs side by side.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lvp.errors import InputError
from lvp.io.read import read_volume
from lvp.io.volume import Volume
from lvp.labels import CANAL, DISC, VERTEBRA
from lvp.pipeline_stages import STAGE_START, ProgressFn, Stages, StageTimer, release_voxels
from lvp.report.build import (
    DICOM_SEG,
    DICOM_SR,
    REPORT_HTML,
    REPORT_JSON,
    SEG_NRRD,
    SEGMENTATION,
    SEMANTIC,
    jsonable,
    level_entries,
    report_skeleton,
    structure_entries,
)
from lvp.report.schema import validate_report
from lvp.segmenter import LabelMapSegmenter, MaskSegmenter, Segmenter  # noqa: F401 - lvp.pipeline.MaskSegmenter is what callers import

log = logging.getLogger("lvp.pipeline")

def report_json_text(report: dict) -> str:
    """``report.json``'s text: one line per top-level field and per item of a top-level list.

    The C JSON encoder writes each piece (``indent`` would switch to the pure-Python encoder, ≈
    15 ms per report); the layout keeps the file readable and line-diffable by field and level.
    """
    dumps = json.JSONEncoder(allow_nan=False, ensure_ascii=True).encode
    lines = []
    for key, value in report.items():
        if isinstance(value, list) and value:
            inner = ",\n  ".join(dumps(v) for v in value)
            lines.append(f" {dumps(key)}: [\n  {inner}\n ]")
        else:
            lines.append(f" {dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def _class_voxels(semantic: np.ndarray, value: int) -> int:
    # Slice by slice: a whole-volume comparison is a full-size boolean (294 MB for a full FOV).
    return sum(int(np.count_nonzero(s == value)) for s in semantic)


def _check_spine(semantic: np.ndarray, path: Path) -> None:
    if not _class_voxels(semantic, VERTEBRA) and not _class_voxels(semantic, DISC):
        raise InputError(f"{path}: no vertebra or intervertebral disc was found; is this a sagittal lumbar "
                         "spine MRI? (LVP reads sagittal T2-weighted lumbar spine series)")


# A lumbar spine read shows a chain of discs along a spinal canal. Fewer discs or almost no canal
# means the network found fragments in something else (a non-spine or unusable image): refuse it
# rather than name two blobs "L4-L5" and "L5-S". An 80 mm cranio-caudal field of view (the
# smallest the reader accepts) already holds three lumbar discs.
MIN_DISCS = 3
MIN_CANAL_MM3 = 2000.0


def _check_lumbar_chain(lab: Any, semantic: np.ndarray, volume: Volume, path: Path) -> None:
    n_discs = len(lab.discs)
    canal_mm3 = float(_class_voxels(semantic, CANAL)) * float(np.prod(volume.spacing))
    if n_discs < MIN_DISCS or canal_mm3 < MIN_CANAL_MM3:
        raise InputError(
            f"{path}: no lumbar spine was recognised ({n_discs} disc-like structure(s), "
            f"{canal_mm3:.0f} mm³ of spinal canal; a lumbar series shows at least {MIN_DISCS} discs along "
            "the canal). Is this a sagittal T2 lumbar spine MRI? If it is, it is outside what the model "
            "can read: grade it manually"
        )
    from lvp.labelling.numbering import chain_problem

    problem = chain_problem(lab)  # discs too close, irregular or mostly missing: not a spine's chain
    if problem:
        raise InputError(f"{path}: no plausible lumbar chain of discs was found ({problem}). Is this a sagittal "
                         "lumbar spine MRI? If it is, it is outside what the model can read: grade it manually")


def make_segmenter(model_dir: str | Path | None = None, device: str = "auto") -> Segmenter:
    """Load the network once (a batch reuses it for every case)."""
    from lvp.segmenter import NetworkSegmenter

    return NetworkSegmenter(model_dir=model_dir, device=device)


def run_inference(input_path: str | Path, out_dir: str | Path, *, progress: ProgressFn | None = None,
                  **options: Any) -> dict:
    """Run one case into the result folder ``out_dir``; return the report.

    ``out_dir`` is checked (a folder LVP may replace, writable) and locked before the input is
    read; every file is written into a staging folder that replaces ``out_dir`` as a whole once
    ``report.json`` is written (:mod:`lvp.io.result_folder`): ``out_dir`` always holds one run's
    result, whole. A refused input or an interruption leaves ``out_dir`` as it was. ``options``
    are those of :func:`_run_case` (``axial``, ``device``, ``model_dir``, ``segmenter``, ``html``).
    """
    from lvp.io.result_folder import ResultFolder

    with ResultFolder(out_dir, inputs=(input_path, options.get("axial"))) as folder:
        report = _run_case(input_path, folder.staging, progress=progress, **options)
        folder.commit()
    if progress:  # "done" once the result is in place
        progress("done", STAGE_START["done"])
    return report


def _run_case(input_path: str | Path, out_dir: str | Path, *, axial: str | Path | None = None,
              device: str = "auto", model_dir: str | Path | None = None, segmenter: Segmenter | None = None,
              progress: ProgressFn | None = None, html: bool = True, dicom_out: bool = True) -> dict:
    """Read one series, run every stage, write the outputs to ``out_dir``; return the report.

    ``segmenter`` (a :class:`lvp.segmenter.Segmenter`) is reused when given so a
    batch loads the model once; otherwise one is made from ``model_dir`` and ``device``.
    ``progress(stage, fraction)`` is called as the stages start ("done" is the caller's, once
    the result is in place). ``dicom_out``: from a DICOM input,
    also write the DICOM SEG and SR (stage "dicom", after the figure; ``lvp infer --no-dicom``
    turns it off). The image's voxels are released after the figure (:func:`release_voxels`).
    """
    t_start = time.perf_counter()
    input_path = Path(input_path)
    out_dir = Path(out_dir)
    timer = StageTimer()
    timings = timer.timings
    if progress:
        progress("read", STAGE_START["read"])
    with timer("read"):
        volume = read_volume(input_path)
    # Whether this case writes a DICOM SEG and SR: the segmenter's memory estimate counts them.
    volume.meta["dicom_outputs"] = bool(dicom_out and volume.meta.get("format") == "dicom")

    if segmenter is None:
        with timer("load_model"):
            segmenter = make_segmenter(model_dir, device)
    if progress:
        progress("network", STAGE_START["network"])
    with timer("network"):  # the whole call; the segmenter's own stage times replace it when it gives them
        seg_out = segmenter.segment(volume)
    timings.update({k: float(v) for k, v in seg_out.timings.items()})
    semantic = np.asarray(seg_out.semantic)
    if semantic.shape != volume.shape:
        raise RuntimeError(f"the segmenter returned shape {semantic.shape} for a volume of {volume.shape}")
    _check_spine(semantic, input_path)

    report = report_skeleton(volume, input_path)
    report["model"] = jsonable(dict(segmenter.info))
    report["timings_s"] = timings
    stages = Stages(report, progress, timer)

    given = seg_out.labels
    if given is not None:  # a reader's label map: levels as named there, no automatic labelling
        lab = stages.run("labelling", lambda: _label_from_labels(given, volume, seg_out.label_confidence))
    else:
        lab = stages.run("labelling", lambda: _label(semantic, volume, seg_out.probability, segmenter.sacrum_class))
    if lab is not None:
        report["warnings"].extend(jsonable(list(lab.warnings)))
        report["numbering"] = jsonable(lab.numbering)
        if not lab.vertebrae and not lab.discs:
            raise InputError(f"{input_path}: no vertebral level could be identified; is this a sagittal lumbar "
                             "spine MRI?")
        if given is None:  # a reader's own label map is taken as it is
            _check_lumbar_chain(lab, semantic, volume, input_path)
        if lab.labels is not None:
            # From here on the labels stand for the network's classes: free them (a full-size
            # array, which would otherwise stay alive through measurement and the writes).
            semantic = seg_out = given = None
    meas = stages.run("measure", lambda: _measure(volume, lab))
    grades = stages.run("grade", lambda: _grade(meas))
    scan = stages.run("planes", lambda: _planes(volume, lab))
    if axial is not None:
        report["axial"] = stages.run("axial", lambda: _axial_section(volume, lab, axial, scan, meas, grades))

    # Outputs. Without a level labelling the label values cannot be assigned: the semantic
    # classes are written instead (named in "outputs") and the report is partial already.
    stages.tick("write")
    labels = np.asarray(lab.labels) if lab is not None else None
    t_write = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = report["outputs"]
    # The label files are streamed from the canonical label map, a few source slices at a time
    # (no full-size source-grid copy, no SimpleITK image; level-1 run-length gzip). The staging
    # folder is only committed after report.json, so the files are written under their final names.
    from lvp.io.label_files import write_label_files

    if labels is not None:
        with timer("write_labels"):
            write_label_files(labels, volume.source, out_dir / SEGMENTATION, out_dir / SEG_NRRD)
            outputs["segmentation"] = SEGMENTATION
            outputs["segmentation_seg_nrrd"] = SEG_NRRD
    else:
        with timer("write_labels"):
            write_label_files(semantic, volume.source, out_dir / SEMANTIC, None)
            outputs["semantic"] = SEMANTIC

    report["structures"] = structure_entries(volume, labels, lab) if labels is not None else []
    report["levels"] = level_entries(lab, meas, grades, scan) if lab is not None else []

    # The figure is the image's last user: drawn first, then the voxels are released (a 16-bit
    # full field of view holds 560 MiB) before the DICOM SEG and SR, which need the label map, the
    # source headers (volume.meta) and the geometry only. The SR is then written once, knowing
    # whether the figure failed; the page is rendered last, with the report's final state.
    figure = None
    if html:
        figure = stages_figure(stages, volume, labels if labels is not None else semantic, report,
                               box=lab.crop if labels is not None else None)
    release_voxels(volume, "after the report figure, before the DICOM outputs")
    if labels is not None and dicom_out and volume.meta.get("format") == "dicom":
        stages.run("dicom", lambda: _write_dicom(volume, labels, report, out_dir), despite=("figure",))
    if html:
        with timer("write_html"):
            from lvp.report.html import render_html

            # The page states the time to the report; writing the page itself is a few milliseconds.
            timings["total"] = time.perf_counter() - t_start
            page = render_html(report, *(figure or (None,)))
            (out_dir / REPORT_HTML).write_text(page, encoding="utf-8")
            outputs["report_html"] = REPORT_HTML
    timings["write"] = time.perf_counter() - t_write
    timings["total"] = time.perf_counter() - t_start
    report["timings_s"] = {k: round(float(v), 4) for k, v in timings.items()}
    report = jsonable(report)
    validate_report(report)
    (out_dir / REPORT_JSON).write_text(report_json_text(report), encoding="utf-8")
    return report


def stages_figure(stages: Stages, volume: Volume, labels: np.ndarray, report: dict,
                  box: tuple[slice, ...] | None = None) -> tuple | None:
    """Draw the report figure as a stage of its own (a failing figure makes the report partial).

    Returns ``(png, names, evidence)`` for :func:`lvp.report.html.render_html`, or None. ``box``:
    a region holding every nonzero label (the labelling's crop); the figure reads no more.
    """
    from lvp.report.html import evidence_overlay, figure_labels, sagittal_figure_png

    points = [(lv["level"], lv["center_lps"]) for lv in report["levels"] if lv["center_lps"] is not None]
    points += [(s["name"], s["center_lps"]) for s in report["structures"]
               if s["kind"] == "vertebra" and s["center_lps"] is not None]

    def draw(lab: np.ndarray) -> tuple:
        marks = evidence_overlay(volume, report["levels"])
        return sagittal_figure_png(volume, lab, box=box), figure_labels(volume, points), marks

    if report["status"] != "complete":
        # Still draw the figure of what exists: it is what the reader needs to see why it failed.
        try:
            return draw(labels if labels.max(initial=0) > 3 else np.zeros_like(labels))
        except Exception:
            return None
    return stages.run("figure", lambda: draw(labels))


def _write_dicom(volume: Volume, labels: np.ndarray, report: dict, out_dir: Path) -> None:
    """The DICOM SEG of ``labels`` and the SR of ``report``, in the input's study.

    Reads ``volume.meta`` (the source headers) and ``volume.source`` (the geometry), never the
    voxels (released by then).
    """
    from lvp.io.dicom_seg import source_series, write_dicom_seg
    from lvp.io.dicom_sr import write_dicom_sr

    source = source_series(volume.meta)
    write_dicom_seg(labels, source, out_dir / DICOM_SEG, geometry=volume.source)
    report["outputs"]["dicom_seg"] = DICOM_SEG
    write_dicom_sr(jsonable(report), source, out_dir / DICOM_SR)
    report["outputs"]["dicom_sr"] = DICOM_SR


# The post-processing modules are imported inside their stages: a broken one then makes the
# report partial with that stage named, and `lvp --help` stays fast.
def _label(semantic: np.ndarray, volume: Volume, probability: np.ndarray | None,
           sacrum_class: bool | None = None) -> Any:
    from lvp.labelling import label_levels

    return label_levels(semantic, volume, probability=probability, sacrum_class=sacrum_class)


def _label_from_labels(labels: np.ndarray, volume: Volume, confidence: dict | None) -> Any:
    from lvp.labelling.from_labels import labelling_from_labels

    return labelling_from_labels(labels, volume, confidence)


def _measure(volume: Volume, lab: Any) -> dict:
    from lvp.measure import measure_levels

    return measure_levels(volume, lab)


def _grade(meas: dict) -> dict:
    from lvp.grading import grade_level

    return {level: grade_level(m) for level, m in meas.items()}


def _planes(volume: Volume, lab: Any) -> dict:
    from lvp.planes import scan_planes

    return scan_planes(volume, lab)


def _axial_section(volume: Volume, lab: Any, axial_path: str | Path, scan: dict | None, meas: dict | None = None,
                   grades: dict | None = None) -> dict:
    from lvp.axial import axial_report
    from lvp.grading import regrade_canal_with_axial

    section = axial_report(volume, lab, axial_path, scan)
    if meas and grades:  # the canal grade of a level with a valid axial area comes from that area
        regrade_canal_with_axial(grades, meas, section)
    return section
