"""The module logic with the real core CLI in a child process (slicer-core scene)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_helpers import SAMPLE_DIR, slicer

pytest_plugins = ("slicer_helpers",)  # the reference_result and scene_with_sample fixtures

SAMPLE_LABELS = SAMPLE_DIR / "spider_sample_labels.nii.gz"
HAVE_CORE_GRADING = all(importlib.util.find_spec(m) for m in ("lvp.labelling", "lvp.measure", "lvp.grading"))


def test_failed_run_shows_a_readable_one_line_error(tmp_path):
    from LumbarVNetPro import LumbarVNetProLogic
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.process import ProcessFailed

    scene = slicer.vtkMRMLScene()
    image = sitk.GetImageFromArray(np.zeros((2, 3, 3), np.float32))
    sitk.WriteImage(image, str(tmp_path / "tiny.nii.gz"))
    volume = lvpscene.volume_node_from_file(scene, tmp_path / "tiny.nii.gz", "tiny")
    logic = LumbarVNetProLogic(scene=scene, python=sys.executable)
    seen = []
    with pytest.raises(ProcessFailed) as err:
        logic.process(volume, tmp_path / "out", device="cpu", progress=lambda s, p: seen.append(s))
    message = str(err.value)
    assert message and "\n" not in message and "Traceback" not in message
    assert seen and seen[0] in ("load_model", "read")  # stage messages arrived from the child
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_export_for_core_writes_semantic_classes(scene_with_sample, reference_result, tmp_path):
    from LumbarVNetProLib.logic import CaseLogic

    scene, volume, _ = scene_with_sample
    logic = CaseLogic(scene)
    nodes = logic.loadResult(reference_result, volume, "c")
    labels_path, semantic_path = logic.exportForCore(nodes.segmentation, volume, tmp_path)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
    semantic = sitk.GetArrayFromImage(sitk.ReadImage(str(semantic_path)))
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_LABELS)))
    np.testing.assert_array_equal(
        labels, sitk.GetArrayFromImage(sitk.ReadImage(str(reference_result / "segmentation.nii.gz")))
    )
    # Every labelled voxel maps back to the sample's own class (vertebra 1, disc 2, canal 3).
    labelled = labels > 0
    np.testing.assert_array_equal(semantic[labelled], original[labelled])
    assert set(np.unique(semantic)) <= {0, 1, 2, 3}


@pytest.mark.skipif(not HAVE_CORE_GRADING, reason="core labelling/measure/grading not available yet")
def test_recompute_gives_the_edited_measurement(scene_with_sample, tmp_path):
    """Real lvp infer (--semantic: no model) -> import -> erase half a disc -> Recompute -> edited volume."""
    from test_slicer_scene import _edit_segment

    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.process import ProcessRunner, infer_command

    scene, volume, _ = scene_with_sample
    out = tmp_path / "infer"
    args = infer_command(SAMPLE_DIR / "spider_sample_t2.nii.gz", out, "cpu", python=sys.executable)
    running = ProcessRunner().start(args + ["--semantic", str(SAMPLE_LABELS), "--no-html"])
    assert running.wait(timeout_s=300) == 0, running.error_message()
    logic = CaseLogic(scene, python=sys.executable)
    nodes = logic.loadResult(out, volume, "c")
    report = lvpscene.load_report(out)
    from LumbarVNetProLib.grades import rows_from_report

    rows = rows_from_report(report)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    disc_value = report["levels"][len(report["levels"]) // 2]["disc_label"]
    disc_name = next(s["name"] for s in report["structures"] if s["label"] == disc_value)
    disc = labels == disc_value
    keep = disc.copy()
    keep[: int(np.nonzero(disc.any(axis=(1, 2)))[0].mean())] = False  # drop the slices on one side
    seg = nodes.segmentation.GetSegmentation()
    _edit_segment(lvpscene, scene, nodes.segmentation, volume, seg.GetSegmentIdBySegmentName(disc_name), keep)
    new_rows, changes, new_report = logic.recompute(nodes, volume, rows, tmp_path / "recompute")
    voxel = float(np.prod(sitk.ReadImage(str(out / "segmentation.nii.gz")).GetSpacing()))
    edited = next(s for s in new_report["structures"] if s["label"] == disc_value)
    before = next(s for s in report["structures"] if s["label"] == disc_value)
    assert edited["volume_mm3"] < before["volume_mm3"]
    assert edited["volume_mm3"] == pytest.approx(keep.sum() * voxel, rel=0.05)
    assert isinstance(changes, list) and len(new_rows) >= 1


def test_recompute_diff_keeps_reader_modifications():
    from LumbarVNetProLib.grades import MODIFIED, apply_recompute, rows_from_report

    def report(h, c, value):
        grades = {
            "herniation": {"grade": h, "value": value, "measurement": "posterior_displacement_mm"},
            "canal_stenosis": {"grade": c, "value": 120.0, "measurement": "canal_area_mm2"},
        }
        return {"levels": [{"level": "L4-L5", "grades": grades}]}

    rows = rows_from_report(report(1, 0, 2.0))
    rows[1].reader_grade = 2  # the reader modified canal stenosis 0 -> 2
    assert rows[1].decision == MODIFIED
    new_rows, changes = apply_recompute(rows, report(2, 1, 3.5))
    by_key = {r.key: r for r in new_rows}
    assert by_key[("L4-L5", "herniation")].reader_grade == 2  # accepted grade follows the AI
    assert by_key[("L4-L5", "canal_stenosis")].reader_grade == 2  # the reader's own grade stays
    assert {(c.pathology, c.old_grade, c.new_grade) for c in changes} == {
        ("herniation", 1, 2),
        ("canal_stenosis", 0, 1),
    }
    assert next(c for c in changes if c.pathology == "herniation").new_value == 3.5
