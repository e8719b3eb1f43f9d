"""``--axial``: sagittal structures resampled onto an axial series, canal area per covered level."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lvp.io.read import read_volume
from lvp.pipeline import MaskSegmenter, run_inference
from lvp.report.schema import validate_report


def _axial_copy(sample_case, path):
    """The sample re-gridded as an axial series: same voxel centres, slices along inferior."""
    vol = read_volume(sample_case)
    canon = vol.to_sitk()
    a = vol.affine[:3, :3] / np.array(vol.spacing)
    ref = sitk.Image([vol.shape[0], vol.shape[2], vol.shape[1]], sitk.sitkUInt8)  # x L, y P, z I
    ref.SetOrigin(canon.GetOrigin())
    ref.SetSpacing((vol.spacing[0], vol.spacing[2], vol.spacing[1]))
    ref.SetDirection(tuple(np.stack([a[:, 0], a[:, 2], a[:, 1]], axis=1).ravel()))
    axial = sitk.Resample(canon, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, canon.GetPixelID())
    sitk.WriteImage(axial, str(path))
    return vol


def test_axial_canal_area_per_level(sample_case, tmp_path):
    axial_path = tmp_path / "axial.nii.gz"
    vol = _axial_copy(sample_case, axial_path)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask), axial=axial_path)
    validate_report(report)
    assert report["status"] == "complete", report["error"]
    levels = report["axial"]["levels"]
    assert [lv["level"] for lv in levels] == [lv["level"] for lv in report["levels"]]
    labels = read_volume(tmp_path / "out" / "segmentation.nii.gz", validate=False).array
    for lv, rep in zip(levels, report["levels"]):
        assert lv["covered"]
        # The axial slice nearest the disc centre is the canonical row through it: same canal area.
        row = int(round(float(vol.lps_to_index(np.array(rep["center_lps"]))[1])))
        assert lv["slice_index"] == row
        expected = np.count_nonzero(labels[:, row, :] == 2) * vol.spacing[0] * vol.spacing[2]
        assert lv["canal_area_mm2"] == pytest.approx(expected)
        assert 0.0 <= lv["obliquity_deg"] <= 90.0


def test_axial_slab_that_misses_a_level(sample_case, tmp_path):
    vol = read_volume(sample_case)
    axial_path = tmp_path / "axial.nii.gz"
    _axial_copy(sample_case, axial_path)
    img = sitk.ReadImage(str(axial_path))
    top = img[:, :, : vol.shape[1] // 3]  # only the upper third of the spine
    sitk.WriteImage(top, str(axial_path))
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = run_inference(sample_case, tmp_path / "out", segmenter=MaskSegmenter(mask), axial=axial_path)
    covered = [lv["covered"] for lv in report["axial"]["levels"]]
    assert covered[0] and not covered[-1]
    for lv in report["axial"]["levels"]:
        assert (lv["canal_area_mm2"] is None) == (not lv["covered"])
