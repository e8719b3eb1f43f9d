"""Assembling ``report.json``: its skeleton, the structure and level entries, plain-JSON values,
and the names of the files a result folder holds.

:mod:`lvp.pipeline` runs the stages; this module turns their results into the report's fields
(the schema is ``report.schema.json``, beside this module). Nothing here reads or writes files.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lvp import __version__
from lvp.io.volume import Volume
from lvp.labels import CANAL_LABEL, SACRUM_LABEL, STRUCTURES, level_of
from lvp.report.schema import SCHEMA_NAME, SCHEMA_VERSION

if TYPE_CHECKING:
    from lvp.labelling.types import Labelling

# The files of a result folder (report.json "outputs" names them).
SEGMENTATION = "segmentation.nii.gz"
SEG_NRRD = "segmentation.seg.nrrd"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
SEMANTIC = "semantic.nii.gz"
DICOM_SEG = "segmentation.dcm"  # DICOM input only (lvp.io.dicom_seg)
DICOM_SR = "report.sr.dcm"


def report_skeleton(volume: Volume | None, input_path: Path) -> dict:
    """The report before any stage ran: identity, input geometry, empty results, status complete."""
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


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays to Python, tuples to lists, NaN/inf to None."""
    # The plain types first (most of a report's values): the general checks below cost ~1 µs
    # each per value, and a report holds tens of thousands of values.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is list:
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    return value


def point(p: Any) -> list[float] | None:
    """A point as three floats (or None)."""
    return None if p is None else [float(v) for v in np.asarray(p, dtype=float).ravel()[:3]]


def structure_entries(volume: Volume, labels: np.ndarray, lab: Labelling) -> list[dict]:
    """``structures`` of report.json: every labelled vertebra and disc, then sacrum and canal."""
    voxel_mm3 = float(np.prod(volume.spacing))
    entries = []
    for item in [*lab.vertebrae, *lab.discs]:
        value = int(item.label)
        if value not in STRUCTURES:
            continue  # a level without an output label value (above T11) is not in the segmentation
        entries.append({
            "label": value,
            "name": str(item.name),
            "kind": str(item.kind or STRUCTURES[value].kind),
            "center_lps": point(item.centroid_lps),
            "volume_mm3": float(item.voxels) * voxel_mm3,
            "confidence": jsonable(item.confidence),
        })
    present = {e["label"] for e in entries}
    # The labelling's crop holds every labelled voxel: the rest of the grid is background.
    crop = lab.crop or (slice(None),) * 3
    region = labels[crop]
    offset = [s.indices(n)[0] for s, n in zip(crop, labels.shape)]
    for value, name, kind in ((SACRUM_LABEL, "sacrum", "sacrum"), (CANAL_LABEL, "spinal canal", "canal")):
        if value in present:
            continue
        count, centre = count_and_centre(region == value, offset)
        if count:
            entries.append({"label": value, "name": name, "kind": kind,
                            "center_lps": point(volume.index_to_lps(centre)),
                            "volume_mm3": count * voxel_mm3, "confidence": None})
    return entries


def count_and_centre(mask: np.ndarray, offset: list[int]) -> tuple[int, np.ndarray]:
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


def level_entries(lab: Labelling, measurements: dict | None, grades: dict | None, planes: dict | None) -> list[dict]:
    """``levels`` of report.json: one row per disc level, expected levels not found included."""
    levels = []
    for disc in lab.discs:
        if int(disc.label) not in STRUCTURES:
            continue
        name = str(disc.name)
        level = level_of(name)
        meas = (measurements or {}).get(level)
        levels.append({
            "level": level,
            "disc_label": int(disc.label),
            "center_lps": point(disc.centroid_lps),
            "confidence": jsonable(disc.confidence),
            "measurements": jsonable(meas) if meas is not None else {},
            "grades": jsonable((grades or {}).get(level, {})),
            "scan_plane": jsonable((planes or {}).get(level)),
            # Quality and evidence (issue 15): why a grade was withheld, what was drawn where.
            "status": "found",
            "notes": jsonable(list(getattr(meas, "notes", []) or [])),
            "evidence": jsonable(list(getattr(meas, "evidence", []) or [])),
            "section": jsonable(dict(getattr(meas, "section", {}) or {})),
        })
    from lvp.grading import with_missing_levels

    return with_missing_levels(levels, lab)
