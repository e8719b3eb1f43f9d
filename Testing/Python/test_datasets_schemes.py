"""Case discovery and label harmonisation for every supported layout and label scheme."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from lvp.datasets import (
    DISCS_FROM_BOTTOM,
    discover_cases,
    harmonise,
    level_reference,
    load_case,
    read_gradings,
)
from lvp.errors import InputError


def _write(arr: np.ndarray, path, spacing=(1.0, 1.0, 1.0)) -> None:
    # Canonical (lr, si, ap) arrays written so that canonical_volume gives them back unchanged:
    # numpy (z, y, x) = (lr, si, ap) with direction x->P, y->I, z->L.
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing[::-1])
    img.SetDirection((0, 0, 1, 1, 0, 0, 0, -1, 0))
    sitk.WriteImage(img, str(path))


def _stack(levels_top_down: list[int], shape=(6, 80, 30)) -> np.ndarray:
    """Label blocks stacked from the top (small si index) down, 10 voxels each, gaps of 2."""
    arr = np.zeros(shape, dtype=np.int16)
    for k, value in enumerate(levels_top_down):
        arr[:, 2 + 12 * k : 12 + 12 * k, 5:25] = value
    return arr


def test_harmonise_every_scheme():
    spider = np.array([0, 1, 7, 25, 100, 201, 209, 225, 300])
    assert harmonise(spider, "spider").tolist() == [0, 1, 1, 1, 3, 2, 2, 2, 0]
    lvp3 = np.array([0, 1, 2, 3, 28, 255])  # stray values (annotation artefacts) -> background
    assert harmonise(lvp3, "lvp3").tolist() == [0, 1, 2, 3, 0, 0]
    assert harmonise(np.array([0, 1, 3, 5, 6]), "mrs-ivd").tolist() == [0, 2, 2, 2, 0]
    assert harmonise(np.array([0, 4, 7]), "chu-vb").tolist() == [0, 1, 1]
    with pytest.raises(InputError):
        harmonise(spider, "nonsense")


def test_levels_of_each_scheme():
    # Chu: label numbers out of level order; top block must be T11.
    chu = _stack([5, 2, 7, 1, 3, 6, 4])
    ref = level_reference(chu, "chu-vb", (1.0, 1.0, 1.0))
    assert list(ref.vertebrae) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    assert ref.vertebrae["T11"][1] < ref.vertebrae["L5"][1]
    # MRS: label 1 is L5/S1 wherever it lies.
    mrs = _stack([5, 4, 3, 2, 1])
    ref = level_reference(mrs, "mrs-ivd", (1.0, 1.0, 1.0))
    assert ref.discs["L5-S"][1] > ref.discs["L1-L2"][1]
    # SPIDER original: 201 is the most caudal disc.
    sp = _stack([203, 202, 201])
    ref = level_reference(sp, "spider", (1.0, 1.0, 1.0))
    assert ref.discs["L5-S"][1] > ref.discs["L3-L4"][1]
    # Harmonised SPIDER: disc components numbered from the bottom.
    lvp3 = _stack([2, 2, 2, 2])
    ref = level_reference(lvp3, "lvp3", (1.0, 1.0, 1.0))
    assert list(ref.discs) == list(DISCS_FROM_BOTTOM[:4])
    assert ref.discs["L5-S"][1] == max(c[1] for c in ref.discs.values())


def test_discover_all_layouts(tmp_path):
    img = np.random.default_rng(0).integers(0, 4000, (6, 80, 30)).astype(np.int16)
    spider = tmp_path / "SPIDER" / "images"
    spider.mkdir(parents=True)
    (tmp_path / "SPIDER" / "masks").mkdir()
    _write(img, spider / "1_t2.mha")
    _write(_stack([2, 201, 1, 100]), tmp_path / "SPIDER" / "masks" / "1_t2.mha")
    shared = tmp_path / "spider-t2-space"
    shared.mkdir()
    _write(img, shared / "spider9_t2.nii.gz")
    _write(_stack([1, 2, 3]).astype(np.uint8), shared / "spider9_labels.nii.gz")
    with open(shared / "spider9_gradings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Patient", "IVD label", "Pfirrman grade"])
        w.writerow([9, 1, 3])
    for folder, stem in (("mrs-ivd-t2", "mrs1"), ("chu-vb-t2", "chu1")):
        (tmp_path / folder).mkdir()
        _write(img, tmp_path / folder / f"{stem}_image.nii.gz")
        _write(_stack([1, 2]), tmp_path / folder / f"{stem}_labels.nii.gz")
    (tmp_path / "sct").mkdir()
    _write(img, tmp_path / "sct" / "t2_lumbar.nii.gz")

    cases = {c.case_id: c for c in discover_cases(tmp_path)}
    assert {k: c.scheme for k, c in cases.items()} == {
        "1_t2": "spider", "spider9": "lvp3", "mrs1": "mrs-ivd", "chu1": "chu-vb", "t2_lumbar": "none"}
    vol, sem, raw = load_case(cases["1_t2"])
    assert vol.shape == img.shape and np.array_equal(vol.array, img)
    assert set(np.unique(sem)) == {0, 1, 2, 3}
    assert np.array_equal(sem == 3, raw == 100)
    assert read_gradings(cases["spider9"].gradings)[0]["level"] == "L5-S"
    _, sem_mrs, _ = load_case(cases["mrs1"])
    assert set(np.unique(sem_mrs)) == {0, 2}
    assert load_case(cases["t2_lumbar"])[1] is None


@pytest.mark.shared_data
def test_shared_data_cases(shared_data):
    cases = discover_cases(shared_data)
    by = {}
    for c in cases:
        by.setdefault(c.dataset, []).append(c)
    assert len(by["spider-t2-space"]) == 31 and all(c.scheme == "lvp3" and c.gradings for c in by["spider-t2-space"])
    assert len(by["mrs-ivd-t2"]) == 4 and len(by["chu-vb-t2"]) == 9
    chu = next(c for c in by["chu-vb-t2"])
    vol, sem, raw = load_case(chu)
    ref = level_reference(raw, chu.scheme, vol.spacing)
    tops = [ref.vertebrae[n][1] for n in ("T11", "T12", "L1", "L2", "L3", "L4", "L5")]
    assert tops == sorted(tops)  # cranial -> caudal


def test_derived_labels_are_found_by_the_name_they_are_written_under(tmp_path):
    """One naming convention for ``<case>_labels5.nii.gz``: the writer's path is what the readers find."""
    from lvp.datasets import derived_labels_path, find_derived_labels, load_derived_labels

    assert find_derived_labels(None, "1_t2") is None
    assert find_derived_labels(tmp_path, "1_t2") is None  # the folder holds no map of this case
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1:3, 2:4, 2:5] = 4
    path = derived_labels_path(tmp_path, "1_t2")
    sitk.WriteImage(sitk.GetImageFromArray(lab), str(path))
    assert find_derived_labels(str(tmp_path), "1_t2") == path
    assert find_derived_labels(tmp_path, "2_t2") is None
    loaded = load_derived_labels(path)
    assert int((loaded == 4).sum()) == int((lab == 4).sum())
    with pytest.raises(InputError, match="shape"):
        load_derived_labels(path, (1, 2, 3))
