"""Evaluation metrics: Dice, HD95, level matching, confidence intervals, and lvp evaluate on data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lvp.cli import main
from lvp.evaluation import bootstrap_ci, dice, hd95, match_levels, wilson_ci


def _box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_dice_and_hd95():
    a = _box((20, 40, 40), (5, 10, 10), (15, 30, 30))
    b = _box((20, 40, 40), (5, 13, 10), (15, 33, 30))  # shifted 3 voxels along si
    assert dice(a, a) == 1.0 and hd95(a, a, (1, 1, 1)) == 0.0
    assert dice(a, b) == pytest.approx(2 * 17 / 40)
    h = hd95(a, b, (1.0, 1.0, 1.0))
    assert 0 < h <= 3.0
    assert hd95(a, b, (1.0, 2.0, 1.0)) == pytest.approx(2 * h)  # distances are in mm
    assert np.isnan(hd95(a, np.zeros_like(a), (1, 1, 1)))


def test_level_matching():
    ref = {"L4-L5": np.array([5.0, 100, 50]), "L5-S": np.array([5.0, 140, 50]), "L3-L4": np.array([5.0, 60, 50])}
    pred = [("L4-L5", np.array([5.0, 102, 50])), ("L4-L5", np.array([5.0, 139, 50]))]
    res = match_levels(ref, pred, (1.0, 1.0, 1.0))
    by = {m["reference"]: m for m in res["matches"]}
    assert by["L4-L5"]["correct"] and not by["L5-S"]["correct"] and by["L3-L4"]["predicted"] is None
    assert res["correct"] == 1 and res["n"] == 3
    # Bodies-only references (Chu): matched on the superior-inferior position alone.
    body = {"L4": np.array([5.0, 100, 30])}
    whole = [("L4", np.array([5.0, 104, 50]))]  # 20 voxels posterior: the posterior elements
    assert match_levels(body, whole, (1.0, 1.0, 1.0))["correct"] == 0
    assert match_levels(body, whole, (1.0, 1.0, 1.0), axes=(1,))["correct"] == 1


def test_intervals():
    lo, hi = bootstrap_ci([0.9, 0.92, 0.94, 0.91])
    assert 0.9 <= lo < hi <= 0.94
    lo, hi = wilson_ci(49, 50)
    assert lo < 0.98 < hi <= 1.0


def test_evaluate_command_on_sample(tmp_path, sample_case):
    data = tmp_path / "spider-t2-space"
    data.mkdir()
    (data / "spider50_t2.nii.gz").symlink_to(sample_case)
    (data / "spider50_labels.nii.gz").symlink_to(sample_case.with_name("spider_sample_labels.nii.gz"))
    assert main(["evaluate", "--data", str(data), "-o", str(tmp_path / "out"), "--no-levels"]) == 0
    res = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    case = res["cases"][0]
    assert set(case["classes"]) == {"vertebra", "disc", "canal"}
    assert all(0.75 < case["classes"][c]["dice"] <= 1 for c in case["classes"])
    assert (tmp_path / "out" / "evaluation.txt").read_text().count("spider50") == 1


def test_synthesised_t1_reverses_t2_relations_and_keeps_the_input():
    from lvp.evaluation import synthesise_contrast

    rng = np.random.default_rng(0)
    ref = np.zeros((4, 40, 40), np.uint8)
    ref[:, 5:15, 5:30] = 1
    ref[:, 15:20, 5:30] = 2
    ref[:, 5:35, 32:36] = 3
    img = rng.uniform(50, 300, ref.shape).astype(np.float32)  # 12-bit-like scale
    img[ref == 1], img[ref == 2], img[ref == 3] = 600, 1500, 1800  # T2: disc and CSF bright
    before = img.copy()
    t1 = synthesise_contrast(img, ref, "t1")
    assert np.array_equal(img, before)  # the caller's image is not normalised in place
    assert 0 <= t1.min() and t1.max() <= 1
    assert t1[ref == 3].mean() < t1[ref == 2].mean() < t1[ref == 1].mean()
    inv = synthesise_contrast(img, ref, "invert")
    assert inv[ref == 3].mean() < inv[ref == 1].mean()
    with pytest.raises(ValueError, match="unknown"):
        synthesise_contrast(img, ref, "pd")


def test_evaluate_scores_the_sacrum_with_derived_labels(tmp_path, sample_case, repo_root):
    """The bundled sample is spider50: its derived label map adds a sacrum score (4-class model: 0)."""
    data = tmp_path / "spider-t2-space"
    data.mkdir()
    (data / "spider50_t2.nii.gz").symlink_to(sample_case)
    (data / "spider50_labels.nii.gz").symlink_to(sample_case.with_name("spider_sample_labels.nii.gz"))
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(data), "-o", str(out), "--no-levels",
                 "--derived-labels", str(repo_root / "models" / "training-labels")]) == 0
    case = json.loads((out / "evaluation.json").read_text())["cases"][0]
    assert set(case["classes"]) == {"vertebra", "disc", "canal", "sacrum"}
    assert 0.0 <= case["classes"]["sacrum"]["dice"] <= 1.0
    assert "sacrum Dice" in (out / "evaluation.txt").read_text()
