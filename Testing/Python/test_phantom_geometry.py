import numpy as np
import pytest
from phantom_helpers import read

from lvp.labels import DISC_LABELS
from lvp.validation.phantom import Herniation, make_phantom


def test_orientation_is_undone_by_canonical_volume():
    a = make_phantom(spacing=(2.0, 1.2, 1.2), orientation="LPS")
    b = make_phantom(spacing=(2.0, 1.2, 1.2), orientation="RAI")
    assert a.image.GetDirection() != b.image.GetDirection()
    va, sa, _ = read(a)
    vb, sb, _ = read(b)
    assert sa.shape == sb.shape
    # Same anatomy on the canonical grid: class volumes agree exactly.
    assert np.array_equal(np.bincount(sa.ravel(), minlength=4), np.bincount(sb.ravel(), minlength=4))
    assert np.allclose(va.affine, vb.affine, atol=1e-3)


def test_levels_match_truth_and_twelve_bit_noise():
    ph = make_phantom(spacing=(2.0, 1.2, 1.2), noise=0.05, n_lumbar=6)
    vol, sem, lev = read(ph)
    assert vol.array.max() > 1000  # 12-bit scale, not 8-bit
    assert set(np.unique(sem)) == {0, 1, 2, 3}
    assert DISC_LABELS["L5-L6"] in np.unique(lev) and DISC_LABELS["L5-S"] in np.unique(lev)
    assert [d.name for d in ph.discs][-2:] == ["L5-L6", "L6-S"]
    for d in ph.discs:  # each true disc centre lies inside that disc's voxels
        idx = np.round(vol.lps_to_index(d.center_lps)).astype(int)
        assert lev[tuple(idx)] == d.label


def test_truth_reflects_options():
    ph = make_phantom(
        spacing=(2.0, 1.2, 1.2),
        herniations={"L4-L5": Herniation(5.0, 8.0)},
        stenoses={"L3-L4": 7.0},
        recesses={"L4-L5": (2.0, 5.0)},
        disc_heights={"L5-S": (12.0, 6.0)},
    )
    assert ph.disc("L3-L4").canal_ap_mm == pytest.approx(7.0, abs=0.1)
    assert ph.disc("L3-L4").dural_sac_area_mm2 < ph.disc("L2-L3").dural_sac_area_mm2
    assert ph.disc("L4-L5").recess_left_mm == pytest.approx(2.0, abs=0.1)
    assert ph.disc("L4-L5").recess_right_mm == pytest.approx(5.0, abs=0.1)
    ls = ph.disc("L5-S")
    assert ls.height_anterior_mm > ls.height_middle_mm > ls.height_posterior_mm
    # The herniation narrows the canal at its level.
    assert ph.disc("L4-L5").canal_ap_mm < ph.disc("L2-L3").canal_ap_mm


def test_bad_lumbar_count_is_refused():
    with pytest.raises(ValueError):
        make_phantom(n_lumbar=7)
