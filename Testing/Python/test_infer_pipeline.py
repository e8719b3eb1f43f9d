"""run_inference end to end on the bundled sample, with its reference mask standing in for the network.

The post-processing stages (labelling, measurement, grading, planes) are the real ones.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import SimpleITK as sitk
from seg_nrrd_reader import read_seg_nrrd

from lvp.errors import InputError
from lvp.labels import DISC_LABELS, STRUCTURES, VERTEBRA_LABELS
from lvp.pipeline import MaskSegmenter, run_inference
from lvp.report.schema import validate_report


@pytest.fixture(scope="module")
def mask_path(sample_case):
    return sample_case.with_name("spider_sample_labels.nii.gz")


@pytest.fixture(scope="module")
def sample_run(sample_case, mask_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer")
    report = run_inference(sample_case, out, segmenter=MaskSegmenter(mask_path))
    return report, out


def test_outputs_are_written_and_the_report_is_valid(sample_run):
    report, out = sample_run
    validate_report(report)
    assert report["status"] == "complete", report["error"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    for key, name in report["outputs"].items():
        assert (out / name).is_file(), key
    assert not list(out.glob(".tmp-*"))
    assert report["timings_s"]["total"] >= report["timings_s"]["read"] > 0


def test_segmentation_is_on_the_input_grid_and_matches_the_classes(sample_run, sample_case, mask_path):
    report, out = sample_run
    seg = sitk.ReadImage(str(out / "segmentation.nii.gz"))
    src = sitk.ReadImage(str(sample_case))
    assert seg.GetSize() == src.GetSize()
    np.testing.assert_allclose(seg.GetOrigin(), src.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(seg.GetDirection(), src.GetDirection(), atol=1e-6)
    labels = sitk.GetArrayFromImage(seg)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path)))
    vert_values = np.isin(labels, list(VERTEBRA_LABELS.values()) + [50])
    disc_values = np.isin(labels, list(DISC_LABELS.values()))
    # Voxel for voxel on the source grid: every labelled vertebra voxel was vertebra in the mask, etc.
    assert np.all(ref[vert_values] == 1)
    assert np.all(ref[disc_values] == 2)
    assert np.all(ref[labels == 2] == 3)
    assert vert_values.sum() > 0.5 * (ref == 1).sum()
    # The Slicer file holds the same voxels and one segment per structure present.
    nrrd, segments = read_seg_nrrd(out / "segmentation.seg.nrrd")
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(nrrd), labels)
    assert {s["label_value"] for s in segments} == set(np.unique(labels)) - {0}


def test_report_levels_and_structures_agree_with_the_segmentation(sample_run):
    report, out = sample_run
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    present = set(np.unique(labels).tolist())
    assert report["levels"], "the sample has discs"
    for lv in report["levels"]:
        assert lv["disc_label"] in present
        assert STRUCTURES[lv["disc_label"]].kind == "disc"
    for st in report["structures"]:
        assert st["label"] in present
        assert st["volume_mm3"] > 0
    # Levels are listed cranial to caudal (LPS z decreases going down).
    zs = [lv["center_lps"][2] for lv in report["levels"]]
    assert zs == sorted(zs, reverse=True)
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    for lv in report["levels"]:
        assert lv["level"] in page
    # The page states the run time (written before the final total, so at most that).
    shown = re.search(r"Total time</td><td>([0-9.]+) s", page)
    assert shown and 0 < float(shown.group(1)) <= report["timings_s"]["total"] + 0.005  # shown to 0.01 s


def test_non_spine_volume_is_an_input_error_and_writes_nothing(sample_case, tmp_path):
    src = sitk.ReadImage(str(sample_case))
    empty = sitk.Image(src.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(src)
    mask = tmp_path / "empty_labels.nii.gz"
    sitk.WriteImage(empty, str(mask))
    out = tmp_path / "out"
    out.mkdir()
    earlier = out / "report.json"
    earlier.write_text('{"earlier": true}')  # a previous run's result must survive
    with pytest.raises(InputError, match="no vertebra or intervertebral disc"):
        run_inference(sample_case, out, segmenter=MaskSegmenter(mask))
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert json.loads(earlier.read_text()) == {"earlier": True}


def test_mask_on_another_grid_is_refused(sample_case, tmp_path):
    small = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    mask = tmp_path / "small.nii.gz"
    sitk.WriteImage(small, str(mask))
    with pytest.raises(InputError, match="not on the image's voxel grid"):
        run_inference(sample_case, tmp_path / "o", segmenter=MaskSegmenter(mask))


def test_a_failing_stage_gives_a_partial_report(sample_case, mask_path, tmp_path, monkeypatch):
    import lvp.pipeline as pipeline

    def broken(volume, lab):  # fault injection: a real stage failure cannot be provoked on demand
        raise ValueError("measurement exploded")

    monkeypatch.setattr(pipeline, "_measure", broken)
    report = run_inference(sample_case, tmp_path, segmenter=MaskSegmenter(mask_path))
    validate_report(report)
    assert report["status"] == "partial"
    assert report["failed_stage"] == "measure"
    assert "measurement exploded" in report["error"]
    # Stages after the failure do not run; the segmentation is still saved.
    assert "grade" not in report["timings_s"] and "planes" not in report["timings_s"]
    assert all(lv["grades"] == {} for lv in report["levels"])
    assert (tmp_path / "segmentation.nii.gz").is_file()
    page = (tmp_path / "report.html").read_text()
    assert "PARTIAL RESULT" in page and "measure" in page


def test_network_on_a_non_spine_volume_is_refused(tmp_path):
    """A head-like volume: the network finds a few spine-like blobs, which must not become levels."""
    rng = np.random.default_rng(0)
    lr, si, ap = np.meshgrid(np.arange(20), np.arange(240), np.arange(220), indexing="ij")
    inside = ((lr - 10) / 30) ** 2 + ((si - 120) / 100) ** 2 + ((ap - 110) / 90) ** 2 < 1
    arr = np.where(inside, 120 + 60 * np.sin(si / 9) * np.cos(ap / 13), 5) + rng.normal(0, 8, inside.shape)
    img = sitk.GetImageFromArray(np.clip(arr, 0, None).astype(np.float32))
    img.SetSpacing((1.0, 1.0, 3.0))
    img.SetDirection((0, 0, 1, 1, 0, 0, 0, -1, 0))  # sagittal: x -> P, y -> I, z -> L
    path = tmp_path / "head.nii.gz"
    sitk.WriteImage(img, str(path))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no lumbar spine was recognised"):
        run_inference(path, out, device="cpu")
    assert not out.exists() or not any(out.iterdir())


def test_undefined_voxels_are_named_in_the_report(sample_case, mask_path, tmp_path):
    """A partly-NaN NIfTI: ITK reads the NaNs as 0 without a word; the report must say how many."""
    src = sitk.ReadImage(str(sample_case))
    arr = sitk.GetArrayFromImage(src).astype(np.float32)
    arr[7, 100:103, 200] = np.nan
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(src)
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(img, str(path))
    report = run_inference(path, tmp_path / "out", segmenter=MaskSegmenter(mask_path))
    validate_report(report)
    (warning,) = [w for w in report["warnings"] if w["code"] == "nonfinite_voxels"]
    assert warning["message"].startswith("3 voxel(s)")
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert warning in on_disk["warnings"]


def test_dicom_series_missing_its_first_slices_warns_in_the_report(sample_case, mask_path, tmp_path):
    from dicom_writer import write_series

    src = sitk.ReadImage(str(sample_case))
    write_series(src, tmp_path / "dcm")
    import pydicom

    for f in sorted((tmp_path / "dcm").iterdir()):
        ds = pydicom.dcmread(f)
        del ds.ImagesInAcquisition  # no declared count: only the instance numbers tell
        ds.save_as(f)
    sorted((tmp_path / "dcm").iterdir())[0].unlink()
    mask = sitk.ReadImage(str(mask_path))[:, :, 1:]  # the mask of the slices still there
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    report = run_inference(tmp_path / "dcm", tmp_path / "out", segmenter=MaskSegmenter(tmp_path / "mask.nii.gz"))
    assert report["input"]["format"] == "dicom"
    (warning,) = [w for w in report["warnings"] if w["code"] == "slices_may_be_missing"]
    assert "first 1 slice(s)" in warning["message"]


def test_progress_says_done_once_when_the_result_is_in_place(sample_case, mask_path, tmp_path):
    """The stages are reported as they start; "done" comes once, last, after the folder holds report.json."""
    out = tmp_path / "out"
    seen = []
    run_inference(sample_case, out, segmenter=MaskSegmenter(mask_path), html=False,
                  progress=lambda stage, fraction: seen.append((stage, fraction, (out / "report.json").is_file())))
    stages = [s for s, _, _ in seen]
    assert stages[0] == "read" and stages.count("done") == 1 and seen[-1] == ("done", 1.0, True)
    assert not any(placed for _, _, placed in seen[:-1])  # nothing announced in place before it is
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions)
