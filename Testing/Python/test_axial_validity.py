"""``--axial`` areas are valid only inside the sagittal coverage; the canal grade says where it comes from."""

from __future__ import annotations

import pytest
import SimpleITK as sitk
from test_infer_axial import _axial_copy

from lvp.pipeline import MaskSegmenter, run_inference
from lvp.validation.phantom import make_phantom


def test_thin_sagittal_slab_areas_are_withheld(sample_case, tmp_path):
    axial_path = tmp_path / "axial.nii.gz"
    _axial_copy(sample_case, axial_path)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask), axial=axial_path,
                           html=False)
    for ax, lv in zip(report["axial"]["levels"], report["levels"]):
        assert ax["source"].startswith("sagittal segmentation resampled")
        if not ax["area_valid"]:
            assert ax["why_not"]
            assert lv["grades"]["canal_stenosis"]["grade"] is None
        else:  # a narrow (cord-level) sac can lie wholly inside the slab
            canal = lv["grades"]["canal_stenosis"]
            assert canal["grade"] is None and "cord level" in canal["reason"] or \
                "axial series slice" in (canal["source"] or "")
    # The lumbar sac is wider than this 15-slice slab: no lumbar level gets an area grade.
    lumbar = [ax for ax in report["axial"]["levels"] if ax["level"].startswith("L")]
    assert lumbar and not any(ax["area_valid"] for ax in lumbar)


@pytest.fixture(scope="module")
def wide_iso(tmp_path_factory):
    """A 1 mm isotropic phantom covering the whole spine left-right (a valid section everywhere)."""
    ph = make_phantom(spacing=(1.0, 1.0, 1.0), stenoses={"L3-L4": 2.5})
    folder = tmp_path_factory.mktemp("iso")
    sitk.WriteImage(ph.image, str(folder / "image.nii.gz"))
    sitk.WriteImage(ph.semantic, str(folder / "semantic.nii.gz"))
    return ph, folder


def test_valid_axial_area_grades_the_canal_and_names_its_source(wide_iso, tmp_path):
    ph, folder = wide_iso
    axial_path = tmp_path / "axial.nii.gz"
    _axial_copy(folder / "image.nii.gz", axial_path)
    report = run_inference(folder / "image.nii.gz", tmp_path / "out",
                           segmenter=MaskSegmenter(folder / "semantic.nii.gz"), axial=axial_path, html=False)
    assert report["status"] == "complete", report["error"]
    by_level = {lv["level"]: lv for lv in report["levels"]}
    for ax in report["axial"]["levels"]:
        assert ax["area_valid"], ax
        canal = by_level[ax["level"]]["grades"]["canal_stenosis"]
        if ax["level"].startswith("T"):
            assert canal["grade"] is None and "cord level" in canal["reason"]
        else:
            assert canal["grade"] is not None and canal["source"].startswith(f"axial series slice {ax['slice_index']}")
            assert canal["value"] == pytest.approx(ax["canal_area_mm2"])
    narrowed = by_level["L3-L4"]["grades"]["canal_stenosis"]
    assert narrowed["value"] < by_level["L1-L2"]["grades"]["canal_stenosis"]["value"]


def test_axial_slab_beyond_the_sagittal_coverage_is_withheld(wide_iso, tmp_path):
    """An axial series wider than a thin sagittal slab: the sac there is not the sagittal segmentation's."""
    ph, folder = wide_iso
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    semantic = sitk.ReadImage(str(folder / "semantic.nii.gz"))
    axial_path = tmp_path / "axial.nii.gz"
    _axial_copy(folder / "image.nii.gz", axial_path)  # the axial series covers the full width
    # The sagittal input keeps only the central 12 mm: the dural sac (about 15 mm wide) is cut.
    size = list(image.GetSize())  # the phantom's x index axis is left-right
    centre = size[0] // 2
    crop = [centre - 6, 0, 0]
    extract = [12, size[1], size[2]]
    sitk.WriteImage(sitk.RegionOfInterest(image, extract, crop), str(tmp_path / "slab.nii.gz"))
    sitk.WriteImage(sitk.RegionOfInterest(semantic, extract, crop), str(tmp_path / "slab_sem.nii.gz"))
    report = run_inference(tmp_path / "slab.nii.gz", tmp_path / "out",
                           segmenter=MaskSegmenter(tmp_path / "slab_sem.nii.gz"), axial=axial_path, html=False)
    assert report["status"] == "complete", report["error"]
    for ax, lv in zip(report["axial"]["levels"], report["levels"]):
        assert ax["covered"] and not ax["area_valid"]
        assert "beyond the sagittal coverage" in ax["why_not"]
        assert lv["grades"]["canal_stenosis"]["grade"] is None
