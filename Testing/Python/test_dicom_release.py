"""Issue 13, DICOM outputs: the image's voxels are released after the report figure, before the
DICOM SEG and SR (their last user is the figure), and ``lvp infer --no-dicom`` writes neither.

Real files and the real pipeline: the bundled sample written as a DICOM series, its reference
mask standing in for the network; the real readers and writers, observed (not replaced).
"""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_writer import write_series

import lvp.io.dicom_seg as dicom_seg
import lvp.pipeline as pipeline
from lvp.cli import main
from lvp.io.read import read_volume
from lvp.pipeline_stages import ReleasedVoxels, release_voxels


@pytest.fixture(scope="module")
def dicom_folder(sample_case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dcm")
    write_series(sitk.ReadImage(str(sample_case)), folder)
    return folder


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):  # a view keeps its base's memory alive
        array = array.base
    return array


def test_image_voxels_are_freed_before_the_seg_is_written(dicom_folder, sample_case, tmp_path, monkeypatch):
    seen = {}

    def reading(path, *args, **kwargs):  # the real reader; its volume and voxels observed
        volume = read_volume(path, *args, **kwargs)
        seen["volume"], seen["voxels"] = volume, weakref.ref(_root(volume.array))
        seen["shape_read"] = volume.shape
        return volume

    real_seg = dicom_seg.write_dicom_seg

    def writing(labels, source, path, **kwargs):  # the real SEG writer, called when the voxels are gone
        gc.collect()
        seen["alive_at_seg"] = seen["voxels"]() is not None
        with pytest.raises(RuntimeError, match="voxels were released"):
            np.asarray(seen["volume"].array)
        seen["shape"] = seen["volume"].shape
        return real_seg(labels, source, path, **kwargs)

    monkeypatch.setattr(pipeline, "read_volume", reading)
    monkeypatch.setattr(dicom_seg, "write_dicom_seg", writing)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = pipeline.run_inference(dicom_folder, tmp_path / "out", segmenter=pipeline.MaskSegmenter(mask))
    assert report["status"] == "complete", report["error"]
    assert seen["alive_at_seg"] is False  # no stage kept a reference to the image's voxels
    assert seen["shape"] == seen["shape_read"]  # the grid is still known
    assert (tmp_path / "out" / report["outputs"]["dicom_seg"]).is_file()
    assert (tmp_path / "out" / report["outputs"]["report_html"]).is_file()


def test_released_voxels_refuse_every_use(sample_case):
    volume = read_volume(sample_case)
    shape, dtype, affine = volume.shape, volume.array.dtype, volume.affine.copy()
    release_voxels(volume, "after the figure")
    assert isinstance(volume.array, ReleasedVoxels)
    assert volume.shape == shape and volume.array.dtype == dtype and volume.array.ndim == 3
    np.testing.assert_array_equal(volume.affine, affine)  # the geometry stays
    for use in (lambda a: np.asarray(a), lambda a: a[0], lambda a: a.max(), lambda a: a.nbytes,
                lambda a: a.astype(np.float32), lambda a: len(a), lambda a: list(a), lambda a: np.mean(a)):
        with pytest.raises(RuntimeError, match=r"voxels were released \(after the figure\)"):
            use(volume.array)


def _strip(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("timings_s", "created", "outputs")}


def test_no_dicom_writes_no_seg_or_sr_and_the_rest_alike(dicom_folder, sample_case, tmp_path, capsys):
    mask = str(sample_case.with_name("spider_sample_labels.nii.gz"))
    assert main(["infer", str(dicom_folder), "-o", str(tmp_path / "with"), "--semantic", mask, "-q"]) == 0
    assert main(["infer", str(dicom_folder), "-o", str(tmp_path / "without"), "--semantic", mask, "-q",
                 "--no-dicom"]) == 0
    with_dicom = json.loads((tmp_path / "with" / "report.json").read_text())
    without = json.loads((tmp_path / "without" / "report.json").read_text())
    assert {"dicom_seg", "dicom_sr"} <= set(with_dicom["outputs"])
    assert not {"dicom_seg", "dicom_sr"} & set(without["outputs"])
    assert not list((tmp_path / "without").glob("*.dcm"))
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == \
        sorted(p.name for p in (tmp_path / "with").iterdir() if p.suffix != ".dcm")
    assert "timings_s" in without and "dicom" not in without["timings_s"]
    assert _strip(without) == _strip(with_dicom)
    s1 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "with" / "segmentation.nii.gz")))
    s2 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "without" / "segmentation.nii.gz")))
    np.testing.assert_array_equal(s1, s2)


def test_no_dicom_with_store_is_refused(tmp_path, capsys):
    code = main(["infer", "dicomweb+http://127.0.0.1:9/dicom-web", "--study", "1.2.3", "--store", "--no-dicom",
                 "-o", str(tmp_path / "out")])
    assert code == 2
    assert "--no-dicom" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_dicom_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert "--no-dicom" in capsys.readouterr().out


def test_a_dicom_failure_after_a_failed_figure_keeps_both_named(dicom_folder, sample_case, tmp_path, monkeypatch):
    """The figure's failure stays the report's failed stage; the DICOM stage's own failure after it
    is a warning, not lost and not overwriting the first."""
    import lvp.report.html as report_html

    def broken_figure(*args, **kwargs):  # fault injection
        raise RuntimeError("figure exploded")

    def broken_seg(*args, **kwargs):  # fault injection
        raise RuntimeError("SEG encoder exploded")

    monkeypatch.setattr(report_html, "sagittal_figure_png", broken_figure)
    monkeypatch.setattr(dicom_seg, "write_dicom_seg", broken_seg)
    mask = sample_case.with_name("spider_sample_labels.nii.gz")
    report = pipeline.run_inference(dicom_folder, tmp_path / "out", segmenter=pipeline.MaskSegmenter(mask))
    assert report["status"] == "partial" and report["failed_stage"] == "figure"
    assert "figure exploded" in report["error"]
    failed = [w for w in report["warnings"] if w["code"] == "stage_failed"]
    assert len(failed) == 1 and "dicom failed too" in failed[0]["message"]
    assert "SEG encoder exploded" in failed[0]["message"]
    assert not list((tmp_path / "out").glob("*.dcm"))
    assert "dicom_seg" not in report["outputs"] and "dicom_sr" not in report["outputs"]
