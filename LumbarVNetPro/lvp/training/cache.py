"""Pre-resampled training data: every labelled case on the cache grid, in one compressed npz.

Images are stored normalised (:func:`lvp.preprocess.normalise_intensity`) and quantised to
uint8, labels as network classes. The cache holds what the network sees, so it can be carried
to a training machine without SimpleITK or the original files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lvp.preprocess import grid_shape_for, normalise_intensity, resample


def build_cache(roots: list[Path], out: Path, spacing: tuple[float, float, float], max_cases: int = 0,
                derived_labels: Path | None = None) -> Path:
    """Resample every labelled case under ``roots`` to ``spacing`` and write ``out`` (npz).

    With ``derived_labels``, a case's ``<case>_labels5.nii.gz`` there (classes 0-4, incl. the
    derived sacrum of :mod:`lvp.training.sacrum`) replaces its harmonised reference labels.
    """
    from lvp.datasets import discover_cases, find_derived_labels, load_case, load_derived_labels

    arrays: dict[str, np.ndarray] = {}
    meta = {"spacing": list(spacing), "cases": [], "derived_labels": str(derived_labels or "")}
    n = 0
    for root in roots:
        for case in discover_cases(root):
            if case.labels is None or case.scheme not in ("lvp3", "spider"):
                continue  # partial label schemes are for evaluation only
            vol, sem, _ = load_case(case)
            derived = find_derived_labels(derived_labels, case.case_id)
            if derived is not None:
                sem = load_derived_labels(derived, vol.shape)
            shape = grid_shape_for(vol.shape, vol.spacing, spacing)
            img = normalise_intensity(resample(vol.array.astype(np.float32), shape))
            lab = resample(sem, shape, labels=True)
            arrays[f"img_{case.case_id}"] = np.round(img.numpy() * 255).astype(np.uint8)
            arrays[f"lab_{case.case_id}"] = lab.numpy().astype(np.uint8)
            meta["cases"].append(case.case_id)
            n += 1
            if max_cases and n >= max_cases:
                break
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return out


def load_cache(path: Path) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``(meta, {case_id: (image uint8, labels uint8)})`` from a cache file."""
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        cases = {cid: (z[f"img_{cid}"], z[f"lab_{cid}"]) for cid in meta["cases"]}
    return meta, cases
