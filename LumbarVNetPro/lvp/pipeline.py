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
  naming it, and the HTML report says so in a red banner; ``lvp infer`` exits non-zero.

Every file is written into a staging folder, ``report.json`` last, and the staging folder then
replaces ``out_dir`` as a whole (:mod:`lvp.io.result_folder`): an interrupted run never leaves a
truncated file, a report describing files that do not exist, or files of two runs side by side.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lvp import __version__
from lvp.errors import InputError
from lvp.io.read import read_volume
from lvp.io.volume import Volume
from lvp.labels import CANAL, CANAL_LABEL, DISC, SACRUM, SACRUM_LABEL, STRUCTURES, VERTEBRA
from lvp.report.schema import SCHEMA_NAME, SCHEMA_VERSION, validate_report

log = logging.getLogger("lvp.pipeline")

ProgressFn = Callable[[str, float], None]

SEGMENTATION = "segmentation.nii.gz"
SEG_NRRD = "segmentation.seg.nrrd"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
SEMANTIC = "semantic.nii.gz"
DICOM_SEG = "segmentation.dcm"  # DICOM input only (lvp.io.dicom_seg)
DICOM_SR = "report.sr.dcm"

# Where each stage starts on the 0..1 progress scale of one case (measured shares of the time).
STAGE_START = {"read": 0.0, "network": 0.1, "labelling": 0.6, "measure": 0.7, "grade": 0.78, "planes": 0.8,
               "axial": 0.83, "write": 0.85, "dicom": 0.88, "figure": 0.92, "done": 1.0}


@dataclass
class SemanticResult:
    """What a segmenter returns: network classes on the canonical grid, with optional extras."""

    semantic: np.ndarray
    probability: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # A TotalSpineSeg label map (same grid) whose level names are kept as they are: the labelling
    # stage builds the levels from it (lvp.labelling.from_labels) instead of numbering them.
    labels: np.ndarray | None = None
    # Label value -> confidence to keep for levels given by ``labels`` (others get 1.0).
    label_confidence: dict[int, float] | None = None


def _read_on_grid(path: Path, volume: Volume, what: str) -> np.ndarray:
    """The array of the image at ``path``, refused unless it lies on ``volume``'s voxel grid."""
    image = read_volume(path, validate=False, require_sagittal=False)
    if image.shape != volume.shape or not np.allclose(image.affine, volume.affine, atol=1e-3):
        raise InputError(f"{path}: the {what} is not on the image's voxel grid "
                         f"({what} {image.shape}, image {volume.shape})")
    return image.array


def _read_label_map(path: Path, volume: Volume, what: str) -> np.ndarray:
    return np.rint(_read_on_grid(path, volume, what)).astype(np.int16)


class MaskSegmenter:
    """A "segmenter" that returns an existing semantic mask (classes 1 vertebra, 2 disc, 3 canal).

    For re-running the level labelling, measurements and grades on a corrected segmentation
    (``lvp infer --semantic MASK``) and for exercising the pipeline without a model.
    """

    def __init__(self, mask_path: str | Path):
        self.mask_path = Path(mask_path)
        self.info = {"name": "semantic-mask", "version": "n/a", "sha256": None, "runtime": "none",
                     "device": "cpu", "mask": str(self.mask_path)}

    def segment(self, volume: Volume) -> SemanticResult:
        """Read the mask and check it lies on the volume's grid."""
        t0 = time.perf_counter()
        semantic = _read_on_grid(self.mask_path, volume, "semantic mask").astype(np.uint8, copy=False)
        if semantic.max(initial=0) > SACRUM:
            raise InputError(f"{self.mask_path}: a semantic mask holds only 0 background, 1 vertebra, 2 disc, "
                             f"3 canal and 4 sacrum; it has value {int(semantic.max())}")
        return SemanticResult(semantic, None, {"network": time.perf_counter() - t0})


class LabelMapSegmenter:
    """A "segmenter" returning a TotalSpineSeg label map whose level names are kept as given.

    For recomputing after a reader's edits (``lvp infer IMAGE --labels LABELMAP``): no network and
    no level labelling; measurements, grades and scan planes are made from the map as it is.
    ``previous`` (an earlier ``lvp infer`` output folder of the same image) lets levels whose
    voxels are unchanged keep their earlier confidence; edited, renamed or new levels get 1.0.
    """

    def __init__(self, labels_path: str | Path, previous: str | Path | None = None):
        self.labels_path = Path(labels_path)
        self.previous = Path(previous) if previous else None
        self.info = {"name": "label-map", "version": "n/a", "sha256": None, "runtime": "none",
                     "device": "cpu", "labels": str(self.labels_path)}

    def segment(self, volume: Volume) -> SemanticResult:
        """Read the label map, check its grid and values; derive the semantic classes."""
        from lvp.labelling.from_labels import check_label_values, unchanged_confidences
        from lvp.labels import DISC_LABELS, VERTEBRA_LABELS

        t0 = time.perf_counter()
        labels = _read_label_map(self.labels_path, volume, "label map")
        check_label_values(labels, str(self.labels_path))
        semantic = np.zeros(labels.shape, np.uint8)
        semantic[np.isin(labels, list(VERTEBRA_LABELS.values()) + [SACRUM_LABEL])] = VERTEBRA
        semantic[np.isin(labels, list(DISC_LABELS.values()))] = DISC
        semantic[labels == CANAL_LABEL] = CANAL
        kept: dict[int, float] = {}
        if self.previous is not None:
            prev_report = json.loads((self.previous / REPORT_JSON).read_text())
            seg_name = (prev_report.get("outputs") or {}).get("segmentation") or SEGMENTATION
            previous = _read_label_map(self.previous / seg_name, volume, "earlier segmentation")
            conf = {int(s["label"]): s.get("confidence") for s in prev_report.get("structures", [])}
            kept = unchanged_confidences(labels, previous, conf)
        return SemanticResult(semantic, None, {"network": time.perf_counter() - t0}, labels=labels,
                              label_confidence=kept)


def _report_skeleton(volume: Volume | None, input_path: Path) -> dict:
    report: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "lvp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "status": "complete",
        "failed_stage": None,
        "error": None,
        "input": {"path": str(input_path)},
        "model": {},
        "timings_s": {},
        "outputs": {"segmentation": None, "segmentation_seg_nrrd": None, "report_html": None},
        "structures": [],
        "levels": [],
        "axial": None,
        "numbering": None,
        "warnings": [],
    }
    if volume is not None:
        src = volume.source
        report["input"] = {
            "path": str(volume.meta.get("path", input_path)),
            "format": volume.meta.get("format", "nifti"),
            "series_uid": volume.meta.get("series_uid"),
            "size": list(src.size),
            "spacing": list(src.spacing),
            "origin": list(src.origin),
            "direction": list(src.direction),
            "coordinate_system": "LPS",
        }
        if volume.meta.get("study"):  # DICOM input: its patient/study identity, only what it holds
            report["study"] = dict(volume.meta["study"])
        # What the reader found about the input itself (undefined voxels, slices that may be missing).
        report["warnings"].extend(volume.meta.get("warnings") or [])
    return report


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays to Python, tuples to lists, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    return value


def _point(p: Any) -> list[float] | None:
    return None if p is None else [float(v) for v in np.asarray(p, dtype=float).ravel()[:3]]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via ``write(tmp)`` to a temporary sibling (same suffixes) and rename it into place."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_nifti(image: sitk.Image, path: Path) -> None:
    # Level 1 gzip: label maps compress to about the same size as level 6, several times faster.
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.UseCompressionOn()
    writer.SetCompressionLevel(1)
    writer.Execute(image)


def _structure_entries(volume: Volume, labels: np.ndarray, lab: Any) -> list[dict]:
    voxel_mm3 = float(np.prod(volume.spacing))
    entries = []
    for item in list(getattr(lab, "vertebrae", [])) + list(getattr(lab, "discs", [])):
        value = int(item.label)
        if value not in STRUCTURES:
            continue  # a level without an output label value (above T11) is not in the segmentation
        entries.append({
            "label": value,
            "name": str(item.name),
            "kind": str(getattr(item, "kind", None) or STRUCTURES[value].kind),
            "center_lps": _point(getattr(item, "centroid_lps", None)),
            "volume_mm3": float(getattr(item, "voxels", 0)) * voxel_mm3,
            "confidence": _jsonable(getattr(item, "confidence", None)),
        })
    present = {e["label"] for e in entries}
    # The labelling's crop holds every labelled voxel: the rest of the grid is background.
    crop = getattr(lab, "crop", None) or (slice(None),) * 3
    region = labels[crop]
    offset = [s.indices(n)[0] for s, n in zip(crop, labels.shape)]
    for value, name, kind in ((SACRUM_LABEL, "sacrum", "sacrum"), (CANAL_LABEL, "spinal canal", "canal")):
        if value in present:
            continue
        count, centre = _count_and_centre(region == value, offset)
        if count:
            entries.append({"label": value, "name": name, "kind": kind,
                            "center_lps": _point(volume.index_to_lps(centre)),
                            "volume_mm3": count * voxel_mm3, "confidence": None})
    return entries


def _count_and_centre(mask: np.ndarray, offset: list[int]) -> tuple[int, np.ndarray]:
    """Voxel count and mean index (plus ``offset``) of a mask, from its per-axis profiles.

    The index sums are exact integers, so the mean equals ``np.argwhere(mask).mean(axis=0)`` of
    the mask placed at ``offset`` in the whole grid, to the last bit (no index list is built).
    """
    count = int(np.count_nonzero(mask))
    if not count:
        return 0, np.zeros(3)
    centre = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        profile = np.count_nonzero(mask, axis=other).astype(np.int64)
        index = np.arange(offset[axis], offset[axis] + mask.shape[axis], dtype=np.int64)
        centre.append(int(profile @ index) / count)
    return count, np.asarray(centre, float)


def _level_entries(lab: Any, measurements: dict | None, grades: dict | None, planes: dict | None) -> list[dict]:
    levels = []
    for disc in getattr(lab, "discs", []):
        if int(disc.label) not in STRUCTURES:
            continue
        name = str(disc.name)
        level = name[:-5] if name.endswith(" disc") else name
        meas = (measurements or {}).get(level)
        levels.append({
            "level": level,
            "disc_label": int(disc.label),
            "center_lps": _point(getattr(disc, "centroid_lps", None)),
            "confidence": _jsonable(getattr(disc, "confidence", None)),
            "measurements": _jsonable(meas) if meas is not None else {},
            "grades": _jsonable((grades or {}).get(level, {})),
            "scan_plane": _jsonable((planes or {}).get(level)),
            # Quality and evidence (issue 15): why a grade was withheld, what was drawn where.
            "status": "found",
            "notes": _jsonable(list(getattr(meas, "notes", []) or [])),
            "evidence": _jsonable(list(getattr(meas, "evidence", []) or [])),
            "section": _jsonable(dict(getattr(meas, "section", {}) or {})),
        })
    from lvp.grading import with_missing_levels

    return with_missing_levels(levels, lab)


class _Stages:
    """Runs the post-network stages, recording timings and the first failure."""

    def __init__(self, report: dict, progress: ProgressFn | None):
        self.report = report
        self.progress = progress

    def tick(self, stage: str) -> None:
        if self.progress:
            self.progress(stage, STAGE_START[stage])

    def run(self, stage: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` unless an earlier stage failed; on error mark the report partial."""
        if self.report["status"] != "complete":
            return None
        self.tick(stage)
        t0 = time.perf_counter()
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - any failure here must become a partial report
            log.warning("stage %s failed: %s", stage, err, exc_info=log.isEnabledFor(logging.DEBUG))
            self.report["status"] = "partial"
            self.report["failed_stage"] = stage
            self.report["error"] = f"{type(err).__name__}: {err}"
            return None
        finally:
            self.report["timings_s"][stage] = time.perf_counter() - t0


def _check_spine(semantic: np.ndarray, path: Path) -> None:
    # Two comparisons instead of np.bincount, which widens every voxel to intp first.
    if not (semantic == VERTEBRA).any() and not (semantic == DISC).any():
        raise InputError(f"{path}: no vertebra or intervertebral disc was found; is this a sagittal lumbar "
                         "spine MRI? (LVP reads sagittal T2-weighted lumbar spine series)")


# A lumbar spine read shows a chain of discs along a spinal canal. Fewer discs or almost no canal
# means the network found fragments in something else (a non-spine or unusable image): refuse it
# rather than name two blobs "L4-L5" and "L5-S". An 80 mm cranio-caudal field of view (the
# smallest the reader accepts) already holds three lumbar discs.
MIN_DISCS = 3
MIN_CANAL_MM3 = 2000.0


def _check_lumbar_chain(lab: Any, semantic: np.ndarray, volume: Volume, path: Path) -> None:
    n_discs = len(getattr(lab, "discs", []) or [])
    canal_mm3 = float(np.count_nonzero(semantic == CANAL)) * float(np.prod(volume.spacing))
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


def make_segmenter(model_dir: str | Path | None = None, device: str = "auto") -> Any:
    """Load the network once (a batch reuses it for every case)."""
    from lvp.segmenter import Segmenter  # imported late: loading torch/onnxruntime takes a while

    return Segmenter(model_dir=model_dir, device=device)


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

    def staged(stage: str, fraction: float) -> None:
        if progress and stage != "done":  # "done" once the result is in place
            progress(stage, fraction)

    with ResultFolder(out_dir, inputs=(input_path, options.get("axial"))) as folder:
        report = _run_case(input_path, folder.staging, progress=staged, **options)
        folder.commit()
    if progress:
        progress("done", STAGE_START["done"])
    return report


def _run_case(input_path: str | Path, out_dir: str | Path, *, axial: str | Path | None = None,
              device: str = "auto", model_dir: str | Path | None = None, segmenter: Any = None,
              progress: ProgressFn | None = None, html: bool = True, dicom_out: bool = True) -> dict:
    """Read one series, run every stage, write the outputs to ``out_dir``; return the report.

    ``segmenter`` (anything with ``.segment(volume)`` and ``.info``) is reused when given so a
    batch loads the model once; otherwise one is made from ``model_dir`` and ``device``.
    ``progress(stage, fraction)`` is called as the stages start. ``dicom_out``: from a DICOM input,
    also write the DICOM SEG and SR (stage "dicom").
    """
    t_start = time.perf_counter()
    input_path = Path(input_path)
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}
    if progress:
        progress("read", STAGE_START["read"])
    t0 = time.perf_counter()
    volume = read_volume(input_path)
    timings["read"] = time.perf_counter() - t0

    if segmenter is None:
        t0 = time.perf_counter()
        segmenter = make_segmenter(model_dir, device)
        timings["load_model"] = time.perf_counter() - t0
    if progress:
        progress("network", STAGE_START["network"])
    t0 = time.perf_counter()
    seg_out = segmenter.segment(volume)
    seg_total = time.perf_counter() - t0
    seg_timings = {k: float(v) for k, v in dict(getattr(seg_out, "timings", {}) or {}).items()}
    timings.update(seg_timings)
    if not seg_timings:
        timings["network"] = seg_total
    semantic = np.asarray(seg_out.semantic)
    if semantic.shape != volume.shape:
        raise RuntimeError(f"the segmenter returned shape {semantic.shape} for a volume of {volume.shape}")
    _check_spine(semantic, input_path)

    report = _report_skeleton(volume, input_path)
    report["model"] = _jsonable(dict(getattr(segmenter, "info", {}) or {}))
    report["timings_s"] = timings
    stages = _Stages(report, progress)

    given = getattr(seg_out, "labels", None)
    if given is not None:  # a reader's label map: levels as named there, no automatic labelling
        lab = stages.run("labelling", lambda: _label_from_labels(given, volume, seg_out.label_confidence))
    else:
        lab = stages.run("labelling", lambda: _label(semantic, volume, getattr(seg_out, "probability", None),
                                                     _sacrum_class(segmenter)))
    if lab is not None:
        report["warnings"].extend(_jsonable(list(getattr(lab, "warnings", []) or [])))
        report["numbering"] = _jsonable(getattr(lab, "numbering", None))
        if not getattr(lab, "vertebrae", None) and not getattr(lab, "discs", None):
            raise InputError(f"{input_path}: no vertebral level could be identified; is this a sagittal lumbar "
                             "spine MRI?")
        if given is None:  # a reader's own label map is taken as it is
            _check_lumbar_chain(lab, semantic, volume, input_path)
        if getattr(lab, "labels", None) is not None:
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
    t0 = time.perf_counter()
    if labels is not None:
        # One uint8 label image on the source grid, made in one pass, serves both files: the NIfTI
        # is written first, then the same image takes the seg.nrrd header (no second copy).
        src_img = volume.to_source_image(labels, dtype=np.uint8)
        _atomic_write(out_dir / SEGMENTATION, lambda p: _write_nifti(src_img, p))
        outputs["segmentation"] = SEGMENTATION
        timings["write_nifti"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        from lvp.io.seg_nrrd import write_seg_nrrd

        _atomic_write(out_dir / SEG_NRRD, lambda p: write_seg_nrrd(src_img, p, in_place=True))
        outputs["segmentation_seg_nrrd"] = SEG_NRRD
        timings["write_seg_nrrd"] = time.perf_counter() - t0
    else:
        sem_img = volume.to_source_image(semantic, dtype=np.uint8)
        _atomic_write(out_dir / SEMANTIC, lambda p: _write_nifti(sem_img, p))
        outputs["semantic"] = SEMANTIC
        timings["write_nifti"] = time.perf_counter() - t0

    report["structures"] = _structure_entries(volume, labels, lab) if labels is not None else []
    report["levels"] = _level_entries(lab, meas, grades, scan) if lab is not None else []

    dicom_source = None
    if labels is not None and dicom_out and volume.meta.get("format") == "dicom":
        dicom_source = stages.run("dicom", lambda: _write_dicom(volume, labels, report, out_dir))
    if html:
        figure = stages_figure(stages, volume, labels if labels is not None else semantic, report)
        t0 = time.perf_counter()
        from lvp.report.html import render_html

        # The page states the time to the report; writing the page itself is a few milliseconds.
        timings["total"] = time.perf_counter() - t_start
        page = render_html(report, *(figure or (None,)))
        _atomic_write(out_dir / REPORT_HTML, lambda p: p.write_text(page, encoding="utf-8"))
        outputs["report_html"] = REPORT_HTML
        timings["write_html"] = time.perf_counter() - t0
    if dicom_source is not None and report["status"] != "complete":  # the figure failed after the SR
        _write_dicom(volume, labels, report, out_dir, dicom_source, seg=False)
    timings["write"] = time.perf_counter() - t_write
    timings["total"] = time.perf_counter() - t_start
    report["timings_s"] = {k: round(float(v), 4) for k, v in timings.items()}
    report = _jsonable(report)
    validate_report(report)
    text = json.dumps(report, indent=1, allow_nan=False)
    _atomic_write(out_dir / REPORT_JSON, lambda p: p.write_text(text, encoding="utf-8"))
    if progress:
        progress("done", STAGE_START["done"])
    return report


def stages_figure(stages: _Stages, volume: Volume, labels: np.ndarray, report: dict) -> tuple | None:
    """Draw the report figure as a stage of its own (a failing figure makes the report partial).

    Returns ``(png, names, evidence)`` for :func:`lvp.report.html.render_html`, or None.
    """
    from lvp.report.html import evidence_overlay, figure_labels, sagittal_figure_png

    points = [(lv["level"], lv["center_lps"]) for lv in report["levels"] if lv["center_lps"] is not None]
    points += [(s["name"], s["center_lps"]) for s in report["structures"]
               if s["kind"] == "vertebra" and s["center_lps"] is not None]

    def draw(lab: np.ndarray) -> tuple:
        marks = evidence_overlay(volume, report["levels"])
        return sagittal_figure_png(volume, lab), figure_labels(volume, points), marks

    if report["status"] != "complete":
        # Still draw the figure of what exists: it is what the reader needs to see why it failed.
        try:
            return draw(labels if labels.max(initial=0) > 3 else np.zeros_like(labels))
        except Exception:  # noqa: BLE001
            return None
    return stages.run("figure", lambda: draw(labels))


def _write_dicom(volume: Volume, labels: np.ndarray, report: dict, out_dir: Path, source: Any = None,
                 seg: bool = True) -> Any:
    """The DICOM SEG of ``labels`` and the SR of ``report``, in the input's study; returns the source."""
    from lvp.io.dicom_seg import source_series, write_dicom_seg
    from lvp.io.dicom_sr import write_dicom_sr

    source = source or source_series(volume.meta)
    if seg:
        _atomic_write(out_dir / DICOM_SEG, lambda p: write_dicom_seg(volume.to_source_array(labels), source, p))
        report["outputs"]["dicom_seg"] = DICOM_SEG
    _atomic_write(out_dir / DICOM_SR, lambda p: write_dicom_sr(_jsonable(report), source, p))
    report["outputs"]["dicom_sr"] = DICOM_SR
    return source


# The post-processing modules are imported inside their stages: a broken one then makes the
# report partial with that stage named, and `lvp --help` stays fast.
def _label(semantic: np.ndarray, volume: Volume, probability: np.ndarray | None,
           sacrum_class: bool | None = None) -> Any:
    from lvp.labelling import label_levels

    return label_levels(semantic, volume, probability=probability, sacrum_class=sacrum_class)


def _sacrum_class(segmenter: Any) -> bool | None:
    """Whether the model has a sacrum class (its models.json ``classes``); None when unknown."""
    entry = getattr(segmenter, "entry", None)
    classes = (getattr(entry, "data", None) or {}).get("classes") if entry is not None else None
    if classes is None:
        return None
    return "sacrum" in {str(v) for v in classes.values()}


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
