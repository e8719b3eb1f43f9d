"""The module's settings: one place that lists every parameter, its type, default and choices.

Inside Slicer the class is decorated with ``slicer.parameterNodeWrapper`` (the settings live in
the scene's parameter node, saved with the scene, and the widget binds to them); without the
application (``slicer-core``) it is a plain dataclass with the same fields, so the logic and
the tests use the same names and defaults.
"""

# ruff: noqa: N815 - node fields use Slicer's camelCase, as the parameter node and .ui do
from __future__ import annotations

import dataclasses
import pathlib
from typing import Annotated

import slicer

try:  # Slicer application
    from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper

    HAVE_WRAPPER = True
except ImportError:  # slicer-core: same declarations, stored in a dataclass
    HAVE_WRAPPER = False

    class Choice:  # noqa: D101 - stand-in for slicer.parameterNodeWrapper.Choice
        def __init__(self, choices: list) -> None:  # noqa: D107
            self.choices = list(choices)

    class Default:  # noqa: D101 - stand-in for slicer.parameterNodeWrapper.Default
        def __init__(self, value: object) -> None:  # noqa: D107
            self.value = value

    def parameterNodeWrapper(cls):  # noqa: ANN001, ANN201, D103 - stand-in decorator
        return dataclasses.dataclass(cls)


DEVICES = ("auto", "cpu", "cuda")
DEVICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "GPU (CUDA)"}
# "catalog": the bundled model folder (or $LVP_MODEL_DIR); "folder": an offline model folder. A
# folder's models.json names its default model, which is the one used: choosing another model
# means choosing another folder (the core's `lvp infer --model DIR` takes a folder, not a name).
MODEL_SOURCES = ("catalog", "folder")


@parameterNodeWrapper
class LumbarVNetProParameterNode:
    """Every setting of the module (the widget binds each to a control)."""

    # Run
    inputVolume: slicer.vtkMRMLScalarVolumeNode | None = None
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    modelSource: Annotated[str, Choice(list(MODEL_SOURCES))] = "catalog"
    modelFolder: pathlib.Path = pathlib.Path()
    outputFolder: pathlib.Path = pathlib.Path()
    showScanPlanes: bool = False
    # Reading
    readerId: str = ""
    databaseUrl: str = ""
    # Results of the current case
    segmentation: slicer.vtkMRMLSegmentationNode | None = None
    levelLabels: slicer.vtkMRMLMarkupsFiducialNode | None = None
    gradeTable: slicer.vtkMRMLTableNode | None = None


def validate(params) -> list[str]:  # noqa: ANN001 - a LumbarVNetProParameterNode
    """Problems that stop a run, as readable sentences (empty when the settings are usable)."""
    problems = []
    if params.inputVolume is None:
        problems.append("Select an input volume (a sagittal T2-weighted lumbar spine series).")
    if params.device not in DEVICES:
        problems.append(f"Unknown device {params.device!r}; choose {', '.join(DEVICES)}.")
    if params.modelSource not in MODEL_SOURCES:
        problems.append(f"Unknown model source {params.modelSource!r}.")
    if params.modelSource == "folder":
        folder = pathlib.Path(params.modelFolder)
        if str(folder) in ("", ".") or not folder.is_dir():
            problems.append("Choose the offline model folder (it holds models.json and the weight files it lists).")
    return problems


def model_dir_of(params) -> pathlib.Path | None:  # noqa: ANN001 - a LumbarVNetProParameterNode
    """The offline model folder a run uses, or None for the bundled catalogue (or ``$LVP_MODEL_DIR``)."""
    if params.modelSource == "folder" and str(params.modelFolder) not in ("", "."):
        return pathlib.Path(params.modelFolder)
    return None
