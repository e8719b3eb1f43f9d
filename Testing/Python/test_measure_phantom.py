import numpy as np
import pytest
from phantom_helpers import labelled

from lvp.measure import measure_levels
from lvp.validation.phantom import Herniation

SPEC = {
    "herniations": {"L4-L5": Herniation(5.0, 10.0), "L1-L2": Herniation(7.0, 5.0, 3.0)},
    "stenoses": {"L3-L4": 8.0},
    "recesses": {"L4-L5": (2.0, 6.0), "L2-L3": (4.0, 3.0)},
    "disc_heights": {"L5-S": (12.0, 7.0)},
    "pfirrmann": {"L5-S": 4, "L3-L4": 1},
}
PAIRS = [
    ("disc_height_anterior_mm", "height_anterior_mm"),
    ("disc_height_middle_mm", "height_middle_mm"),
    ("disc_height_posterior_mm", "height_posterior_mm"),
    ("posterior_displacement_mm", "herniation_displacement_mm"),
    ("canal_ap_diameter_mm", "canal_ap_mm"),
# No lateral recess depth: the recess is bony and not segmented (issue 15).
]


@pytest.fixture(scope="module", params=[{}, {"tilt_deg": 14.0, "orientation": "ASR", "noise": 0.04}])
def measured(request):
    ph, vol, lab, _ = labelled(spacing=(1.5, 0.8, 0.8), **SPEC, **request.param)
    return ph, vol, measure_levels(vol, lab)


def test_lengths_within_a_voxel(measured):
    ph, vol, levels = measured
    voxel = max(vol.spacing)
    for truth in ph.discs:
        m = levels[truth.name]
        for name, attr in PAIRS:
            assert m.value(name) == pytest.approx(getattr(truth, attr), abs=voxel), (truth.name, name)


def test_base_width_area_index_and_signal(measured):
    ph, vol, levels = measured
    lr = vol.spacing[0]
    for name in ("L4-L5", "L1-L2"):
        t = ph.disc(name)
        assert levels[name].value("herniation_base_width_mm") == pytest.approx(t.herniation_base_width_mm, abs=lr + 0.5)
    for t in ph.discs:
        m = levels[t.name]
        # 1.5 mm slices: the axial reformat is not a valid section, so no area (and no recess depth).
        assert m.value("dural_sac_area_mm2") is None and not m.section["valid"]
        assert not any(k.startswith("lateral_recess") for k in m.items)
        assert m.value("disc_height_index") == pytest.approx(t.disc_height_index, abs=0.04)
        assert m.value("disc_signal_ratio") == pytest.approx(t.signal_ratio, abs=0.08)


def test_points_are_in_patient_space_and_serialise(measured):
    ph, vol, levels = measured
    m = levels["L4-L5"]
    d = m.to_dict()
    assert set(d["posterior_displacement_mm"]) == {"value", "unit", "points_lps"}
    a, b = (np.array(p) for p in d["disc_height_middle_mm"]["points_lps"])
    # The two endplate points are one disc height apart and straddle the disc centre.
    assert np.linalg.norm(a - b) == pytest.approx(d["disc_height_middle_mm"]["value"], abs=0.01)
    assert np.linalg.norm((a + b) / 2 - ph.disc("L4-L5").center_lps) < 3.0


def test_dural_sac_area_on_a_valid_isotropic_section():
    ph, vol, lab, _ = labelled(spacing=(1.0, 1.0, 1.0), **SPEC)
    levels = measure_levels(vol, lab)
    for t in ph.discs:
        m = levels[t.name]
        assert m.section["valid"] and m.section["disc_whole"]
        # Area within the band of one voxel around the outline (perimeter ~ 70 mm).
        assert m.value("dural_sac_area_mm2") == pytest.approx(t.dural_sac_area_mm2, abs=0.5 * 70 * max(vol.spacing))
        region = next(e for e in m.evidence if e["measurement"] == "dural_sac_area_mm2")
        assert region["kind"] == "region" and len(region["points_lps"]) >= 8


def test_evidence_items_name_their_plane_and_input_slice(measured):
    ph, vol, levels = measured
    m = levels["L4-L5"]
    kinds = {e["kind"] for e in m.evidence}
    assert {"caliper", "vector", "region", "coverage"} <= kinds
    for e in m.evidence:
        assert 0 <= e["slice_index"] < vol.shape[0] and e["plane"]
    ap = next(e for e in m.evidence if e["measurement"] == "canal_ap_diameter_mm")
    a, b = (np.asarray(p) for p in ap["points_lps"])
    assert np.linalg.norm(a - b) == pytest.approx(m.value("canal_ap_diameter_mm"), abs=0.01)
