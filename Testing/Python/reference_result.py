"""An ``lvp infer``-shaped result folder made from the bundled sample's reference mask.

Test-only (issue 12 item 4; it used to ship as ``LumbarVNetProLib/sample.py``): the MRML tests
use it where a model's output is not the point. The folder holds ``segmentation.nii.gz``
(TotalSpineSeg label values on the input grid) and ``report.json`` (an ``lvp-report`` of this
module's own making, points in LPS). The grades are the SPIDER
radiologists' grades of the sample (``spider_sample_gradings.csv``), not a model's output, and
the report says so (``model.name == "reference-mask"``).

Only SimpleITK and numpy are used.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lvp.labels import CANAL_LABEL, DISC_LABELS, DISCS_FROM_BOTTOM, VERTEBRA_LABELS, structure

# Reference mask classes of the bundled sample.
_REF_VERTEBRA, _REF_DISC, _REF_CANAL = 1, 2, 3
# Components smaller than this are slab-edge fragments, not a disc.
_MIN_DISC_VOXELS = 1000
# SPIDER numbers discs from the caudal end; in this slab disc 1 is L5-S and disc 8 (T10-T11) has
# no LVP label, so it is left out.
_DISCS_CAUDAL_FIRST = DISCS_FROM_BOTTOM
_VERTEBRAE_CAUDAL_FIRST = ("L5", "L4", "L3", "L2", "L1", "T12", "T11")


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    image = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)))
    array = sitk.GetArrayFromImage(image)
    return array, int(array.max())


def _centroid_lps(image: sitk.Image, mask: np.ndarray) -> list[float]:
    # numpy index order is (z, y, x); ITK continuous indices are (x, y, z).
    zyx = np.argwhere(mask).mean(axis=0)
    return [float(v) for v in image.TransformContinuousIndexToPhysicalPoint([float(i) for i in zyx[::-1]])]


def _si_index_axis(image: sitk.Image) -> int:
    """The numpy axis of ``image`` that runs most nearly head-feet."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    itk_axis = int(np.argmax(np.abs(direction[2, :])))
    return 2 - itk_axis


def _read_reference_grades(csv_path: Path) -> dict[str, dict[str, int]]:
    grades: dict[str, dict[str, int]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            index = int(row["IVD label"]) - 1
            if index >= len(_DISCS_CAUDAL_FIRST):
                continue
            herniation = 2 if row["Disc herniation"] == "1" else 1 if row["Disc bulging"] == "1" else 0
            grades[_DISCS_CAUDAL_FIRST[index]] = {
                "herniation": herniation,
                "pfirrmann": int(row["Pfirrman grade"]),
                "narrowing": int(row["Disc narrowing"]),
            }
    return grades


_GRADE_NAMES = {
    "herniation": ("none", "bulge", "protrusion", "extrusion"),
    "pfirrmann": ("I", "II", "III", "IV", "V"),
    "narrowing": ("no", "yes"),
}


def tss_labels_from_reference(reference: np.ndarray, si_axis: int) -> np.ndarray:
    """Convert the sample's class mask (1 vertebra, 2 disc, 3 canal) to TotalSpineSeg values.

    Discs are the large disc components ordered along ``si_axis`` (index increasing towards the
    feet); each vertebra component takes the name of the interval between discs its centroid
    falls in.
    """
    out = np.zeros(reference.shape, dtype=np.uint8)
    out[reference == _REF_CANAL] = CANAL_LABEL
    discs, n_discs = _components(reference == _REF_DISC)
    disc_pos = []
    for i in range(1, n_discs + 1):
        voxels = np.argwhere(discs == i)
        if len(voxels) >= _MIN_DISC_VOXELS:
            disc_pos.append((float(voxels[:, si_axis].mean()), i))
    disc_pos.sort(reverse=True)  # caudal first
    for (_, comp), name in zip(disc_pos, _DISCS_CAUDAL_FIRST):
        out[discs == comp] = DISC_LABELS[name]
    boundaries = [pos for pos, _ in disc_pos]  # caudal first, decreasing
    verts, n_verts = _components(reference == _REF_VERTEBRA)
    for i in range(1, n_verts + 1):
        mask = verts == i
        pos = float(np.argwhere(mask)[:, si_axis].mean())
        # Number of disc centres lying caudal to this component: 1 -> the vertebra above L5-S.
        below = sum(1 for b in boundaries if b > pos)
        if 1 <= below <= len(_VERTEBRAE_CAUDAL_FIRST):
            out[mask] = VERTEBRA_LABELS[_VERTEBRAE_CAUDAL_FIRST[below - 1]]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _scan_plane(center: list[float], axis: np.ndarray) -> dict:
    normal = _unit(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _unit(np.cross(normal, helper))
    v = np.cross(normal, u)
    return {
        "center_lps": center,
        "normal_lps": normal.tolist(),
        "axis_u_lps": u.tolist(),
        "axis_v_lps": v.tolist(),
        "thickness_mm": 4.0,
        "extent_mm": [60.0, 60.0],
    }


def build_reference_result(image_path: Path, labels_path: Path, out_dir: Path, grades_csv: Path | None = None) -> Path:
    """Write ``segmentation.nii.gz`` and ``report.json`` for ``image_path`` from its reference mask.

    Returns ``out_dir``. Grades come from ``grades_csv`` (SPIDER format) when given.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_image = sitk.ReadImage(str(labels_path))
    reference = sitk.GetArrayFromImage(ref_image)
    si_axis = _si_index_axis(ref_image)
    labels = tss_labels_from_reference(reference, si_axis)
    seg = sitk.GetImageFromArray(labels)
    seg.CopyInformation(ref_image)
    sitk.WriteImage(seg, str(out_dir / "segmentation.nii.gz"), useCompression=True)

    voxel_mm3 = float(np.prod(ref_image.GetSpacing()))
    structures, centers = [], {}
    for value in sorted(int(v) for v in np.unique(labels) if v):
        mask = labels == value
        info = structure(value)
        centers[info.name] = _centroid_lps(ref_image, mask)
        structures.append(
            {
                "label": value,
                "name": info.name,
                "kind": info.kind,
                "center_lps": centers[info.name],
                "volume_mm3": round(float(mask.sum()) * voxel_mm3, 1),
                "confidence": 1.0,
            }
        )
    reference_grades = _read_reference_grades(Path(grades_csv)) if grades_csv else {}
    levels = []
    for name, value in DISC_LABELS.items():
        disc = f"{name} disc"
        if disc not in centers:
            continue
        upper, lower = name.split("-")
        lower = "sacrum" if lower == "S" else lower
        if upper in centers and lower in centers:
            axis = np.array(centers[upper]) - np.array(centers[lower])
        else:
            axis = np.array([0.0, 0.0, 1.0])
        grades = {}
        for pathology, grade in reference_grades.get(name, {}).items():
            grades[pathology] = {
                "grade": grade,
                "name": _GRADE_NAMES[pathology][grade - (1 if pathology == "pfirrmann" else 0)],
                "confidence": 1.0,
                "measurement": "disc_volume_mm3",
                "value": next(s["volume_mm3"] for s in structures if s["label"] == value),
                "rule": "SPIDER reference reading of the bundled sample (not a model output)",
            }
        levels.append(
            {
                "level": name,
                "disc_label": value,
                "center_lps": centers[disc],
                "confidence": 1.0,
                "measurements": {},
                "grades": grades,
                "scan_plane": _scan_plane(centers[disc], axis),
            }
        )
    report = {
        "schema": "lvp-report",
        "schema_version": "1.0",
        "lvp_version": "0.1.0",
        "status": "complete",
        "input": {
            "path": str(image_path),
            "format": "nifti",
            "series_uid": None,
            "size": list(ref_image.GetSize()),
            "spacing": list(ref_image.GetSpacing()),
            "origin": list(ref_image.GetOrigin()),
            "direction": list(ref_image.GetDirection()),
            "coordinate_system": "LPS",
        },
        "model": {"name": "reference-mask", "version": "0", "sha256": "", "runtime": "none", "device": "cpu"},
        "timings_s": {},
        "outputs": {"segmentation": "segmentation.nii.gz"},
        "structures": structures,
        "levels": levels,
        "warnings": [{"code": "reference_result", "message": "built from the sample's reference mask"}],
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return out_dir
