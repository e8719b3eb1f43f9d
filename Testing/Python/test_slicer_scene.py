"""Importing an lvp infer result into a real MRML scene, and exporting edits back (slicer-core)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_helpers import slicer

from lvp.labels import STRUCTURES

pytest_plugins = ("slicer_helpers",)  # the reference_result and scene_with_sample fixtures


def _import(scene_with_sample, reference_result):
    from LumbarVNetProLib import scene as lvpscene

    scene, volume, study = scene_with_sample
    nodes = lvpscene.import_result(scene, reference_result, volume, caseKey="case-50")
    return lvpscene, scene, volume, study, nodes


def _file_labels(reference_result) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(reference_result / "segmentation.nii.gz")))


def test_segments_names_values_colours_terminology(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    seg = nodes.segmentation.GetSegmentation()
    present = sorted(int(v) for v in np.unique(_file_labels(reference_result)) if v)
    assert seg.GetNumberOfSegments() == len(present)
    by_value = {}
    for i in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(i)
        value = int(lvpscene.segment_tag(segment, lvpscene.LABEL_VALUE_TAG))
        by_value[value] = segment
        assert segment.GetName() == STRUCTURES[value].name
        assert segment.GetLabelValue() == value
        assert segment.GetColor() == pytest.approx(STRUCTURES[value].color)
    assert sorted(by_value) == present
    entry = lambda v: lvpscene.segment_tag(by_value[v], by_value[v].GetTerminologyEntryTagName())
    assert "SCT^66794005^L1 vertebra" in entry(41)
    assert "SCT^49668003^L5 vertebra" in entry(45)
    assert "SCT^84020006^L4/L5 disc" in entry(95)  # DICOM PS3.16 CID 7604
    assert "SCT^61853006^Vertebral canal" in entry(2)
    assert entry(41).split("~")[1] == "SCT^91723000^Anatomical Structure"  # CID 7150


def test_geometry_matches_input_and_file(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    assert nodes.segmentation.GetNodeReferenceID("referenceImageGeometryRef") == volume.GetID()
    exported = lvpscene.export_labelmap(scene, nodes.segmentation, volume)
    # The round trip file -> segments -> labelmap on the input grid is voxel exact.
    np.testing.assert_array_equal(exported, _file_labels(reference_result))


def test_subject_hierarchy_places_results_in_the_study(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node in (nodes.segmentation, nodes.levelLabels, nodes.gradeTable):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    assert sh.GetItemParent(nodes.planesFolderItem) == study
    for plane in nodes.scanPlanes:
        assert sh.GetItemParent(sh.GetItemByDataNode(plane)) == nodes.planesFolderItem
    assert lvpscene.remove_case_nodes(scene, "case-50") == 3 + len(nodes.scanPlanes)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_level_labels_at_structure_centres(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    image = sitk.ReadImage(str(reference_result / "segmentation.nii.gz"))
    labels = sitk.GetArrayFromImage(image)
    markups = nodes.levelLabels
    names = [markups.GetNthControlPointLabel(i) for i in range(markups.GetNumberOfControlPoints())]
    assert "L4" in names and "L4-L5" in names and "spinal canal" not in names
    for index, name in enumerate(names):
        value = next(v for v, s in STRUCTURES.items() if s.name in (name, f"{name} disc"))
        # Independent centre: mean voxel index of the label, through the file's geometry.
        zyx = np.argwhere(labels == value).mean(axis=0)
        lps = image.TransformContinuousIndexToPhysicalPoint([float(i) for i in zyx[::-1]])
        ras = markups.GetNthControlPointPositionWorld(index)
        assert ras == pytest.approx([-lps[0], -lps[1], lps[2]], abs=1e-3)


def test_scan_planes_hidden_and_toggled(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    report = json.loads((reference_result / "report.json").read_text())
    planes = [level["scan_plane"] for level in report["levels"] if level.get("scan_plane")]
    assert planes and len(nodes.scanPlanes) == len(planes)
    assert not any(p.GetDisplayNode().GetVisibility() for p in nodes.scanPlanes)
    lvpscene.set_planes_visible(nodes.scanPlanes, True)
    assert all(p.GetDisplayNode().GetVisibility() for p in nodes.scanPlanes)
    for node, plane in zip(nodes.scanPlanes, planes):
        center, x, y, z = [0.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3
        node.GetCenterWorld(center)
        node.GetAxesWorld(x, y, z)
        assert center == pytest.approx(lvpscene.lps_to_ras(plane["center_lps"]), abs=1e-4)
        # The node really takes the plane's axes (a left-handed triple would be refused and leave
        # the default axial orientation), and its normal is the report's, up to its sign.
        assert x == pytest.approx(lvpscene.lps_to_ras(plane["axis_u_lps"]), abs=1e-4)
        assert y == pytest.approx(lvpscene.lps_to_ras(plane["axis_v_lps"]), abs=1e-4)
        normal = np.asarray(lvpscene.lps_to_ras(plane["normal_lps"]))
        assert abs(float(np.dot(z, normal))) == pytest.approx(1.0, abs=1e-4)


def test_grade_table_rows(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    report = json.loads((reference_result / "report.json").read_text())
    rows = lvpscene.read_grade_table(nodes.gradeTable)
    expected = [
        (lvl["level"], p, str(g["grade"]))
        for lvl in report["levels"]
        for p, g in lvl["grades"].items()
        if p != "narrowing"  # not a reader-graded pathology
    ]
    assert sorted((r["level"], r["pathology"], r["ai_grade"]) for r in rows) == sorted(expected)
    l45 = next(r for r in rows if r["level"] == "L4-L5" and r["pathology"] == "herniation")
    # An AI grade nobody reviewed is not "accepted" (issue 9): the table says unreviewed.
    assert l45["ai_grade_name"] == "protrusion" and l45["decision"] == "unreviewed" and l45["reader_grade"] == ""
    assert float(l45["value"]) > 0 and l45["measurement"] == "disc_volume_mm3"


def test_edited_segmentation_exports_edited_labels_by_tag(scene_with_sample, reference_result, tmp_path):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    labels = _file_labels(reference_result)
    seg = nodes.segmentation.GetSegmentation()
    disc_id = next(
        seg.GetNthSegmentID(i)
        for i in range(seg.GetNumberOfSegments())
        if seg.GetNthSegment(i).GetName() == "L3-L4 disc"
    )
    # Erase the cranial half of the L3-L4 disc (along the head-feet index axis 1).
    disc = labels == 94
    rows = np.nonzero(disc.any(axis=(0, 2)))[0]
    keep = disc.copy()
    keep[:, : rows[len(rows) // 2], :] = False
    from LumbarVNetProLib.selftest import edit_segment

    edit_segment(scene, nodes.segmentation, volume, disc_id, keep)
    # A renamed segment still exports with its own value: mapping is by tag, not by name/order.
    seg.GetSegment(disc_id).SetName("edited disc")
    out = tmp_path / "edited.nii.gz"
    exported = lvpscene.export_labelmap(scene, nodes.segmentation, volume, out)
    assert (exported == 94).sum() == keep.sum() < disc.sum()
    assert ((exported == 94) == keep).all()
    untouched = (labels != 94) & ~keep
    np.testing.assert_array_equal(exported[untouched], labels[untouched])
    written = sitk.ReadImage(str(out))
    assert written.GetOrigin() == pytest.approx(
        sitk.ReadImage(str(reference_result / "segmentation.nii.gz")).GetOrigin()
    )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), exported)


def test_untagged_unknown_segment_is_refused(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    seg = nodes.segmentation.GetSegmentation()
    seg.AddEmptySegment("", "L5-S disc copy")
    with pytest.raises(ValueError, match="L5-S disc copy"):
        lvpscene.segment_label_values(nodes.segmentation)
    named = seg.AddEmptySegment("", "sacrum")
    seg.RemoveSegment(seg.GetSegmentIdBySegmentName("L5-S disc copy"))
    assert lvpscene.segment_label_values(nodes.segmentation)[named] == 50


def test_renamed_segment_exports_as_its_new_structure_and_is_retagged(scene_with_sample, reference_result):
    lvpscene, scene, volume, study, nodes = _import(scene_with_sample, reference_result)
    labels = _file_labels(reference_result)
    seg = nodes.segmentation.GetSegmentation()
    sid = lvpscene.segment_id_for_value(nodes.segmentation, 100)
    assert lvpscene.structure_value_of_name(" l5-l6 ") == 96 and lvpscene.structure_value_of_name("canal") == 2
    assert lvpscene.structure_value_of_name("edited disc") is None
    seg.GetSegment(sid).SetName("L5-L6")  # the level, without " disc"
    values = lvpscene.segment_label_values(nodes.segmentation)
    assert values[sid] == 96
    exported = lvpscene.export_labelmap(scene, nodes.segmentation, volume)
    np.testing.assert_array_equal(exported == 96, labels == 100)
    assert lvpscene.retag_segments(nodes.segmentation, values) == [sid]
    assert lvpscene.segment_tag(seg.GetSegment(sid), lvpscene.LABEL_VALUE_TAG) == "96"
    assert lvpscene.retag_segments(nodes.segmentation, values) == []  # idempotent


def test_scan_plane_from_the_core_keeps_its_tilt_in_slicer():
    """A plane as lvp.planes writes it (normal inferior, u left, v posterior: left-handed) keeps its tilt."""
    from LumbarVNetProLib import scene as lvpscene
    from lvp.planes import ScanPlane, in_plane_axes

    normal = np.array([0.0, 0.26, -0.97])  # a disc tilted ~15 degrees; LPS z is superior
    normal /= np.linalg.norm(normal)
    u, v = in_plane_axes(normal)
    plane = ScanPlane(np.array([1.0, 2.0, 3.0]), normal, u, v, 3.0, (60.0, 40.0)).to_dict()
    scene = slicer.vtkMRMLScene()
    (node,) = lvpscene.add_scan_planes(scene, {"levels": [{"level": "L4-L5", "scan_plane": plane}]})
    x, y, z = [0.0] * 3, [0.0] * 3, [0.0] * 3
    node.GetAxesWorld(x, y, z)
    assert x == pytest.approx(lvpscene.lps_to_ras(u), abs=1e-4)
    assert y == pytest.approx(lvpscene.lps_to_ras(v), abs=1e-4)
    assert abs(float(np.dot(z, lvpscene.lps_to_ras(normal)))) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
def test_label_values_equal_numpy_unique(dtype):
    """The value table of 8/16-bit label maps finds exactly what np.unique finds (0 left out)."""
    from LumbarVNetProLib.scene import label_values

    rng = np.random.default_rng(13)
    top = 255 if dtype == np.uint8 else 300
    for values in ([0], [0, 1], [2, 31, 32, 41, 203, top], list(rng.choice(top + 1, 7, replace=False))):
        array = rng.choice(np.array(values, dtype=dtype), size=(4, 9, 11)).astype(dtype)
        assert label_values(array) == [int(v) for v in np.unique(array) if v]
    if np.dtype(dtype).kind == "i":
        array = np.array([[-3, 0, 5]], dtype=dtype)  # a signed map's negative value is reported, as before
        assert label_values(array) == [-3, 5]


def test_import_reads_the_label_file_once(scene_with_sample, reference_result, monkeypatch):
    """The segmentation's file is read once per import (the values come from the voxels read)."""
    from LumbarVNetProLib import scene as lvpscene

    reads = []
    real = lvpscene.sitk.ReadImage
    monkeypatch.setattr(lvpscene.sitk, "ReadImage", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    scene, volume, _ = scene_with_sample
    nodes = lvpscene.import_result(scene, reference_result, volume, caseKey="case-once")
    assert nodes.segmentation.GetSegmentation().GetNumberOfSegments() > 0
    assert reads == [str(reference_result / "segmentation.nii.gz")]
