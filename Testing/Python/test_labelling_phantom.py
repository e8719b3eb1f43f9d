import numpy as np
import pytest
from phantom_helpers import labelled


def _agreement(lab, lev):
    fg = lev > 0
    return float((lab.labels[fg] == lev[fg]).mean())


@pytest.mark.parametrize("options", [{}, {"tilt_deg": 15.0, "orientation": "RAI", "noise": 0.05}])
def test_normal_spine_is_labelled_exactly(options):
    ph, vol, lab, lev = labelled(**options)
    assert [v.name for v in lab.vertebrae] == [v.name for v in ph.vertebrae]
    assert [d.name for d in lab.discs] == [d.name for d in ph.discs]
    assert _agreement(lab, lev) > 0.99
    assert not [w for w in lab.warnings if w["code"] == "transitional_anatomy"]
    assert all(v.confidence >= 0.9 for v in lab.vertebrae)
    for d, t in zip(lab.discs, ph.discs):
        assert np.linalg.norm(d.centroid_lps - t.center_lps) < 1.5


def test_six_lumbar_vertebrae_are_flagged_not_renumbered():
    ph, vol, lab, lev = labelled(n_lumbar=6)
    codes = [w["code"] for w in lab.warnings]
    assert "transitional_anatomy" in codes
    # Counted from the sacrum: the lowest mobile vertebra stays L5, never silently L6.
    assert lab.vertebrae[-1].name == "sacrum" and lab.vertebrae[-2].name == "L5"
    assert all(v.confidence <= 0.6 for v in lab.vertebrae)


def test_four_lumbar_vertebrae_are_flagged():
    ph, vol, lab, lev = labelled(n_lumbar=4)
    assert "transitional_anatomy" in [w["code"] for w in lab.warnings]
    assert lab.discs[-1].name == "L5-S"


def test_missing_sacrum_assumes_l5_with_low_confidence():
    ph, vol, lab, lev = labelled(sacrum=False)
    # The retired sacrum_not_found warning is now a reason of the numbering check.
    assert lab.numbering["confident"] is False
    assert any("assumed to be L5" in r for r in lab.numbering["reasons"])
    assert [v.name for v in lab.vertebrae] == [v.name for v in ph.vertebrae]
    assert max(v.confidence for v in lab.vertebrae) < 0.5


def test_probability_lowers_confidence():
    from phantom_helpers import read

    from lvp.labelling import label_levels
    from lvp.validation.phantom import make_phantom

    vol, sem, _ = read(make_phantom(spacing=(2.0, 1.2, 1.2)))
    sure = label_levels(sem, vol, np.ones(sem.shape, np.float32))
    unsure = label_levels(sem, vol, np.full(sem.shape, 0.5, np.float32))
    assert all(u.confidence < s.confidence for u, s in zip(unsure.discs, sure.discs))


def test_empty_segmentation_warns():
    from phantom_helpers import read

    from lvp.labelling import label_levels
    from lvp.validation.phantom import make_phantom

    vol, sem, _ = read(make_phantom(spacing=(2.0, 1.2, 1.2)))
    lab = label_levels(np.zeros_like(sem), vol)
    assert lab.discs == [] and lab.warnings[0]["code"] == "empty_segmentation"
