"""Importing an ``lvp infer`` result into an MRML scene, and exporting the edited segmentation.

Everything takes the scene and nodes as arguments, so it runs inside Slicer and on the Qt-free
``slicer-core`` wheel alike. Points in ``report.json`` are LPS; MRML is RAS = (-x, -y, z).

Over 400 lines on purpose: import and export are two directions of one mapping (segment
names, tags, colours, terminology, label values, LPS/RAS), kept in one place so they cannot drift.
"""

# ruff: noqa: N815 - node fields use Slicer's camelCase, as the parameter node and .ui do
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from lvp.labels import ANATOMIC_CONTEXT, CANAL_LABEL, STRUCTURES, TERMINOLOGY_CONTEXT, level_of, structure

from .attributes import CASE_ATTRIBUTE, ROLE_ATTRIBUTE, VOLUME_ATTRIBUTE, mark_case_node
from .evidence import add_evidence_markups
from .grades import GradeRow, grade_name

# Segment tag holding the TotalSpineSeg label value. Export maps a segment to its value by its
# name when the name is a structure's (a reader renaming "L4" to "L5" re-assigns the level), else
# by this tag (a free-text name such as "edited disc" keeps the value); never by segment order.
LABEL_VALUE_TAG = "LVP.LabelValue"

TABLE_COLUMNS = (
    "level",
    "pathology",
    "ai_grade",
    "ai_grade_name",
    "confidence",
    "measurement",
    "value",
    "reader_grade",
    "reader_grade_name",
    "decision",
)


def lps_to_ras(point) -> list[float]:  # any 3-sequence
    """LPS millimetres to RAS millimetres."""
    return [-float(point[0]), -float(point[1]), float(point[2])]


def terminology_entry(value: int) -> str:
    """The serialized Slicer terminology entry (SNOMED CT) of a TotalSpineSeg label value."""
    codes = structure(value).codes  # the one table of segment codes: lvp.labels.SEGMENT_CODES
    mod = codes.modifier
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT,
        codes.category.code, codes.category.scheme, codes.category.meaning,
        codes.type.code, codes.type.scheme, codes.type.meaning,
        mod.code if mod else "", mod.scheme if mod else "", mod.meaning if mod else "",
        ANATOMIC_CONTEXT, "", "", "", "", "", "",
    )  # fmt: skip


def segment_tag(segment, name: str) -> str | None:  # vtkSegment
    """A segment tag's value, or None when the segment does not carry it."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


@dataclass
class CaseNodes:
    """The nodes one case put into the scene (None where the arm or result has none)."""

    segmentation: object | None = None
    levelLabels: object | None = None
    scanPlanes: list = field(default_factory=list)
    gradeTable: object | None = None
    planesFolderItem: int = 0
    # The lvp infer output folder the nodes came from (Recompute keeps confidences of untouched levels).
    resultDir: Path | None = None


# --------------------------------------------------------------------------- geometry


def _ijk_to_ras(image: sitk.Image) -> vtk.vtkMatrix4x4:
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing  # columns scaled by the spacing of their index axis
    lps[:3, 3] = image.GetOrigin()
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ras[r, c])
    return matrix


def labelmap_node_from_file(scene, path: Path, name: str):  # MRML objects
    """Read a label image (NIfTI, NRRD...) with SimpleITK into a new labelmap volume node.

    SimpleITK rather than a storage node: it behaves the same with and without the Slicer
    application, and keeps the file's exact grid (IJK to RAS from origin, spacing, direction).
    """
    image = sitk.ReadImage(str(path))
    return _labelmap_node(scene, image, name)[0]


def _labelmap_node(scene, image: sitk.Image, name: str):  # MRML objects
    """A new labelmap volume node of ``image`` (int16 voxels), and a view of the image's own voxels.

    The view is valid only while ``image`` is alive (the caller keeps it).
    """
    source = sitk.GetArrayViewFromImage(image)  # no copy: the cast below is the node's one copy
    array = source.astype(np.int16)
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtk_array = numpy_support.numpy_to_vtk(array.ravel(), deep=True, array_type=vtk.VTK_SHORT)
    image_data.GetPointData().SetScalars(vtk_array)
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(_ijk_to_ras(image))
    return node, source


def label_values(array: np.ndarray) -> list[int]:
    """The non-zero values present in a label array, ascending.

    For 8- and 16-bit unsigned voxels (LVP's label files are uint8) one pass marking a table of
    every possible value: several times faster than ``np.unique``, which sorts or hashes.
    """
    if array.dtype in (np.uint8, np.uint16):
        present = np.zeros(np.iinfo(array.dtype).max + 1, dtype=bool)
        present[array.ravel()] = True
        return [int(v) for v in np.flatnonzero(present[1:]) + 1]
    return sorted(int(v) for v in np.unique(array) if v)


def labelmap_array(node) -> np.ndarray:  # a volume node
    """A copy of a volume node's voxels as a numpy array indexed ``[k, j, i]``."""
    image = node.GetImageData()
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).copy()


def _color_table(scene, values: list[int]):
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "LVP structures")
    table.SetTypeToUser()
    table.SetNumberOfColors(max(values) + 1)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for value in range(1, max(values) + 1):
        if value in STRUCTURES:
            info = STRUCTURES[value]
            table.SetColor(value, info.name, *info.color, 1.0)
        else:
            table.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
    table.SetAttribute("Category", "LumbarVNetPro")
    return table


# --------------------------------------------------------------------------- import


def _segmentation_logic(scene):
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    return logic


def import_segmentation(scene, labelPath: Path, referenceVolume, name: str = "LVP segmentation"):
    """A segmentation node with one segment per structure found in a TotalSpineSeg label image.

    Each segment gets the structure's name, colour, SNOMED terminology tag and its label value
    tag; the segmentation's reference geometry is the input volume's.
    """
    # The file is read once; its values are taken from the voxels as read (no copy of the node's).
    image = sitk.ReadImage(str(labelPath))  # kept alive while its voxel view is read
    labelmap, voxels = _labelmap_node(scene, image, name + " labelmap")
    values = label_values(voxels)
    del voxels, image
    unknown = [v for v in values if v not in STRUCTURES]
    if unknown:
        scene.RemoveNode(labelmap)
        raise ValueError(f"segmentation holds label values LVP does not define: {unknown}")
    colors = _color_table(scene, values or [1])
    labelmap.CreateDefaultDisplayNodes()
    labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    if referenceVolume is not None:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
    if values and not _segmentation_logic(scene).ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise RuntimeError(f"could not import {labelPath} as a segmentation")
    seg = segmentation.GetSegmentation()
    by_name = {STRUCTURES[v].name: v for v in values}
    for index in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(index)
        value = by_name[segment.GetName()]
        info = STRUCTURES[value]
        segment.SetColor(*info.color)
        segment.SetLabelValue(value)
        segment.SetTag(LABEL_VALUE_TAG, str(value))
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(value))
    scene.RemoveNode(labelmap)
    scene.RemoveNode(colors)
    return segmentation


def add_level_labels(scene, report: dict, name: str = "LVP levels"):
    """A fiducial node with one labelled point per vertebra, sacrum and disc, at its centre."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    modifying = node.StartModify()  # one modified event for all points
    for item in report.get("structures", []):
        if item.get("kind") == "canal" or item.get("center_lps") is None:
            continue
        label = level_of(item["name"])
        index = node.AddControlPoint(vtk.vtkVector3d(*lps_to_ras(item["center_lps"])), label)
        node.SetNthControlPointDescription(index, f"label {item['label']}")
    node.EndModify(modifying)
    # Labels mark anatomy, they are not edited by dragging.
    node.SetLocked(True)
    return node


def add_scan_planes(scene, report: dict, visible: bool = False) -> list:
    """One plane node per level with a ``scan_plane``; hidden unless ``visible``."""
    planes = []
    for level in report.get("levels", []):
        plane = level.get("scan_plane")
        if not plane:
            continue
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsPlaneNode", f"LVP plane {level['level']}")
        node.CreateDefaultDisplayNodes()
        u = lps_to_ras(plane["axis_u_lps"])
        v = lps_to_ras(plane["axis_v_lps"])
        # report.json's normal points inferior while u (left) x v (posterior) points superior: a
        # left-handed triple, which vtkMRMLMarkupsPlaneNode.SetAxesWorld refuses ("Invalid direction
        # vectors") and then keeps its default axial orientation. The plane is the same with the
        # right-handed normal u x v.
        n = np.cross(u, v).tolist()
        node.SetCenterWorld(lps_to_ras(plane["center_lps"]))
        node.SetAxesWorld(u, v, n)
        node.SetSizeWorld(*plane.get("extent_mm", [60.0, 60.0]))
        node.SetAttribute("LVP.ThicknessMm", str(plane.get("thickness_mm", "")))
        node.GetDisplayNode().SetVisibility(visible)
        planes.append(node)
    return planes


def set_planes_visible(planes: list, visible: bool) -> None:
    """Show or hide all scan planes (the panel's one-click toggle)."""
    for node in planes:
        node.GetDisplayNode().SetVisibility(visible)


def write_grade_table(table, rows: list[GradeRow]) -> None:  # vtkMRMLTableNode
    """Fill a table node with one row per grade (columns :data:`TABLE_COLUMNS`).

    Missing numbers are written as empty strings: the table is for display and CSV export, the
    rows themselves stay the source of truth.
    """
    vtk_table = table.GetTable()
    was_modifying = table.StartModify()
    vtk_table.Initialize()
    for name in TABLE_COLUMNS:
        column = vtk.vtkStringArray()
        column.SetName(name)
        vtk_table.AddColumn(column)
    for row in rows:
        values = [
            row.level,
            row.pathology,
            _text(row.ai_grade),
            grade_name(row.pathology, row.ai_grade),
            _text(None if row.confidence is None else round(row.confidence, 3)),
            row.measurement,
            _text(None if row.value is None else round(row.value, 2)),
            _text(row.reader_grade),
            grade_name(row.pathology, row.reader_grade),
            row.state,
        ]
        index = vtk_table.InsertNextBlankRow()
        for col, text in enumerate(values):
            vtk_table.SetValue(index, col, vtk.vtkVariant(text))
    table.Modified()
    table.EndModify(was_modifying)


def read_grade_table(table) -> list[dict]:  # vtkMRMLTableNode
    """Rows of a grade table node as dicts of strings (for checks and export)."""
    vtk_table = table.GetTable()
    names = [vtk_table.GetColumnName(c) for c in range(vtk_table.GetNumberOfColumns())]
    return [
        {names[c]: vtk_table.GetValue(r, c).ToString() for c in range(len(names))}
        for r in range(vtk_table.GetNumberOfRows())
    ]


def _text(value) -> str:  # int, float or None
    return "" if value is None else str(value)


def study_item_of(scene, volume) -> int:  # MRML objects
    """The subject hierarchy item new case nodes go under: the volume's parent (its study)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(volume)
    return sh.GetItemParent(item) if item else sh.GetSceneItemID()


def subject_item(scene, node, parent: int = 0) -> int:  # MRML objects
    """The subject hierarchy item of ``node``, created under ``parent`` if it has none.

    The Slicer application creates items for new nodes on its own; the bare MRML libraries
    do not, so this covers both.
    """
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node)
    return item or sh.CreateItem(parent or sh.GetSceneItemID(), node)


def _place(scene, node, parent: int, caseKey: str, role: str, volumeId: str = "") -> None:  # MRML objects
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    sh.SetItemParent(subject_item(scene, node, parent), parent)
    mark_case_node(node, caseKey, role, volumeId)


def load_report(outputDir: Path) -> dict:
    """``report.json`` of an ``lvp infer`` output folder, checked for schema and status."""
    path = Path(outputDir) / "report.json"
    report = json.loads(path.read_text())
    if report.get("schema") != "lvp-report" or not str(report.get("schema_version", "")).startswith("1."):
        raise ValueError(f"{path} is not an lvp-report 1.x file")
    return report


def import_result(scene, outputDir: Path, inputVolume, caseKey: str = "", showPlanes: bool = False) -> CaseNodes:
    """Put an ``lvp infer`` output folder into the scene for the AI-assisted arm.

    Creates the segmentation (on the input's geometry), the level labels, the hidden scan
    planes (in their own subject hierarchy folder) and the grade table, all placed in the input
    volume's study.
    """
    outputDir = Path(outputDir)
    report = load_report(outputDir)
    seg_file = outputDir / report.get("outputs", {}).get("segmentation", "segmentation.nii.gz")
    base = inputVolume.GetName() if inputVolume is not None else "LVP"
    nodes = CaseNodes()
    nodes.segmentation = import_segmentation(scene, seg_file, inputVolume, f"{base} LVP segmentation")
    nodes.levelLabels = add_level_labels(scene, report, f"{base} LVP levels")
    nodes.scanPlanes = add_scan_planes(scene, report, visible=showPlanes)
    nodes.gradeTable = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} LVP grades")
    from .grades import rows_from_report

    write_grade_table(nodes.gradeTable, rows_from_report(report))
    parent = study_item_of(scene, inputVolume) if inputVolume is not None else 0
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = parent or sh.GetSceneItemID()
    volumeId = inputVolume.GetID() if inputVolume is not None else ""
    _place(scene, nodes.segmentation, parent, caseKey, "segmentation", volumeId)
    _place(scene, nodes.levelLabels, parent, caseKey, "levels", volumeId)
    _place(scene, nodes.gradeTable, parent, caseKey, "grades", volumeId)
    nodes.planesFolderItem = sh.CreateFolderItem(parent, f"{base} LVP scan planes")
    sh.SetItemAttribute(nodes.planesFolderItem, CASE_ATTRIBUTE, caseKey)
    sh.SetItemAttribute(nodes.planesFolderItem, VOLUME_ATTRIBUTE, volumeId)
    for plane in nodes.scanPlanes:
        _place(scene, plane, nodes.planesFolderItem, caseKey, "scan_plane", volumeId)
    add_evidence_markups(scene, report, base, caseKey, volumeId, parent)  # issue 15: calipers, vectors, regions
    nodes.resultDir = outputDir
    return nodes


def update_from_report(scene, nodes: CaseNodes, report: dict, caseKey: str = "") -> None:
    """Refresh level labels and scan planes of a loaded case from a new report (Recompute).

    The segmentation stays as the reader left it (it is the source of the new report); the level
    label points are replaced in place and the scan planes rebuilt with their visibility kept.
    """
    if nodes.levelLabels is not None:
        fresh = add_level_labels(scene, report, "LVP levels (new)")
        nodes.levelLabels.SetLocked(False)
        nodes.levelLabels.RemoveAllControlPoints()
        for i in range(fresh.GetNumberOfControlPoints()):
            index = nodes.levelLabels.AddControlPoint(
                fresh.GetNthControlPointPositionWorld(i), fresh.GetNthControlPointLabel(i)
            )
            nodes.levelLabels.SetNthControlPointDescription(index, fresh.GetNthControlPointDescription(i))
        nodes.levelLabels.SetLocked(True)
        scene.RemoveNode(fresh)
    visible = any(p.GetDisplayNode() is not None and p.GetDisplayNode().GetVisibility() for p in nodes.scanPlanes)
    for plane in nodes.scanPlanes:
        scene.RemoveNode(plane)
    nodes.scanPlanes = add_scan_planes(scene, report, visible=visible)
    if nodes.planesFolderItem:
        volumeId = (nodes.segmentation.GetAttribute(VOLUME_ATTRIBUTE) or "") if nodes.segmentation else ""
        for plane in nodes.scanPlanes:
            _place(scene, plane, nodes.planesFolderItem, caseKey, "scan_plane", volumeId)


def segment_id_for_value(segmentation, value: int) -> str | None:  # vtkMRMLSegmentationNode
    """The ID of the segment exported as ``value`` (see :func:`segment_label_values`), or None."""
    return next((sid for sid, v in segment_label_values(segmentation).items() if v == int(value)), None)


def retag_segments(segmentation, values: dict[str, int]) -> list[str]:
    """Make each segment's tag, terminology and colour match the value it was exported as.

    After a reader renamed a segment to another structure, this moves its value tag and SNOMED
    terminology to the new structure. Returns the IDs of the segments that changed.
    """
    seg = segmentation.GetSegmentation()
    changed = []
    for segment_id, value in values.items():
        segment = seg.GetSegment(segment_id)
        if segment is None or segment_tag(segment, LABEL_VALUE_TAG) == str(value):
            continue
        segment.SetTag(LABEL_VALUE_TAG, str(value))
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(value))
        segment.SetColor(*STRUCTURES[value].color)
        changed.append(segment_id)
    return changed


def level_of_value(value: int) -> str | None:
    """The disc level a label value stands for (``95 -> "L4-L5"``), or None for a non-disc value."""
    info = STRUCTURES.get(int(value))
    return level_of(info.name) if info is not None and info.kind == "disc" else None


def level_renames(segmentation, values: dict[str, int]) -> dict[str, str]:
    """Old level name -> new level name of the disc segments the reader renamed to another disc.

    Call with the values about to be exported (:func:`segment_label_values`) and before
    :func:`retag_segments`: a segment's value tag still holds the value it was imported (or last
    recomputed) as, so the segment's identity links the old level to the new one. Segments
    without a tag, or whose value did not change, are not renames.
    """
    seg = segmentation.GetSegmentation()
    renames = {}
    for segment_id, value in values.items():
        segment = seg.GetSegment(segment_id)
        tag = segment_tag(segment, LABEL_VALUE_TAG) if segment is not None else None
        if tag in (None, "") or not tag.lstrip("-").isdigit() or int(tag) == int(value):
            continue
        old, new = level_of_value(int(tag)), level_of_value(value)
        if old is not None and new is not None:
            renames[old] = new
    return renames


def create_manual_table(scene, inputVolume, rows: list[GradeRow], caseKey: str = ""):
    """The only node a manual-arm read creates: the reader's grade table without AI columns filled."""
    base = inputVolume.GetName() if inputVolume is not None else "LVP"
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} reader grades")
    write_grade_table(table, rows)
    parent = study_item_of(scene, inputVolume) if inputVolume is not None else 0
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    _place(scene, table, parent or sh.GetSceneItemID(), caseKey, "grades")
    return table


def remove_case_nodes(scene, caseKey: str) -> int:  # vtkMRMLScene
    """Remove every node a case put into the scene; returns how many were removed."""
    doomed = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.GetAttribute(CASE_ATTRIBUTE) == caseKey and node.GetAttribute(ROLE_ATTRIBUTE):
            doomed.append(node)
    for node in doomed:
        scene.RemoveNode(node)
    return len(doomed)


def remove_volume_results(scene, inputVolume, caseKey: str = "") -> int:  # MRML objects
    """Remove the result nodes (and scan-plane folder) of ``caseKey`` loaded for ``inputVolume``.

    A second *Run analysis* on the same volume calls this first, so it replaces the previous
    result instead of adding a second set; results of other volumes and reading cases stay.
    Returns how many nodes were removed.
    """
    volumeId = inputVolume.GetID() if inputVolume is not None else ""
    if not volumeId:
        return 0
    doomed = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if (
            node.GetAttribute(CASE_ATTRIBUTE) == caseKey
            and node.GetAttribute(ROLE_ATTRIBUTE)
            and node.GetAttribute(VOLUME_ATTRIBUTE) == volumeId
        ):
            doomed.append(node)
    for node in doomed:
        scene.RemoveNode(node)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    items = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), items, True)
    folders = [items.GetId(i) for i in range(items.GetNumberOfIds())]
    for item in folders:
        if (
            sh.GetItemAttribute(item, VOLUME_ATTRIBUTE) == volumeId
            and sh.GetItemAttribute(item, CASE_ATTRIBUTE) == caseKey
        ):
            sh.RemoveItem(item)  # the scan-plane folder (its planes were removed above)
    return len(doomed)


# --------------------------------------------------------------------------- export


def structure_value_of_name(name: str) -> int | None:
    """The TotalSpineSeg value a segment name stands for, or None for a free-text name.

    Accepts the structure names (``"L4"``, ``"L4-L5 disc"``, ``"sacrum"``, ``"spinal canal"``),
    a disc level without " disc" (``"L4-L5"``) and ``"canal"``; case and surrounding spaces do not
    matter.
    """
    key = " ".join(str(name).split()).lower()
    for value, info in STRUCTURES.items():
        if key in (info.name.lower(), level_of(info.name.lower())):
            return value
    return CANAL_LABEL if key == "canal" else None


def segment_label_values(segmentation) -> dict[str, int]:  # vtkMRMLSegmentationNode
    """Segment ID -> TotalSpineSeg value.

    A segment named after a structure takes that structure's value (so a reader's rename of a
    level re-assigns it); any other name keeps the value of the segment's label value tag. A
    segment with neither is refused, and so are two segments standing for the same structure:
    guessing a level would corrupt the grading.
    """
    seg = segmentation.GetSegmentation()
    result, unknown, owners = {}, [], {}
    for index in range(seg.GetNumberOfSegments()):
        segment_id = seg.GetNthSegmentID(index)
        segment = seg.GetSegment(segment_id)
        value = structure_value_of_name(segment.GetName())
        if value is None:
            tag = segment_tag(segment, LABEL_VALUE_TAG)
            value = int(tag) if tag not in (None, "") else None
        if value is None:
            unknown.append(segment.GetName())
            continue
        result[segment_id] = value
        owners.setdefault(value, []).append(segment.GetName())
    if unknown:
        raise ValueError(
            "cannot tell which structure these segments are: "
            + ", ".join(unknown)
            + "; name each after a structure (e.g. 'L4', 'L4-L5 disc') or delete it"
        )
    doubled = {v: names for v, names in owners.items() if len(names) > 1}
    if doubled:
        raise ValueError(
            "several segments stand for the same structure: "
            + "; ".join(f"{STRUCTURES[v].name}: {', '.join(repr(n) for n in names)}" for v, names in doubled.items())
            + ". Rename or delete all but one of each (when renumbering levels, rename every level that moves)"
        )
    return result


def export_labelmap(scene, segmentation, referenceVolume, path: Path | None = None) -> np.ndarray:
    """The edited segmentation as a TotalSpineSeg label array on the reference volume's grid.

    Values come from :func:`segment_label_values` through a colour table, so segment order does
    not matter. When ``path`` is given the labels are also written there (NIfTI/NRRD by suffix)
    with the reference volume's LPS geometry, ready for the core.
    """
    values = segment_label_values(segmentation)
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "LVP export colors")
    colors.SetTypeToUser()
    colors.SetNumberOfColors(max(max(values.values(), default=1), max(STRUCTURES)) + 1)
    for value in range(colors.GetNumberOfColors()):
        colors.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
    seg = segmentation.GetSegmentation()
    for segment_id, value in values.items():
        # The export matches segments to colour entries by segment name.
        colors.SetColor(value, seg.GetSegment(segment_id).GetName(), 1.0, 1.0, 1.0, 1.0)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LVP export")
    ids = vtk.vtkStringArray()
    for segment_id in values:
        ids.InsertNextValue(segment_id)
    try:
        ok = _segmentation_logic(scene).ExportSegmentsToLabelmapNode(
            segmentation, ids, labelmap, referenceVolume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, colors
        )
        if not ok:
            raise RuntimeError("could not export the segmentation to a labelmap")
        array = labelmap_array(labelmap)
        if path is not None:
            image = sitk.GetImageFromArray(array.astype(np.uint8))
            _set_lps_geometry(image, labelmap)
            sitk.WriteImage(image, str(path), useCompression=True)
    finally:
        scene.RemoveNode(labelmap)
        scene.RemoveNode(colors)
    return array


def _set_lps_geometry(image: sitk.Image, volume) -> None:  # a volume node
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])


def write_volume(volume, path: Path) -> Path:  # a scalar volume node
    """Write a scalar volume node to NIfTI/NRRD with SimpleITK, in LPS, for the child process.

    The volume is written as it is shown: under a parent transform (a registration, or the
    acquisition-geometry regularisation transform Slicer's DICOM import adds for a series with
    uneven slices) the voxels are written in world coordinates, the transform hardened into a
    temporary copy (resampled when it is not linear). The volume node itself is not changed.
    """
    source, copy = volume, None
    if volume.GetParentTransformNode() is not None:
        source = copy = hardened_copy(volume)
    try:
        array = labelmap_array(source)
        image = sitk.GetImageFromArray(array)
        _set_lps_geometry(image, source)
        sitk.WriteImage(image, str(path), useCompression=True)
    finally:
        if copy is not None and copy.GetScene() is not None:
            copy.GetScene().RemoveNode(copy)
    return Path(path)


def hardened_copy(volume):  # a scalar volume node under a transform
    """A temporary copy of ``volume`` in world coordinates (its parent transforms hardened)."""
    scene = volume.GetScene()
    copy = scene.AddNewNodeByClass(volume.GetClassName(), volume.GetName() + " (world)")
    copy.CopyOrientation(volume)
    image = vtk.vtkImageData()
    image.DeepCopy(volume.GetImageData())
    copy.SetAndObserveImageData(image)
    copy.SetAndObserveTransformNodeID(volume.GetParentTransformNode().GetID())
    if not copy.HardenTransform():
        scene.RemoveNode(copy)
        raise RuntimeError(f"could not apply the transform of {volume.GetName()!r} to its voxels")
    return copy


def series_uid_of(volume) -> str:  # a volume node or None
    """The DICOM SeriesInstanceUID a volume was loaded from, or ``""`` (not from DICOM).

    Slicer's DICOM import records it as the subject hierarchy item's ``DICOM`` UID.
    """
    if volume is None or volume.GetScene() is None:
        return ""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(volume.GetScene())
    item = sh.GetItemByDataNode(volume) if sh is not None else 0
    uid = sh.GetItemUID(item, "DICOM") if item else ""
    return uid or volume.GetAttribute("DICOM.SeriesInstanceUID") or ""


def save_report(outputDir: Path, report: dict) -> None:
    """Rewrite ``report.json`` atomically (write beside, then rename)."""
    import os

    path = Path(outputDir) / "report.json"
    tmp = path.with_name(f".report.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)


def mark_case_image(volume, caseKey: str) -> None:  # a volume node
    """Mark a reading case's image as the case's own, so the next case removes it with the rest."""
    mark_case_node(volume, caseKey, "image")


def volume_node_from_file(scene, path: Path, name: str):
    """Read an image into a new scalar volume node (SimpleITK, LPS to RAS)."""
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image_data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True, array_type=vtk.VTK_FLOAT))
    node.SetAndObserveImageData(image_data)
    node.SetIJKToRASMatrix(_ijk_to_ras(image))
    return node
