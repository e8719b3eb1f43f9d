import numpy as np
import pytest
from phantom_helpers import labelled

from lvp.labels import DISC
from lvp.planes import scan_planes
from lvp.validation.cases import load_canonical
from lvp.validation.planes import plane_errors


@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_planes_match_known_discs(tilt):
    ph, vol, lab, _ = labelled(tilt_deg=tilt, orientation="PIR")
    planes = scan_planes(vol, lab)
    assert list(planes) == [d.name for d in ph.discs]
    for t in ph.discs:
        p = planes[t.name]
        angle = np.degrees(np.arccos(min(1.0, abs(float(p.normal_lps @ t.normal_lps)))))
        assert angle < 2.5  # voxelisation of a tilted disc leaves ~1-2 degrees
        assert np.linalg.norm(p.center_lps - t.center_lps) < max(vol.spacing)
        assert abs(p.axis_u_lps @ p.normal_lps) < 1e-6 and abs(p.axis_v_lps @ p.normal_lps) < 1e-6
        assert p.axis_u_lps[0] > 0 and p.axis_v_lps[1] > 0  # u to the left, v to posterior
        d = p.to_dict()
        assert set(d) == {"center_lps", "normal_lps", "axis_u_lps", "axis_v_lps", "thickness_mm", "extent_mm"}


def test_sample_case_planes_agree_with_endplate_fit(sample_case):
    vol = load_canonical(sample_case)
    sem = load_canonical(sample_case.parent / "spider_sample_labels.nii.gz").array.astype(np.uint8)
    rows = plane_errors(sem, sem == DISC, vol)
    assert len(rows) >= 5
    assert np.median([r["angle_deg"] for r in rows]) < 5.0
    assert max(r["offset_mm"] for r in rows) < 1.0
