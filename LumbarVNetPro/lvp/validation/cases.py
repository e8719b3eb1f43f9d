"""Loading the shared-data cases (``../shared/data``) on the canonical grid."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lvp.errors import InputError
from lvp.io.volume import Volume, canonical_volume


def load_canonical(path: Path | str) -> Volume:
    """Read an image and bring it to canonical orientation, owning its array.

    The array is copied so that it never refers to the buffer of the SimpleITK image, which
    is freed when the image goes out of scope.
    """
    image = sitk.ReadImage(str(path))
    volume = canonical_volume(image)
    volume.array = np.array(volume.array, copy=True)
    return volume


@dataclass
class SpiderCase:
    """One SPIDER case: image, reference semantic labels and per-disc grades (bottom first)."""

    case: str
    image: Volume
    labels: np.ndarray
    grades: list[dict[str, int]]  # index 0 = IVD label 1 = most caudal disc


def spider_case_ids(data: Path) -> list[str]:
    """Case ids (``spider11`` ...) with image, labels and gradings present, sorted by number."""
    folder = Path(data) / "spider-t2-space"
    if not folder.is_dir():
        raise InputError(f"{folder} not found: pass the shared data folder (with spider-t2-space/)")
    ids = [p.name[: -len("_gradings.csv")] for p in folder.glob("spider*_gradings.csv")]
    ids = [i for i in ids if (folder / f"{i}_t2.nii.gz").is_file() and (folder / f"{i}_labels.nii.gz").is_file()]
    return sorted(ids, key=lambda s: int("".join(c for c in s if c.isdigit()) or 0))


def read_gradings(path: Path) -> list[dict[str, int]]:
    """The gradings CSV as a list ordered by ``IVD label`` (1 = most caudal disc first)."""
    with open(path, newline="") as f:
        rows = [{k.strip(): int(float(v)) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r["IVD label"])


def load_spider_case(data: Path, case: str, labels_path: Path | None = None) -> SpiderCase:
    """Load a SPIDER case; ``labels_path`` replaces the reference labels (e.g. a prediction)."""
    folder = Path(data) / "spider-t2-space"
    image = load_canonical(folder / f"{case}_t2.nii.gz")
    labels = load_canonical(labels_path or folder / f"{case}_labels.nii.gz").array.astype(np.uint8)
    if labels.shape != image.shape:
        raise InputError(f"{case}: labels {labels.shape} and image {image.shape} differ in shape")
    return SpiderCase(case, image, labels, read_gradings(folder / f"{case}_gradings.csv"))


def tss_to_classes(labels: np.ndarray) -> np.ndarray:
    """TotalSpineSeg values (``lvp infer``'s segmentation.nii.gz) → network classes 0..3
    (:func:`lvp.labels.semantic_classes`: vertebrae and sacrum 1, discs 2, canal 3, else 0).
    """
    from lvp.labels import semantic_classes

    return semantic_classes(labels)
