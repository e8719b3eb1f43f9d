"""Render the extension's screenshot from an ``lvp demo`` result, offscreen, without Slicer.

The result is loaded the way the module loads it (``LumbarVNetProLib.scene.import_result`` on a
slicer-core MRML scene: segmentation with the structures' colours, level labels, grade table),
then drawn with VTK: a sagittal slice of the image with the segmentation over it and the level
labels, the segmentation's closed surfaces in 3D, and the grade table with each grade's
measurement and confidence and the run's warnings.

    lvp demo -o out/demo
    python docs/images/render_sample_result.py out/demo docs/images/LumbarVNetPro-sample-result.png

Needs the test extras (slicer-core, vtk) and an offscreen OpenGL (EGL or OSMesa) build of VTK.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = (1800, 900)
BACKGROUND = (0.11, 0.12, 0.15)
# Grades shown per level: the pathology key, its column title, and the unit of its measurement.
COLUMNS = (("herniation", "Herniation", "mm"), ("canal_stenosis", "Canal stenosis", "mm"),
           ("pfirrmann", "Pfirrmann", ""))
WIDTH = 24


def _import_module_code():
    """``slicer``, ``vtk`` and the module's scene helpers (the checkout's, unless already importable)."""
    try:
        import LumbarVNetProLib  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT / "LumbarVNetPro"))
    import slicer
    import vtk

    from LumbarVNetProLib import scene as lvpscene

    return slicer, vtk, lvpscene


def _array(node) -> np.ndarray:  # noqa: ANN001 - a volume node
    from vtk.util import numpy_support

    image = node.GetImageData()
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def _slice_rgb(volume: np.ndarray, labels: np.ndarray, colors: dict[int, tuple], k: int) -> np.ndarray:
    """The image's slice ``k`` windowed to grey, with the labels blended in their colours."""
    image = volume[k].astype(np.float32)
    lo, hi = np.percentile(image, [1.0, 99.5])
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    overlay = labels[k]
    for value, color in colors.items():
        mask = overlay == value
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * np.asarray(color)
    return (rgb * 255).astype(np.uint8)


def _slice_actor(vtk, rgb: np.ndarray, ijk_to_ras, k: int):  # noqa: ANN001, ANN202 - vtk objects
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(rgb.shape[1], rgb.shape[0], 1)
    scalars = numpy_support.numpy_to_vtk(rgb.reshape(-1, 3), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputData(image)
    transform = vtk.vtkTransform()
    transform.SetMatrix(ijk_to_ras)
    transform.Translate(0, 0, k)  # the 2D image is slice k of the volume's grid
    actor.SetUserTransform(transform)
    return actor


def _text(vtk, text: str, x: float, y: float, size: int, color=(0.92, 0.92, 0.92), bold=False, mono=False):  # noqa: ANN001, ANN202
    actor = vtk.vtkTextActor()
    actor.SetInput(text)
    prop = actor.GetTextProperty()
    prop.SetFontSize(size)
    prop.SetColor(*color)
    prop.SetBold(bold)
    if mono:
        prop.SetFontFamilyToCourier()
    prop.SetVerticalJustificationToTop()
    actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    actor.GetPositionCoordinate().SetValue(x, y)
    return actor


def _label(vtk, text: str, position, color) -> object:  # noqa: ANN001 - vtk objects
    actor = vtk.vtkBillboardTextActor3D()
    actor.SetInput(text)
    actor.SetPosition(*position)
    prop = actor.GetTextProperty()
    prop.SetFontSize(17)
    prop.SetBold(True)
    prop.SetColor(*color)
    prop.SetShadow(True)
    prop.SetJustificationToCentered()
    return actor


def _wrap(lines: list[str], width: int = 80) -> str:
    """Lines broken at spaces to ``width`` characters, continuation lines indented."""
    wrapped = []
    for line in lines:
        indent = "    " if line.startswith("  ") else "   "
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            wrapped.append(line[:cut])
            line = indent + line[cut + 1:]
        wrapped.append(line)
    return "\n".join(wrapped)


def _grade_cell(row: dict, unit: str) -> str:
    """One grade as the reader sees it: name, measurement value and confidence (or why none)."""
    if not row["ai_grade"]:
        return "not assessable"
    value = f" ({float(row['value']):.{1 if unit else 2}f}{' ' + unit if unit else ''})" if row["value"] else ""
    return f"{row['ai_grade_name']}{value} {float(row['confidence']):.2f}"


def render(result_dir: Path, out: Path) -> Path:
    """Draw the result folder's sample case and write the PNG ``out``."""
    slicer, vtk, lvpscene = _import_module_code()
    report = lvpscene.load_report(result_dir)
    # The Slicer application registers the labelmap-to-surface rule at start-up, slicer-core does
    # not; a segmentation copies the registered rules when it is created, so register them first.
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    scene = slicer.vtkMRMLScene()
    volume = lvpscene.volume_node_from_file(scene, Path(report["input"]["path"]), "sample")
    nodes = lvpscene.import_result(scene, result_dir, volume)
    labelmap = lvpscene.labelmap_node_from_file(scene, result_dir / report["outputs"]["segmentation"], "labels")

    segmentation = nodes.segmentation
    segments = segmentation.GetSegmentation()
    colors = {}
    for index in range(segments.GetNumberOfSegments()):
        segment = segments.GetNthSegment(index)
        colors[segment.GetLabelValue()] = tuple(segment.GetColor())

    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    voxels, labels = _array(volume), _array(labelmap)
    if voxels.shape != labels.shape:
        raise ValueError(f"segmentation grid {labels.shape} differs from the image's {voxels.shape}")
    k = voxels.shape[0] // 2
    rgb = _slice_rgb(voxels, labels, colors, k)

    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*SIZE)
    window.SetMultiSamples(8)

    # Sagittal slice, seen from the patient's left (anterior on the left), as Slicer shows it.
    sagittal = vtk.vtkRenderer()
    sagittal.SetViewport(0.0, 0.0, 0.36, 1.0)
    sagittal.SetBackground(0, 0, 0)
    sagittal.AddActor(_slice_actor(vtk, rgb, ijk_to_ras, k))
    slice_x = ijk_to_ras.MultiplyPoint((0, 0, k, 1))[0]
    levels = nodes.levelLabels
    for index in range(levels.GetNumberOfControlPoints()):
        name = levels.GetNthControlPointLabel(index)
        r, a, s = levels.GetNthControlPointPosition(index)
        is_disc = "-" in name
        # In front of the vertebral bodies (discs and vertebrae alternate, so they do not overlap).
        position = (slice_x - 5.0, a + (44.0 if is_disc else 36.0), s)
        sagittal.AddActor(_label(vtk, name, position, (1.0, 0.93, 0.45) if is_disc else (0.80, 0.92, 1.0)))
    sagittal.AddActor(_text(vtk, "Sagittal T2, segmentation and level labels", 0.02, 0.98, 16))
    window.AddRenderer(sagittal)
    camera = sagittal.GetActiveCamera()
    bounds = [0.0] * 6
    sagittal.ComputeVisiblePropBounds(bounds)
    center = [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]
    camera.SetFocalPoint(*center)
    camera.SetPosition(center[0] - 500.0, center[1], center[2])
    camera.SetViewUp(0, 0, 1)
    camera.ParallelProjectionOn()
    sagittal.ResetCamera()
    camera.SetParallelScale(0.5 * (bounds[5] - bounds[4]) * 1.02)

    # 3D: the segmentation's closed surfaces, as Slicer's 3D view shows them.
    view3d = vtk.vtkRenderer()
    view3d.SetViewport(0.36, 0.0, 0.64, 1.0)
    view3d.SetBackground(*BACKGROUND)
    view3d.SetBackground2(0.30, 0.32, 0.40)
    view3d.GradientBackgroundOn()
    if not segmentation.CreateClosedSurfaceRepresentation():
        raise RuntimeError("no closed surfaces could be made from the segmentation")
    for index in range(segments.GetNumberOfSegments()):
        segment_id = segments.GetNthSegmentID(index)
        surface = vtk.vtkPolyData()
        segmentation.GetClosedSurfaceRepresentation(segment_id, surface)
        if surface.GetNumberOfPoints() == 0:
            continue
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(surface)
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*segments.GetSegment(segment_id).GetColor())
        actor.GetProperty().SetSpecular(0.2)
        view3d.AddActor(actor)
    view3d.AddActor(_text(vtk, "3D: segmentation surfaces", 0.03, 0.98, 16))
    window.AddRenderer(view3d)
    view3d.ResetCamera()
    camera3d = view3d.GetActiveCamera()
    focal = camera3d.GetFocalPoint()
    distance = camera3d.GetDistance()
    # From the patient's left and behind, slightly above: discs, bodies and canal all visible.
    direction = np.array([-0.75, -0.45, 0.25])
    direction = direction / np.linalg.norm(direction)
    camera3d.SetPosition(*(np.asarray(focal) + direction * distance))
    camera3d.SetViewUp(0, 0, 1)
    view3d.ResetCamera()
    camera3d.Zoom(1.35)

    # The grade table the reader reviews (the module's table node), and the run's warnings.
    table = vtk.vtkRenderer()
    table.SetViewport(0.64, 0.0, 1.0, 1.0)
    table.SetBackground(*BACKGROUND)
    rows = lvpscene.read_grade_table(nodes.gradeTable)
    model = report["model"]
    table.AddActor(_text(vtk, "LumbarVNetPro: AI grades for the reader", 0.03, 0.98, 20, bold=True))
    table.AddActor(_text(vtk, f"lvp demo on the bundled SPIDER sample (validation case)\n"
                              f"model {model['name']} {model['version']} on {model['device']}, "
                              f"status {report['status']}; grade, measurement, confidence p",
                         0.03, 0.935, 13, color=(0.75, 0.78, 0.85)))
    by_level: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_level.setdefault(row["level"], {})[row["pathology"]] = row
    lines = ["{:<8}".format("Level") + "".join(f"{title:<{WIDTH}}" for _, title, _ in COLUMNS)]
    # Every level the run found; a grade missing from the table is one the model could not give.
    for level in (item["level"] for item in report.get("levels", [])):
        cells = by_level.get(level, {})
        lines.append(f"{level:<8}" + "".join(
            f"{_grade_cell(cells[key], unit) if key in cells else 'not assessable':<{WIDTH}}"
            for key, _, unit in COLUMNS))
    table.AddActor(_text(vtk, "\n".join(lines), 0.03, 0.86, 13, mono=True))
    below = 0.86 - 0.0215 * len(lines) - 0.02
    legend = ("grade (measurement) confidence; measurements: posterior disc displacement,\n"
              "canal AP diameter, disc signal ratio. 'not assessable': the run could not\n"
              "measure it (the report says why); the reader grades it.")
    table.AddActor(_text(vtk, legend, 0.03, below, 12, color=(0.75, 0.78, 0.85)))
    below -= 0.09
    notes = []
    numbering = report.get("numbering")  # report schema 1.1: is the level naming trustworthy?
    if numbering is not None:
        notes.append("Level numbering: " + ("confident" if numbering.get("confident") else
                                            "NOT CONFIDENT, check the level names"))
        notes += [f"  - {reason}" for reason in numbering.get("reasons", [])]
    notes += [f"! {w['code']}: {w['message']}" for w in report.get("warnings", [])]
    if notes:
        table.AddActor(_text(vtk, "Checks and warnings of this run (shown in the panel too):\n" + _wrap(notes),
                             0.03, below, 12, color=(1.0, 0.78, 0.45)))
    table.AddActor(_text(vtk, "Research use. Every AI grade is a suggestion the reader accepts or changes.",
                         0.03, 0.05, 12, color=(0.75, 0.78, 0.85)))
    window.AddRenderer(table)

    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtk.vtkPNGWriter()
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.SetFileName(str(out))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``render_sample_result.py RESULT_DIR OUT.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result_dir", type=Path, help="an lvp demo / lvp infer output folder")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args(argv)
    print(render(args.result_dir, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
