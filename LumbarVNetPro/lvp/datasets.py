"""Case discovery and label harmonisation for the training / evaluation data layouts.

Layouts recognised under a data folder (searched recursively, one level of sub-folders):

* ``spider-t2-space``: ``<case>_t2.nii.gz`` + ``<case>_labels.nii.gz`` (1 vertebra, 2 disc, 3 canal)
  + optional ``<case>_gradings.csv``; discs numbered from the bottom when needed.
* SPIDER original: ``images/<case>_t2.mha`` + ``masks/<case>_t2.mha`` with the SPIDER scheme:
  vertebrae 1-25 (from the bottom), spinal canal 100, discs 201-225 (201 = most caudal disc).
* ``mrs-ivd-t2``: ``<case>_image.nii.gz`` + ``_labels.nii.gz``, discs by level 1 L5/S1 ... 5 L1/L2.
* ``chu-vb-t2``: ``<case>_image.nii.gz`` + ``_labels.nii.gz``, 7 vertebral bodies T11..L5 whose
  label numbers are not in level order (ordered here by position, top = T11).
* anything else ``*.nii.gz`` / ``*.mha`` / ``*.nrrd`` without labels: image only.

Every scheme is harmonised to the network classes of :mod:`lvp.labels` (0 background,
1 vertebra, 2 disc, 3 canal) plus a *level reference*: which structure carries which level
name (``"L4-L5"``, ``"L3"``), used to score level identification.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from lvp.errors import InputError
from lvp.labels import CANAL, DISC, DISCS_FROM_BOTTOM, VERTEBRA

VERTEBRAE_FROM_BOTTOM = ("S", "L5", "L4", "L3", "L2", "L1", "T12", "T11")
CHU_LEVELS_TOP_DOWN = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")

SCHEMES = ("lvp3", "spider", "mrs-ivd", "chu-vb", "none")
# Which network classes a scheme's labels fully annotate (others are unknown, not background).
ANNOTATED_CLASSES = {
    "lvp3": (VERTEBRA, DISC, CANAL),
    "spider": (VERTEBRA, DISC, CANAL),
    "mrs-ivd": (DISC,),
    "chu-vb": (),  # vertebral bodies only: no class is annotated as the network defines it
    "none": (),
}
# Small islands left over in masks (annotation artefacts) are not counted as structures.
MIN_COMPONENT_MM3 = 200.0


@dataclass
class Case:
    """One image with its (optional) labels and where they come from."""

    case_id: str
    dataset: str
    image: Path
    labels: Path | None = None
    scheme: str = "none"
    gradings: Path | None = None

    @property
    def annotated_classes(self) -> tuple[int, ...]:
        """Network classes whose reference is complete in this case's labels."""
        return ANNOTATED_CLASSES[self.scheme]


@dataclass
class LevelReference:
    """Reference structures with level names: name -> centroid (canonical voxel index)."""

    discs: dict[str, np.ndarray] = field(default_factory=dict)
    vertebrae: dict[str, np.ndarray] = field(default_factory=dict)


def _case_number(name: str) -> tuple:
    m = re.search(r"(\d+)", name)
    return (re.sub(r"\d+", "", name), int(m.group(1)) if m else -1, name)


def discover_cases(root: str | Path) -> list[Case]:
    """All cases under ``root`` in any of the recognised layouts (sorted, stable)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"data folder {root} does not exist")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    cases: list[Case] = []
    seen: set[Path] = set()
    for folder in folders:
        for case in _cases_in(folder):
            if case.image not in seen:
                seen.add(case.image)
                cases.append(case)
    return sorted(cases, key=lambda c: (c.dataset, _case_number(c.case_id)))


def _cases_in(folder: Path) -> Iterable[Case]:
    # SPIDER original layout.
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        for img in sorted((folder / "images").glob("*.mha")):
            mask = folder / "masks" / img.name
            yield Case(img.stem, "spider", img, mask if mask.exists() else None, "spider" if mask.exists() else "none")
        return
    for img in sorted(folder.glob("*_t2.nii.gz")):
        cid = img.name[: -len("_t2.nii.gz")]
        lab = folder / f"{cid}_labels.nii.gz"
        grd = folder / f"{cid}_gradings.csv"
        yield Case(cid, folder.name, img, lab if lab.exists() else None, "lvp3" if lab.exists() else "none",
                   grd if grd.exists() else None)
    for img in sorted(folder.glob("*_image.nii.gz")):
        cid = img.name[: -len("_image.nii.gz")]
        lab = folder / f"{cid}_labels.nii.gz"
        scheme = "mrs-ivd" if "mrs" in folder.name.lower() else "chu-vb" if "chu" in folder.name.lower() else "none"
        if not lab.exists():
            scheme = "none"
        yield Case(cid, folder.name, img, lab if lab.exists() else None, scheme)
    known = {c for c in folder.glob("*_t2.nii.gz")} | {c for c in folder.glob("*_image.nii.gz")} | {
        c for c in folder.glob("*_labels.nii.gz")}
    for pattern in ("*.nii.gz", "*.nii", "*.mha", "*.nrrd"):
        for img in sorted(folder.glob(pattern)):
            if img not in known and folder.name not in ("images", "masks"):
                yield Case(img.name.split(".")[0], folder.name, img)


def harmonise(labels: np.ndarray, scheme: str) -> np.ndarray:
    """Map a label array of ``scheme`` to network classes (uint8: 0 bg, 1 vertebra, 2 disc, 3 canal)."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, dtype=np.uint8)
    if scheme == "lvp3":
        for c in (VERTEBRA, DISC, CANAL):
            out[lab == c] = c  # any other value (artefacts) stays background
    elif scheme == "spider":
        out[(lab >= 1) & (lab <= 25)] = VERTEBRA
        out[lab == 100] = CANAL
        out[(lab >= 201) & (lab <= 225)] = DISC
    elif scheme == "mrs-ivd":
        out[(lab >= 1) & (lab <= 5)] = DISC
    elif scheme == "chu-vb":
        out[lab > 0] = VERTEBRA
    elif scheme != "none":
        raise InputError(f"unknown label scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    return out


def _centroids_of(mask: np.ndarray, min_voxels: int) -> list[np.ndarray]:
    comp, n = ndimage.label(mask)
    if n == 0:
        return []
    sizes = np.bincount(comp.ravel())[1:]
    cents = ndimage.center_of_mass(mask, comp, range(1, n + 1))
    return [np.asarray(c) for c, s in zip(cents, sizes) if s >= min_voxels]


def level_reference(labels: np.ndarray, scheme: str, spacing: tuple[float, float, float]) -> LevelReference:
    """Level names of the reference structures (canonical voxel-index centroids).

    Discs numbered from the bottom follow SPIDER's convention (the most caudal disc is L5-S);
    Chu vertebral bodies are ordered by position, top = T11.
    """
    lab = np.asarray(labels)
    ref = LevelReference()
    min_vox = int(MIN_COMPONENT_MM3 / float(np.prod(spacing)))
    if scheme == "mrs-ivd":
        for value in range(1, 6):
            if (lab == value).any():
                ref.discs[DISCS_FROM_BOTTOM[value - 1]] = np.asarray(ndimage.center_of_mass(lab == value))
    elif scheme == "spider":
        for value in range(201, 226):
            if (lab == value).any() and value - 201 < len(DISCS_FROM_BOTTOM):
                ref.discs[DISCS_FROM_BOTTOM[value - 201]] = np.asarray(ndimage.center_of_mass(lab == value))
    elif scheme == "lvp3":
        # Axis 1 points inferior: the largest si index is the most caudal.
        discs = sorted(_centroids_of(lab == DISC, min_vox), key=lambda c: -c[1])
        for name, c in zip(DISCS_FROM_BOTTOM, discs):
            ref.discs[name] = c
    elif scheme == "chu-vb":
        values = [v for v in np.unique(lab) if v > 0]
        cents = {v: np.asarray(ndimage.center_of_mass(lab == v)) for v in values}
        ordered = sorted(values, key=lambda v: cents[v][1])  # top (smallest si index) first
        if len(ordered) == len(CHU_LEVELS_TOP_DOWN):
            for name, v in zip(CHU_LEVELS_TOP_DOWN, ordered):
                ref.vertebrae[name] = cents[v]
    return ref


def read_gradings(path: str | Path) -> list[dict]:
    """Rows of a SPIDER gradings CSV (``IVD label`` 1 = most caudal disc) with the disc's level name."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            k = int(row["IVD label"])
            row["level"] = DISCS_FROM_BOTTOM[k - 1] if 1 <= k <= len(DISCS_FROM_BOTTOM) else None
            rows.append(row)
    return rows


def load_case(case: Case):
    """Read a case: ``(volume, semantic or None, raw canonical labels or None)``.

    ``volume`` is a :class:`lvp.io.volume.Volume`; the label arrays are on its canonical grid.
    """
    import SimpleITK as sitk  # imported here so that training machines without SimpleITK can use the rest

    from lvp.io.volume import canonical_volume

    try:
        image = sitk.ReadImage(str(case.image))
    except RuntimeError as err:
        raise InputError(f"cannot read {case.image}: {err}") from err
    volume = canonical_volume(image, meta={"case_id": case.case_id, "path": str(case.image)})
    # canonical_volume may return a view of the SimpleITK buffer: own the memory.
    volume.array = np.array(volume.array, copy=True)
    if case.labels is None:
        return volume, None, None
    limg = sitk.ReadImage(str(case.labels))
    raw = np.array(canonical_volume(limg).array, copy=True)
    del limg
    if raw.shape != volume.shape:
        raise InputError(f"{case.labels} has shape {raw.shape}, its image {volume.shape}")
    return volume, harmonise(raw, case.scheme), raw


def derived_labels_path(folder: str | Path, case_id: str) -> Path:
    """Where case ``case_id``'s derived label map lives in ``folder``: ``<case>_labels5.nii.gz``
    (written by :func:`lvp.training.sacrum.write_derived_labels`).
    """
    return Path(folder) / f"{case_id}_labels5.nii.gz"


def find_derived_labels(folder: str | Path | None, case_id: str) -> Path | None:
    """The derived label file of ``case_id`` in ``folder``; None when no folder is given or the case has none."""
    if not folder:
        return None
    path = derived_labels_path(folder, case_id)
    return path if path.is_file() else None


def load_derived_labels(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A derived label map (e.g. ``<case>_labels5.nii.gz``, classes 0-4) on its canonical grid.

    ``shape`` (the case image's canonical shape) is checked when given.
    """
    import SimpleITK as sitk

    from lvp.io.volume import canonical_volume

    try:
        lab = np.array(canonical_volume(sitk.ReadImage(str(path))).array, dtype=np.uint8, copy=True)
    except RuntimeError as err:
        raise InputError(f"cannot read derived labels {path}: {err}") from err
    if shape is not None and tuple(lab.shape) != tuple(shape):
        raise InputError(f"derived labels {path} have shape {lab.shape}, the image {tuple(shape)}")
    return lab
