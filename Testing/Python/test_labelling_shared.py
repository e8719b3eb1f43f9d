import numpy as np
import pytest

from lvp.labelling import label_levels
from lvp.labels import DISC, VERTEBRA
from lvp.validation.cases import load_canonical, read_gradings


def test_spider_sample_discs_counted_from_the_bottom(sample_case):
    folder = sample_case.parent
    vol = load_canonical(sample_case)
    sem = load_canonical(folder / "spider_sample_labels.nii.gz").array.astype(np.uint8)
    lab = label_levels(sem, vol)
    grades = read_gradings(folder / "spider_sample_gradings.csv")
    assert len(lab.discs) == len(grades)
    assert lab.discs[-1].name == "L5-S" and lab.discs[-2].name == "L4-L5"
    # Every disc and vertebra voxel of the mask gets a level (T11 and below) or is above T11.
    assert (lab.labels[sem == DISC] > 0).mean() > 0.8
    assert (lab.labels[sem == VERTEBRA] > 0).mean() > 0.8


@pytest.mark.shared_data
def test_mrs_discs_only_layout(shared_data):
    folder = shared_data / "mrs-ivd-t2"
    case = sorted(folder.glob("*_labels.nii.gz"))[0]
    ref = load_canonical(case).array
    vol = load_canonical(str(case).replace("_labels", "_image"))
    lab = label_levels((ref > 0).astype(np.uint8) * DISC, vol)
    # MRS numbers discs 1 = L5/S1 ... 5 = L1/L2.
    expected = {1: "L5-S", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2"}
    for d in lab.discs:
        idx = tuple(np.round(vol.lps_to_index(d.centroid_lps)).astype(int))
        if ref[idx] > 0:
            assert d.name == expected[int(ref[idx])]


@pytest.mark.shared_data
def test_chu_bodies_only_layout(shared_data):
    folder = shared_data / "chu-vb-t2"
    case = sorted(folder.glob("*_labels.nii.gz"))[0]
    ref = load_canonical(case).array
    vol = load_canonical(str(case).replace("_labels", "_image"))
    lab = label_levels((ref > 0).astype(np.uint8) * VERTEBRA, vol)
    # Seven bodies T11..L5, top = T11 (the label numbers are not in level order).
    assert [v.name for v in lab.vertebrae] == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    # No sacrum below the bodies: the numbering check (not a warning any more) says L5 is assumed.
    assert lab.numbering["confident"] is False
    assert any("lowest vertebra is assumed to be L5" in r for r in lab.numbering["reasons"])
