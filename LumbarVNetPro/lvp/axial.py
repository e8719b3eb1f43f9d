"""The optional axial series (``lvp infer --axial SERIES``): sagittal structures seen on it.

The axial series is read (any plane accepted), the sagittal-derived label map is resampled onto
its grid (nearest neighbour, through LPS coordinates, so the two series need only share the
patient frame), and for every disc level whose centre the axial slab covers, the axial slice
nearest that centre gives the dural sac (canal) cross-section area. The area is that of the
*sagittal* segmentation cut by the axial slice, not an independent axial segmentation; the
angle between the axial slice and the disc's scan plane is reported beside it because an oblique
cut enlarges the area by about 1/cos(angle).

Because the area comes from the sagittal segmentation, it is valid only where the sagittal series
covers the whole dural sac on that axial slice, on a fine enough grid: ``area_valid`` is True only
when the canal's cross-section (plus a 1 mm margin) lies inside the sagittal coverage and the
sagittal voxels are at most :data:`lvp.measure.canal.ISO_MAX_MM` (thicker slices draw the sac's
outline in steps). Every level says where its value comes from (``source``) and, when the area
is withheld, why (``why_not``); the canal grade uses only valid areas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lvp.io.read import read_volume
from lvp.io.volume import Volume
from lvp.labels import CANAL_LABEL, STRUCTURES
from lvp.measure.canal import ISO_MAX_MM


def resample_labels(volume: Volume, labels: np.ndarray, target: Volume) -> np.ndarray:
    """Labels on ``volume``'s grid resampled (nearest) onto ``target``'s canonical grid."""
    src = volume.to_sitk(labels.astype(np.uint8, copy=False))
    ref = target.to_sitk(np.zeros(target.shape, np.uint8))
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


SOURCE = "sagittal segmentation resampled onto the axial series (not an axial segmentation)"


def _area_valid(canal: np.ndarray, covered: np.ndarray, spacing, fine: bool) -> tuple[bool, str | None]:
    """Whether the canal section on an axial slice is whole inside the sagittal coverage (with 1 mm)."""
    if not canal.any():
        return False, "no canal on this axial slice"
    if not fine:
        return False, f"sagittal voxels thicker than {ISO_MAX_MM} mm: the sac's outline is drawn in steps"
    margin = max(1, int(np.ceil(1.0 / min(spacing[0], spacing[2]))))
    # Beyond the axial image's own edge nothing is covered either (pad before growing the sac).
    grown = ndimage.binary_dilation(np.pad(canal, margin), iterations=margin)
    if not np.pad(covered, margin)[grown].all():
        return False, "the dural sac reaches beyond the sagittal coverage on this slice"
    return True, None


def axial_report(volume: Volume, lab: Any, axial_path: str | Path, planes: dict | None) -> dict:
    """The report's ``axial`` section: per disc level, coverage and canal area on the axial slice."""
    axial = read_volume(axial_path, require_sagittal=False)
    labels = resample_labels(volume, np.asarray(lab.labels), axial)
    # Where the sagittal series has voxels at all, on the axial grid (1 = covered).
    coverage = resample_labels(volume, np.ones(volume.shape, np.uint8), axial) > 0
    fine = float(max(volume.spacing)) <= ISO_MAX_MM
    # The axial slice normal is the canonical si axis (axis 1) of the axial volume.
    slice_normal = axial.affine[:3, 1] / np.linalg.norm(axial.affine[:3, 1])
    pixel_mm2 = axial.spacing[0] * axial.spacing[2]
    levels = []
    for disc in lab.discs:
        if int(disc.label) not in STRUCTURES:
            continue  # as in the report's levels: a disc without an output value is not listed
        name = str(disc.name)
        idx = axial.lps_to_index(np.asarray(disc.centroid_lps, dtype=float))
        inside = bool(np.all(idx >= -0.5) and np.all(idx <= np.array(axial.shape) - 0.5))
        entry: dict[str, Any] = {"level": name, "covered": inside, "slice_index": None,
                                 "distance_mm": None, "canal_area_mm2": None, "obliquity_deg": None,
                                 "area_valid": False, "source": SOURCE,
                                 "why_not": None if inside else "the axial series does not cover the disc centre"}
        if inside:
            k = int(np.clip(round(float(idx[1])), 0, axial.shape[1] - 1))
            entry["slice_index"] = k
            entry["distance_mm"] = abs(float(idx[1]) - k) * axial.spacing[1]
            canal = labels[:, k, :] == CANAL_LABEL
            entry["canal_area_mm2"] = float(np.count_nonzero(canal) * pixel_mm2)
            entry["area_valid"], entry["why_not"] = _area_valid(canal, coverage[:, k, :], axial.spacing, fine)
            plane = (planes or {}).get(name)
            normal = getattr(plane, "normal_lps", None) if plane is not None else None
            if normal is not None:
                cos = abs(float(np.dot(slice_normal, np.asarray(normal, float) / np.linalg.norm(normal))))
                entry["obliquity_deg"] = float(np.degrees(np.arccos(min(cos, 1.0))))
        levels.append(entry)
    return {
        "path": str(axial_path),
        "series_uid": axial.meta.get("series_uid"),
        "size": list(axial.source.size),
        "spacing": list(axial.source.spacing),
        "method": "sagittal segmentation resampled (nearest) onto the axial slice nearest each disc centre; "
        "the area is valid only where the sagittal coverage holds the whole sac (area_valid)",
        "levels": levels,
    }
