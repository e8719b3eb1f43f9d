"""report.json evidence → markups nodes in a real MRML scene (slicer-core)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicer_helpers import slicer

pytest_plugins = ("slicer_helpers",)  # the scene_with_sample fixture


@pytest.fixture(scope="module")
def pipeline_result(tmp_path_factory, sample_case):
    """``lvp infer`` output of the bundled sample from its reference mask (real pipeline, no network)."""
    from lvp.pipeline import MaskSegmenter, run_inference

    out = tmp_path_factory.mktemp("evidence")
    run_inference(sample_case, out, segmenter=MaskSegmenter(sample_case.with_name("spider_sample_labels.nii.gz")),
                  html=False)
    return out


def _report(result) -> dict:
    return json.loads((result / "report.json").read_text())


def test_every_evidence_item_becomes_a_markup_at_its_points(pipeline_result):
    from LumbarVNetProLib.evidence import add_evidence_markups

    report = _report(pipeline_result)
    items = [(lv["level"], e) for lv in report["levels"] for e in lv.get("evidence", [])]
    assert items, "the pipeline result holds no evidence to draw"
    scene = slicer.vtkMRMLScene()
    nodes = add_evidence_markups(scene, report)
    assert len(nodes) == len(items)
    for node, (level, item) in zip(nodes, items):
        assert node.GetAttribute("LVP.Level") == level
        assert node.GetAttribute("LVP.EvidenceKind") == item["kind"]
        assert node.GetLocked()
        expected = item["points_lps"] if item["kind"] == "region" else item["points_lps"][:2]
        assert node.GetNumberOfControlPoints() == len(expected)
        for i, p in enumerate(expected):
            ras = node.GetNthControlPointPositionWorld(i)
            # LPS in the report, RAS in MRML.
            assert np.allclose(ras, [-p[0], -p[1], p[2]], atol=1e-3)
        if item["kind"] == "region":
            assert node.IsA("vtkMRMLMarkupsClosedCurveNode")
        else:
            assert node.IsA("vtkMRMLMarkupsLineNode")
            # A caliper's drawn length is the measurement's length (both from the same points).
            a, b = (np.asarray(q, float) for q in item["points_lps"][:2])
            assert node.GetLineLengthWorld() == pytest.approx(float(np.linalg.norm(b - a)), abs=1e-3)
        if item.get("slice_index") is not None:
            assert node.GetAttribute("LVP.SliceIndex") == str(item["slice_index"])


def test_disc_height_calipers_match_their_measurement(pipeline_result):
    from LumbarVNetProLib.evidence import add_evidence_markups

    report = _report(pipeline_result)
    scene = slicer.vtkMRMLScene()
    nodes = add_evidence_markups(scene, report)
    checked = 0
    for node in nodes:
        name = node.GetAttribute("LVP.Measurement")
        if not name.startswith("disc_height_"):
            continue
        level = next(lv for lv in report["levels"] if lv["level"] == node.GetAttribute("LVP.Level"))
        value = level["measurements"][name]["value"]
        # A height is counted in whole 0.5 mm samples; its caliper ends at the sample edges.
        assert node.GetLineLengthWorld() == pytest.approx(value, abs=0.6)
        checked += 1
    assert checked >= 3


def test_items_without_enough_points_are_skipped():
    from LumbarVNetProLib.evidence import add_evidence_markups

    report = {"levels": [{"level": "L4-L5", "evidence": [
        {"kind": "caliper", "points_lps": [[0, 0, 0]]},
        {"kind": "region", "points_lps": [[0, 0, 0], [1, 0, 0]]},
        {"kind": "unknown", "points_lps": [[0, 0, 0], [1, 0, 0]]},
        {"kind": "vector", "points_lps": [[0, 0, 0], [3, 4, 0]]},
    ]}]}
    scene = slicer.vtkMRMLScene()
    nodes = add_evidence_markups(scene, report)
    assert [n.GetAttribute("LVP.EvidenceKind") for n in nodes] == ["vector"]
    assert nodes[0].GetLineLengthWorld() == pytest.approx(5.0)


def test_import_result_adds_the_evidence_and_case_removal_removes_it(scene_with_sample, pipeline_result):
    from LumbarVNetProLib import scene as lvpscene

    scene, volume, _ = scene_with_sample
    report = _report(pipeline_result)
    n_items = sum(len(lv.get("evidence", [])) for lv in report["levels"])
    lvpscene.import_result(scene, pipeline_result, volume, caseKey="case-ev")

    def evidence_nodes():
        nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        return [n for n in nodes if n.GetAttribute("LVP.EvidenceKind")]

    found = evidence_nodes()
    assert len(found) == n_items
    assert all(n.GetAttribute("LVP.Case") == "case-ev" and n.GetAttribute("LVP.Role") == "evidence" for n in found)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = sh.GetItemParent(sh.GetItemByDataNode(found[0]))
    assert sh.GetItemName(folder) == f"{volume.GetName()} evidence"
    assert sh.GetItemParent(folder) == lvpscene.study_item_of(scene, volume)  # beside the case's other results
    assert {sh.GetItemParent(sh.GetItemByDataNode(n)) for n in found} == {folder}
    # A second run on the same volume replaces the result: the evidence and its folder go too.
    assert lvpscene.remove_volume_results(scene, volume, "case-ev") > 0
    assert evidence_nodes() == []
    assert sh.GetItemName(folder) == ""  # the folder item is gone


def test_point_labels_of_a_name_with_a_percent_sign_are_the_name_and_number():
    """A "%" in an evidence label ("central 40 % of depth") is text in the point labels, not a printf conversion."""
    from LumbarVNetProLib.evidence import add_evidence_markups

    points = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 1.0, 2.0]]
    report = {"levels": [{"level": "L4-L5", "evidence": [
        {"kind": "region", "label": "disc signal (central 40 % of depth)", "points_lps": points},
        {"kind": "caliper", "label": "AP diameter", "points_lps": points[:2]},
    ]}]}
    region, line = add_evidence_markups(slicer.vtkMRMLScene(), report, "case")
    assert [region.GetNthControlPointLabel(i) for i in range(3)] == [
        f"case L4-L5 disc signal (central 40 % of depth)-{i}" for i in (1, 2, 3)]
    assert [line.GetNthControlPointLabel(i) for i in range(2)] == [f"case L4-L5 AP diameter-{i}" for i in (1, 2)]
    for node, expected in ((region, points), (line, points[:2])):  # positions as given (LPS -> RAS)
        got = [[0.0] * 3 for _ in expected]
        for i, p in enumerate(got):
            node.GetNthControlPointPositionWorld(i, p)
        assert np.allclose(got, [[-x, -y, z] for x, y, z in expected])


def test_markups_take_the_report_figures_colours_and_the_scenes_case_attributes():
    # One colour table (lvp.report.colours) for the HTML figure and the markups; one set of case
    # attributes (LumbarVNetProLib.attributes) for the scene and the evidence.
    from LumbarVNetProLib import evidence
    from LumbarVNetProLib import scene as lvpscene
    from lvp.report import html

    kinds = ["caliper", "vector", "coverage", "region"]
    points = [[0, 0, 0], [3, 4, 0], [0, 5, 0]]
    report = {"levels": [{"level": "L4-L5", "evidence": [{"kind": k, "points_lps": points} for k in kinds]}]}
    scene = slicer.vtkMRMLScene()
    nodes = evidence.add_evidence_markups(scene, report, caseKey="case-colour", volumeId="vol-1")
    assert [n.GetAttribute("LVP.EvidenceKind") for n in nodes] == kinds
    for node, kind in zip(nodes, kinds):
        shown = html.EVIDENCE_COLOURS[kind]  # the SVG stroke of the report's figure
        want = tuple(int(shown[i: i + 2], 16) for i in (1, 3, 5))
        assert tuple(round(c * 255) for c in node.GetDisplayNode().GetColor()) == want, kind
        assert node.GetAttribute(lvpscene.CASE_ATTRIBUTE) == "case-colour"
        assert node.GetAttribute(lvpscene.VOLUME_ATTRIBUTE) == "vol-1"
        assert node.GetAttribute(lvpscene.ROLE_ATTRIBUTE) == "evidence"
    assert (evidence.CASE_ATTRIBUTE, evidence.ROLE_ATTRIBUTE, evidence.VOLUME_ATTRIBUTE) == (
        lvpscene.CASE_ATTRIBUTE, lvpscene.ROLE_ATTRIBUTE, lvpscene.VOLUME_ATTRIBUTE)
