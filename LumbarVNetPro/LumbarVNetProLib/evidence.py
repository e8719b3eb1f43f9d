"""The report's evidence as markups in an MRML scene: calipers, displacement vectors, signal regions.

``report.json`` (schema 1.2) lists per level the points where each measurement was read
(``levels[].evidence``: ``kind`` caliper / vector / region / coverage, ``points_lps``, ``plane``,
``label``, ``slice_index``). :func:`add_evidence_markups` turns them into markups nodes so a reader
sees in the slice views exactly what was measured:

* caliper, vector, coverage → a ``vtkMRMLMarkupsLineNode`` (two points; the line shows its length);
* region → a ``vtkMRMLMarkupsClosedCurveNode`` through the region's outline.

Each node is named ``"<level> <label>"``, locked (evidence is not edited by dragging), and carries
the attributes ``LVP.Level``, ``LVP.EvidenceKind``, ``LVP.Measurement``, ``LVP.Plane`` and
``LVP.SliceIndex`` (the input series' slice the item was read on). Works with Slicer and with the
Qt-free ``slicer-core`` wheel. Points are LPS in the report; MRML is RAS = (-x, -y, z).
"""

from __future__ import annotations

import slicer
import vtk

from lvp.report.colours import EVIDENCE_COLOURS, rgb

# The case attributes of the scene's nodes (so removing a case removes its evidence too).
from .attributes import CASE_ATTRIBUTE, ROLE_ATTRIBUTE, VOLUME_ATTRIBUTE, mark_case_node  # noqa: F401 - ROLE_ATTRIBUTE: public here

NODE_CLASS = {"caliper": "vtkMRMLMarkupsLineNode", "vector": "vtkMRMLMarkupsLineNode",
              "coverage": "vtkMRMLMarkupsLineNode", "region": "vtkMRMLMarkupsClosedCurveNode"}
# Display colours (RGB 0-1): report.html's, from the one table.
COLOURS = {kind: rgb(EVIDENCE_COLOURS[kind]) for kind in NODE_CLASS}


def _ras(point) -> vtk.vtkVector3d:  # any 3-sequence
    return vtk.vtkVector3d(-float(point[0]), -float(point[1]), float(point[2]))


def add_evidence_markups(scene, report: dict, prefix: str = "LVP", caseKey: str | None = None,
                         volumeId: str = "", parent: int = 0, visible: bool = True) -> list:
    """One markups node per evidence item of every level in ``report``; returns the nodes.

    Items with too few points for their kind (a line needs 2, a region 3) are skipped. With
    ``caseKey`` the nodes carry the case attributes of :mod:`.scene` (role ``evidence``), so
    removing the case or re-running the volume removes them, and they are put in one subject
    hierarchy folder ``"<prefix> evidence"`` under ``parent`` (default: the scene).
    """
    nodes = []
    folder = None
    if caseKey is not None:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        folder = sh.CreateFolderItem(parent or sh.GetSceneItemID(), f"{prefix} evidence")
        sh.SetItemAttribute(folder, CASE_ATTRIBUTE, caseKey)
        sh.SetItemAttribute(folder, VOLUME_ATTRIBUTE, volumeId)
    for level in report.get("levels", []) or []:
        for item in level.get("evidence", []) or []:
            kind = item.get("kind")
            points = item.get("points_lps") or []
            if kind not in NODE_CLASS or len(points) < (3 if kind == "region" else 2):
                continue
            label = item.get("label") or item.get("measurement") or kind
            node = scene.AddNewNodeByClass(NODE_CLASS[kind], f"{prefix} {level.get('level')} {label}")
            if "%" in node.GetName():
                # Slicer makes point labels by printf-formatting "%N-%d" with the name pasted in: a "%"
                # in it ("central 40 % of depth") was read as a conversion (labels "...40 1f depth...-7",
                # the last number undefined). Escaped, the label is "<name>-<n>" as for any other name.
                node.SetControlPointLabelFormat(node.GetName().replace("%", "%%") + "-%d")
            modifying = node.StartModify()  # one modified event for all points: a third of the time
            for p in points if kind == "region" else points[:2]:
                node.AddControlPoint(_ras(p))
            node.EndModify(modifying)
            node.SetLocked(True)
            node.SetAttribute("LVP.Level", str(level.get("level")))
            node.SetAttribute("LVP.EvidenceKind", str(kind))
            node.SetAttribute("LVP.Measurement", str(item.get("measurement") or ""))
            node.SetAttribute("LVP.Plane", str(item.get("plane") or ""))
            slice_index = item.get("slice_index")
            node.SetAttribute("LVP.SliceIndex", "" if slice_index is None else str(int(slice_index)))
            if caseKey is not None:
                mark_case_node(node, caseKey, "evidence", volumeId)
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            if display is not None:
                display.SetSelectedColor(*COLOURS[kind])
                display.SetColor(*COLOURS[kind])
                display.SetVisibility(visible)
            if folder is not None:  # the application makes an item for a new node; bare MRML does not
                item = sh.GetItemByDataNode(node)
                sh.SetItemParent(item, folder) if item else sh.CreateItem(folder, node)
            nodes.append(node)
    return nodes
