"""The module logic with the real core CLI in a child process (slicer-core scene)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_helpers import SAMPLE_DIR, slicer

pytest_plugins = ("slicer_helpers", "slicer_app")  # fixtures: reference_result, scene_with_sample, slicer_app

SAMPLE_LABELS = SAMPLE_DIR / "spider_sample_labels.nii.gz"
HAVE_CORE_GRADING = all(importlib.util.find_spec(m) for m in ("lvp.labelling", "lvp.measure", "lvp.grading"))


def test_failed_run_shows_a_readable_one_line_error(tmp_path, slicer_app):
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


def test_export_for_core_writes_the_label_map(scene_with_sample, reference_result, tmp_path):
    from LumbarVNetProLib.logic import CaseLogic

    scene, volume, _ = scene_with_sample
    logic = CaseLogic(scene)
    nodes = logic.loadResult(reference_result, volume, "c")
    labels_path = logic.exportForCore(nodes.segmentation, volume, tmp_path)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
    np.testing.assert_array_equal(
        labels, sitk.GetArrayFromImage(sitk.ReadImage(str(reference_result / "segmentation.nii.gz")))
    )


@pytest.fixture(scope="module")
def semantic_result(tmp_path_factory):
    """Real ``lvp infer --semantic`` on the sample (no model): a TotalSpineSeg result folder."""
    from LumbarVNetProLib.process import ProcessRunner, infer_command

    out = tmp_path_factory.mktemp("infer")
    args = infer_command(SAMPLE_DIR / "spider_sample_t2.nii.gz", out, "cpu", python=sys.executable)
    running = ProcessRunner().start(args + ["--semantic", str(SAMPLE_LABELS), "--no-html"])
    assert running.wait(timeout_s=300) == 0, running.error_message()
    return out


@pytest.mark.skipif(not HAVE_CORE_GRADING, reason="core labelling/measure/grading not available yet")
def test_recompute_keeps_renamed_level_and_gives_the_edited_measurement(scene_with_sample, semantic_result, tmp_path):
    """lvp infer --semantic -> import -> erase half a disc, rename a level -> Recompute (--labels)."""
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.grades import describe_changes, rows_from_report
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.selftest import edit_segment

    scene, volume, _ = scene_with_sample
    out = semantic_result
    logic = CaseLogic(scene, python=sys.executable)
    nodes = logic.loadResult(out, volume, "c")
    report = lvpscene.load_report(out)
    rows = rows_from_report(report)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "segmentation.nii.gz")))
    disc_value = report["levels"][len(report["levels"]) // 2]["disc_label"]
    disc = labels == disc_value
    keep = disc.copy()
    keep[: int(np.nonzero(disc.any(axis=(1, 2)))[0].mean())] = False  # drop the slices on one side
    seg = nodes.segmentation.GetSegmentation()
    edit_segment(scene, nodes.segmentation, volume, lvpscene.segment_id_for_value(nodes.segmentation, disc_value), keep)
    # The reader renames the lowest disc L5-L6 (six lumbar vertebrae, seen on a localiser).
    renamed = lvpscene.segment_id_for_value(nodes.segmentation, 100)
    seg.GetSegment(renamed).SetName("L5-L6 disc")
    new_rows, changes, new_report = logic.recompute(nodes, volume, rows, tmp_path / "recompute", caseKey="c")

    assert new_report["model"]["name"] == "label-map"  # no network, no automatic labelling
    levels = [lv["level"] for lv in new_report["levels"]]
    assert "L5-L6" in levels and "L5-S" not in levels  # the name was kept, not recounted
    voxel = float(np.prod(sitk.ReadImage(str(out / "segmentation.nii.gz")).GetSpacing()))
    edited = next(s for s in new_report["structures"] if s["label"] == disc_value)
    before = next(s for s in report["structures"] if s["label"] == disc_value)
    assert edited["volume_mm3"] < before["volume_mm3"]
    assert edited["volume_mm3"] == pytest.approx(keep.sum() * voxel, rel=0.05)
    assert edited["confidence"] == 1.0  # reader-edited level
    untouched = next(s for s in new_report["structures"] if s["label"] == 92)
    assert untouched["confidence"] == next(s for s in report["structures"] if s["label"] == 92)["confidence"]
    # Scene follows: segment tag/terminology, level labels, the changes listed for the reader.
    assert lvpscene.segment_tag(seg.GetSegment(renamed), lvpscene.LABEL_VALUE_TAG) == "96"
    points = {nodes.levelLabels.GetNthControlPointLabel(i) for i in range(nodes.levelLabels.GetNumberOfControlPoints())}
    assert "L5-L6" in points and "L5-S" not in points
    # The renamed level's rows carry over (reader grades included) and are listed as renamed.
    assert json.loads((tmp_path / "recompute" / "level_renames.json").read_text()) == {"L5-S": "L5-L6"}
    lines = describe_changes(changes)
    old_l5s = {r.pathology for r in rows if r.level == "L5-S"}  # may be empty: see test_slicer_workflow.py
    assert {c.pathology for c in changes if c.old_level == "L5-S" and c.level == "L5-L6"} == old_l5s & {
        r.pathology for r in new_rows if r.level == "L5-L6"
    }
    assert all("(level renamed from L5-S)" in line for line in lines if line.startswith("L5-L6 "))
    assert "L5-S" not in {r.level for r in new_rows}
    # A second Recompute without edits changes nothing and keeps the confidences.
    _, again, third = logic.recompute(nodes, volume, new_rows, tmp_path / "again", caseKey="c")
    assert again == [] and [s["confidence"] for s in third["structures"]] == [
        s["confidence"] for s in new_report["structures"]
    ]


def test_ambiguous_rename_is_refused_before_running(scene_with_sample, reference_result, tmp_path):
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import CaseLogic

    scene, volume, _ = scene_with_sample

    class NoRunner:
        def start(self, *args, **kwargs):
            raise AssertionError("no child may start")

    logic = CaseLogic(scene, runner=NoRunner())
    nodes = logic.loadResult(reference_result, volume, "c")
    seg = nodes.segmentation.GetSegmentation()
    seg.GetSegment(lvpscene.segment_id_for_value(nodes.segmentation, 44)).SetName("L5")  # L4 -> L5, old L5 stays
    with pytest.raises(ValueError, match="several segments stand for the same structure: L5"):
        logic.recompute(nodes, volume, [], tmp_path)


def test_recompute_diff_keeps_reader_modifications():
    from LumbarVNetProLib.grades import MODIFIED, apply_recompute, rows_from_report

    def report(h, c, value):
        grades = {
            "herniation": {"grade": h, "value": value, "measurement": "posterior_displacement_mm"},
            "canal_stenosis": {"grade": c, "value": 120.0, "measurement": "canal_area_mm2"},
        }
        return {"levels": [{"level": "L4-L5", "grades": grades}]}

    rows = rows_from_report(report(1, 0, 2.0))
    rows[0].accept()  # the reader accepted herniation 1
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


def test_recompute_diff_carries_reader_grades_over_renamed_levels():
    from LumbarVNetProLib.grades import MODIFIED, apply_recompute, describe_changes, rows_from_report

    def report(levels):
        return {
            "levels": [
                {"level": lv, "grades": {"herniation": {"grade": g, "value": v, "measurement": "mm"}}}
                for lv, g, v in levels
            ]
        }

    rows = rows_from_report(report([("L4-L5", 1, 2.0), ("L5-S", 0, 1.0)]))
    rows[0].reader_grade = 3  # L4-L5 modified
    # Renumbering: L4-L5 -> L5-L6 and L5-S stays; the AI grades move with the anatomy.
    new_rows, changes = apply_recompute(rows, report([("L5-L6", 1, 2.0), ("L5-S", 0, 1.0)]), {"L4-L5": "L5-L6"})
    by_key = {r.key: r for r in new_rows}
    assert by_key[("L5-L6", "herniation")].reader_grade == 3
    assert by_key[("L5-L6", "herniation")].decision == MODIFIED
    assert [(c.old_level, c.level, c.reader_followed) for c in changes] == [("L4-L5", "L5-L6", False)]
    assert describe_changes(changes) == [
        "L5-L6 Disc herniation: bulge → bulge (level renamed from L4-L5) (your grade kept)"
    ]
    # A chain (L4-L5 -> L5-S, whose old segment was renamed L5-L6): each row follows its segment.
    rows = rows_from_report(report([("L4-L5", 1, 2.0), ("L5-S", 2, 3.0)]))
    rows[0].accept()
    rows[1].reader_grade = 0
    renames = {"L4-L5": "L5-S", "L5-S": "L5-L6"}
    new_rows, changes = apply_recompute(rows, report([("L5-S", 1, 2.0), ("L5-L6", 2, 3.0)]), renames)
    by_key = {r.key: r.reader_grade for r in new_rows}
    assert by_key == {("L5-S", "herniation"): 1, ("L5-L6", "herniation"): 0}
    assert {(c.old_level, c.level) for c in changes} == {("L4-L5", "L5-S"), ("L5-S", "L5-L6")}
    # Renamed onto a level whose segment was deleted: the deleted level's rows are listed as gone.
    rows = rows_from_report(report([("L4-L5", 1, 2.0), ("L5-S", 2, 3.0)]))
    rows[0].reader_grade = 2
    new_rows, changes = apply_recompute(rows, report([("L5-S", 1, 2.0)]), {"L4-L5": "L5-S"})
    assert [(r.key, r.reader_grade) for r in new_rows] == [(("L5-S", "herniation"), 2)]
    assert {(c.level, c.old_level, c.new_grade) for c in changes} == {("L5-S", "L4-L5", 1), ("L5-S", None, None)}


def test_level_renames_follow_the_segment_identity(scene_with_sample, reference_result):
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import CaseLogic

    scene, volume, _ = scene_with_sample
    nodes = CaseLogic(scene).loadResult(reference_result, volume, "c")
    seg = nodes.segmentation.GetSegmentation()
    values = lvpscene.segment_label_values(nodes.segmentation)
    assert lvpscene.level_renames(nodes.segmentation, values) == {}
    l5s = lvpscene.segment_id_for_value(nodes.segmentation, 100)
    seg.GetSegment(l5s).SetName("L5-L6 disc")
    seg.GetSegment(lvpscene.segment_id_for_value(nodes.segmentation, 45)).SetName("L6")  # a vertebra: no level
    values = lvpscene.segment_label_values(nodes.segmentation)
    assert lvpscene.level_renames(nodes.segmentation, values) == {"L5-S": "L5-L6"}
    lvpscene.retag_segments(nodes.segmentation, values)  # after Recompute the tags follow: no rename left
    assert lvpscene.level_renames(nodes.segmentation, lvpscene.segment_label_values(nodes.segmentation)) == {}


def test_the_private_input_copy_is_removed_after_the_run(tmp_path, slicer_app, monkeypatch):
    """Each run writes the volume for the child; that copy must not pile up in the temp folder."""
    import tempfile

    from LumbarVNetPro import LumbarVNetProLogic
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import INPUT_PREFIX, RunJob
    from LumbarVNetProLib.process import ProcessFailed

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    scene = slicer.vtkMRMLScene()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 3), np.float32)), str(tmp_path / "tiny.nii.gz"))
    volume = lvpscene.volume_node_from_file(scene, tmp_path / "tiny.nii.gz", "tiny")
    logic = LumbarVNetProLogic(scene=scene, python=sys.executable)
    with pytest.raises(ProcessFailed):
        logic.process(volume, tmp_path / "out", device="cpu")
    assert not list(temp.glob(f"{INPUT_PREFIX}*"))
    # Only LVP's own private folder is ever removed.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "input.nii.gz").write_bytes(b"x")
    RunJob(running=None, outputDir=tmp_path, inputPath=other / "input.nii.gz").discardInput()
    assert (other / "input.nii.gz").exists()
