"""The module's settings: one place that lists every parameter, its type, default and choices.

:func:`declare_parameters` returns a fresh class holding the declarations. ``LumbarVNetPro.py``
wraps one with Slicer's ``parameterNodeWrapper`` (the settings live in the scene's parameter
node and the widget binds to them); :data:`Settings` is the same declarations as a plain
dataclass, for scripts and tests that run the Qt-free logic without a parameter node. No
stand-in of Slicer's wrapper is made here: the wrapped class is always Slicer's own.

What is *not* a parameter: the reading database URL. Parameter nodes are saved into ``.mrml``
scenes, and a PostgreSQL URL may hold a password, so the URL lives in the application settings
(without its password) or the ``LVP_DATABASE_URL`` environment variable (see
:mod:`LumbarVNetProLib.reading`).
"""

# ruff: noqa: N815 - node fields use Slicer's camelCase, as the parameter node and .ui do
import dataclasses
import pathlib
from typing import Annotated

import slicer

DEVICES = ("auto", "cpu", "cuda")
DEVICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "GPU (CUDA)"}
# "catalog": the bundled model folder (or $LVP_MODEL_DIR); "folder": an offline model folder. A
# folder's models.json names its default model, which is the one used: choosing another model
# means choosing another folder (the core's `lvp infer --model DIR` takes a folder, not a name).
MODEL_SOURCES = ("catalog", "folder")


class _Marker:
    """The ``Choice`` annotation of the plain :data:`Settings` (no validation without Slicer)."""

    def __init__(self, choices: list) -> None:
        self.choices = list(choices)


def declare_parameters(choice: type = _Marker) -> type:
    """A new class with every setting of the module; ``choice`` is the ``Choice`` annotation class.

    Annotations are evaluated here (no ``from __future__ import annotations`` in this module),
    so Slicer's ``parameterNodeWrapper`` sees real types and its own ``Choice``.
    """

    class LumbarVNetProParameterNode:
        """Every setting of the module (the widget binds each to a control)."""

        # Run
        inputVolume: slicer.vtkMRMLScalarVolumeNode | None = None
        device: Annotated[str, choice(list(DEVICES))] = "auto"
        modelSource: Annotated[str, choice(list(MODEL_SOURCES))] = "catalog"
        modelFolder: pathlib.Path = pathlib.Path()
        outputFolder: pathlib.Path = pathlib.Path()
        showScanPlanes: bool = False
        # Reading (the database URL is deliberately absent: see the module docstring)
        readerId: str = ""
        # Results of the current case
        segmentation: slicer.vtkMRMLSegmentationNode | None = None
        levelLabels: slicer.vtkMRMLMarkupsFiducialNode | None = None
        gradeTable: slicer.vtkMRMLTableNode | None = None

    return LumbarVNetProParameterNode


Settings = dataclasses.dataclass(declare_parameters())
"""The settings as a plain dataclass (scripts, tests of the Qt-free logic)."""


def validate(params) -> list:  # a parameter node or Settings
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


def model_dir_of(params):  # a parameter node or Settings; Path or None
    """The offline model folder a run uses, or None for the bundled catalogue (or ``$LVP_MODEL_DIR``)."""
    if params.modelSource == "folder" and str(params.modelFolder) not in ("", "."):
        return pathlib.Path(params.modelFolder)
    return None
