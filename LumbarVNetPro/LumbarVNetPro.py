"""LumbarVNetPro: the radiologist's workplace in 3D Slicer.

Thin glue between Qt/MRML and the core: the work is in ``LumbarVNetProLib`` (MRML, no Qt) and
the ``lvp`` core package (no Slicer). The Qt parts are imported only inside Slicer, so the
logic can be imported (and tested) with the Qt-free ``slicer-core`` libraries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import slicer

from LumbarVNetProLib import scene as lvpscene
from LumbarVNetProLib import workflow
from LumbarVNetProLib.grades import grade_choices, table_cells
from LumbarVNetProLib.logic import CaseLogic
from LumbarVNetProLib.parameters import DEVICE_LABELS, DEVICES, LumbarVNetProParameterNode

try:  # The Slicer application (Qt); absent under slicer-core.
    import qt
    from slicer.i18n import tr as _
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
    from slicer.util import VTKObservationMixin

    HAVE_QT = True
except ImportError:
    HAVE_QT = False

    def _(text: str) -> str:  # noqa: D103 - no translation without the application
        return text

    class ScriptedLoadableModule:  # noqa: D101 - stand-ins so the classes below can be defined
        pass

    class ScriptedLoadableModuleWidget:  # noqa: D101
        pass

    class ScriptedLoadableModuleLogic:  # noqa: D101
        def __init__(self) -> None:  # noqa: D107
            pass

    class ScriptedLoadableModuleTest:  # noqa: D101
        pass

    class VTKObservationMixin:  # noqa: D101
        def __init__(self) -> None:  # noqa: D107
            pass


MODULE_NAME = "LumbarVNetPro"
MODULE_DIR = Path(__file__).resolve().parent


def resourceCandidates(relativePath: str, moduleDir: Path = MODULE_DIR) -> list[Path]:
    """Where a resource may be, in the order searched.

    Slicer's ``resourcePath()`` looks in ``Resources/`` beside the module script. In this
    repository the resources sit one level up (``<repo>/Resources``, listed in CMake as
    ``../Resources/...``), and the build copies them either beside the script or one level up,
    depending on how CMake resolves the ``..``; both are tried.
    """
    return [moduleDir / "Resources" / relativePath, moduleDir.parent / "Resources" / relativePath]


def findResource(relativePath: str, moduleDir: Path = MODULE_DIR) -> Path:
    """The first existing candidate of :func:`resourceCandidates` (``FileNotFoundError`` if none)."""
    for candidate in resourceCandidates(relativePath, moduleDir):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{relativePath} not found in " + ", ".join(str(p.parent) for p in resourceCandidates(relativePath, moduleDir))
    )


# ----------------------------------------------------------------------------- module


class LumbarVNetPro(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent) -> None:  # noqa: ANN001 - qSlicerScriptedLoadableModule
        """Set the title, category, help and acknowledgement."""
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LumbarVNetPro")
        self.parent.categories = [_("Segmentation")]
        self.parent.dependencies = ["Segmentations", "Markups", "Tables"]
        self.parent.contributors = ["LumbarVNetPro developers"]
        self.parent.helpText = _(
            "Lumbar spine MRI reading: segmentation of vertebrae, discs and canal, level labels, "
            "axial scan planes and grading of disc herniation, canal and lateral recess stenosis, "
            "with a reader-study workflow (manual and AI-assisted arms)."
        )
        self.parent.acknowledgementText = _(
            "After Cheng et al., Lumbar VNet Pro, Research 2026. Sample data: SPIDER (CC BY 4.0)."
        )
        iconPath = next((p for p in resourceCandidates("Icons/LumbarVNetPro.png") if p.is_file()), None)
        if iconPath is not None and HAVE_QT:
            self.parent.icon = qt.QIcon(str(iconPath))


# ----------------------------------------------------------------------------- logic


class LumbarVNetProLogic(ScriptedLoadableModuleLogic, CaseLogic):
    """The module logic: usable without the widget, e.g. ``LumbarVNetProLogic().process(volume)``.

    Everything but the parameter node is :class:`LumbarVNetProLib.logic.CaseLogic` (also
    ``runFromParameters(params)``), which the pytest suite runs on ``slicer-core``.
    """

    def __init__(self, scene=None, runner=None, python: str | None = None) -> None:  # noqa: ANN001
        """``scene`` defaults to ``slicer.mrmlScene`` (set by the application)."""
        ScriptedLoadableModuleLogic.__init__(self)
        CaseLogic.__init__(self, scene if scene is not None else slicer.mrmlScene, runner, python)

    def getParameterNode(self) -> LumbarVNetProParameterNode:
        """The wrapped parameter node of the scene (Slicer only)."""
        return LumbarVNetProParameterNode(super().getParameterNode())


# ----------------------------------------------------------------------------- widget


class LumbarVNetProWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: Qt wiring only. State and decisions are in :class:`LumbarVNetProLib.workflow.Workplace`."""

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        """Initialise state; the UI is built in :meth:`setup`."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.workplace = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def resourcePath(self, filename: str) -> str:
        """Resources beside the script (installed) or in the repository's ``Resources``."""
        return str(findResource(filename))

    def setup(self) -> None:
        """Load the .ui, bind it to the parameter node and connect the buttons."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LumbarVNetPro.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LumbarVNetProLogic()
        self.workplace = workflow.Workplace(self.logic)

        for device in DEVICES:
            self.ui.deviceComboBox.addItem(DEVICE_LABELS[device], device)
        headers = [_("Level"), _("Pathology"), _("AI grade"), _("Confidence"), _("Measurement")]
        headers += [_("Reader grade"), _("Decision")]
        self.ui.gradeTableWidget.setColumnCount(len(headers))
        self.ui.gradeTableWidget.setHorizontalHeaderLabels(headers)
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setEnabled(False)

        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecompute)
        self.ui.showPlanesCheckBox.connect("toggled(bool)", self.onShowPlanes)
        self.ui.signInButton.connect("clicked(bool)", self.onSignIn)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.installButton.connect("clicked(bool)", self.onInstall)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)

        # The child process is polled from the GUI thread: Qt widgets are never touched elsewhere.
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(200)
        self.pollTimer.connect("timeout()", self.onPoll)
        self.readTimer = qt.QTimer()
        self.readTimer.setInterval(1000)
        self.readTimer.connect("timeout()", self.onReadTick)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Stop a running child, the timers and the observers when the module is unloaded."""
        if self.workplace is not None:
            self.workplace.cancel()
        self.pollTimer.stop()
        self.readTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        """Make sure the parameter node exists when the module is shown."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Unbind the GUI from the parameter node."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:  # noqa: ANN001
        """Drop the parameter node and the case nodes before the scene closes."""
        self.setParameterNode(None)
        self.workplace.forgetCase()
        self._fillGradeTable()

    def onSceneEndClose(self, caller, event) -> None:  # noqa: ANN001
        """Recreate the parameter node in the new scene."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Bind to the scene's parameter node, picking a volume if none is chosen."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, node) -> None:  # noqa: ANN001
        """Connect the GUI (``SlicerParameterName`` properties in the .ui) to ``node``."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = node
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            index = self.ui.deviceComboBox.findData(self._parameterNode.device)
            self.ui.deviceComboBox.setCurrentIndex(max(index, 0))

    def onDeviceChanged(self, index: int) -> None:
        """The device combo box shows labels; the parameter holds the device key."""
        if self._parameterNode:
            self._parameterNode.device = self.ui.deviceComboBox.itemData(index) or "auto"

    # --------------------------------------------------------------------- run
    def onApply(self) -> None:
        """Start inference in a child process; progress comes from its stage messages."""
        if not self._ensureDependencies():
            return
        try:
            self.workplace.startRun(self._parameterNode)
        except Exception as err:  # noqa: BLE001 - settings, model check or start: shown as a message
            slicer.util.errorDisplay(_("Could not start the analysis: {error}").format(error=err))
            return
        self._setRunning(True)
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.setText(_("Starting…"))
        self.pollTimer.start()

    def _setRunning(self, running: bool) -> None:
        self.ui.progressBar.setVisible(running)
        self.ui.applyButton.setEnabled(not running)
        self.ui.cancelButton.setEnabled(running)

    def onPoll(self) -> None:
        """Show the child's progress; show the result or the error when it ends."""
        params = self._parameterNode
        result = self.workplace.poll(params.inputVolume if params else None, bool(params and params.showScanPlanes))
        if result.stage is not None:
            self.ui.progressBar.setValue(int(100 * (result.progress or 0.0)))
            self.ui.statusLabel.setText(result.stage)
        if result.state == workflow.RUNNING:
            return
        self.pollTimer.stop()
        self._setRunning(False)
        if result.state == workflow.CANCELLED:
            self.ui.statusLabel.setText(_("Cancelled."))
        elif result.state == workflow.FAILED:
            self.ui.statusLabel.setText(_("Failed."))
            slicer.util.errorDisplay(_("The analysis failed: {error}").format(error=result.error))
        else:
            self._showNodes()
            self.ui.statusLabel.setText(_("Done."))

    def onCancel(self) -> None:
        """Kill the child and everything it started."""
        self.workplace.cancel()

    def _ensureDependencies(self) -> bool:
        from LumbarVNetProLib import install

        missing = install.missing_names()
        if not missing:
            return True
        text = _("LumbarVNetPro needs these Python packages: {packages}. Install them now?")
        if not slicer.util.confirmOkCancelDisplay(text.format(packages=", ".join(missing))):
            return False
        return self.onInstall()

    def onInstall(self) -> bool:
        """Install the core's missing third-party dependencies (never SimpleITK or numpy)."""
        from LumbarVNetProLib import install

        try:
            with slicer.util.tryWithErrorDisplay(_("Installing failed."), waitCursor=True):
                installed = install.install_into_slicer(self.logic.runner)
        except Exception:  # noqa: BLE001 - already shown by tryWithErrorDisplay
            return False
        done = _("Installed: {packages}").format(packages=", ".join(installed))
        self.ui.statusLabel.setText(done if installed else _("Nothing to install."))
        return True

    # ------------------------------------------------------------------ results
    def _showNodes(self) -> None:
        nodes = self.workplace.nodes
        if nodes is None:
            return
        params = self._parameterNode
        params.segmentation = nodes.segmentation
        params.levelLabels = nodes.levelLabels
        params.gradeTable = nodes.gradeTable
        if nodes.segmentation is not None:
            editor = self.ui.segmentEditorWidget
            if editor.mrmlSegmentEditorNode() is None:
                editor.setMRMLSegmentEditorNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"))
            editor.setSegmentationNode(nodes.segmentation)
            editor.setSourceVolumeNode(params.inputVolume)
        self.ui.recomputeButton.setEnabled(self.workplace.canRecompute)
        self._fillGradeTable()

    def onShowPlanes(self, visible: bool) -> None:
        """One click shows or hides every scan plane."""
        if self.workplace.nodes is not None:
            lvpscene.set_planes_visible(self.workplace.nodes.scanPlanes, visible)

    def _fillGradeTable(self) -> None:
        table = self.ui.gradeTableWidget
        rows = self.workplace.rows
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(table_cells(row)):
                table.setItem(r, c, qt.QTableWidgetItem(text))
            combo = qt.QComboBox()
            combo.addItem("—", None)
            for label, grade in grade_choices(row.pathology):
                combo.addItem(label, grade)
            combo.setCurrentIndex(max(combo.findData(row.reader_grade), 0))
            combo.connect(
                "currentIndexChanged(int)", lambda i, r=r, combo=combo: self.onReaderGrade(r, combo.itemData(i))
            )
            table.setCellWidget(r, 5, combo)
            table.setItem(r, 6, qt.QTableWidgetItem(row.decision or ""))

    def onReaderGrade(self, rowIndex: int, grade) -> None:  # noqa: ANN001 - int or None
        """The reader changed a grade in the combo box: draft, grade table node, decision cell."""
        try:
            row = self.workplace.setReaderGrade(rowIndex, grade)
        except Exception as err:  # noqa: BLE001 - shown as a message
            slicer.util.errorDisplay(str(err))
            return
        if row is not None:
            self.ui.gradeTableWidget.setItem(rowIndex, 6, qt.QTableWidgetItem(row.decision or ""))

    def onRecompute(self) -> None:
        """Re-measure and re-grade from the edited segmentation; list the grades that changed."""
        try:
            with slicer.util.tryWithErrorDisplay(_("Recompute failed."), waitCursor=True):
                lines = self.workplace.recompute(self._parameterNode.inputVolume)
        except Exception:  # noqa: BLE001 - already shown
            return
        self._fillGradeTable()
        self.ui.changesLabel.setText("\n".join(lines) if lines else _("No grade changed."))

    # ------------------------------------------------------------------ reading
    def onSignIn(self) -> None:
        """Open the reading database and list the reader's worklist with arms."""
        params = self._parameterNode
        params.readerId = self.ui.readerIdLineEdit.text.strip()
        draftDir = Path(slicer.app.temporaryPath) / "LumbarVNetPro-drafts"
        try:
            with slicer.util.tryWithErrorDisplay(_("Sign-in failed."), waitCursor=True):
                self.workplace.signIn(params.readerId, params.databaseUrl, draftDir)
        except Exception:  # noqa: BLE001 - already shown
            return
        self._fillWorklist()

    def _fillWorklist(self) -> None:
        self.ui.worklistWidget.clear()
        for entry in self.workplace.worklist(washout=_("(washout)")):
            item = qt.QListWidgetItem(entry.text)
            item.setData(qt.Qt.UserRole, entry.assignmentId)
            self.ui.worklistWidget.addItem(item)

    def onLoadCase(self) -> None:
        """Load the selected (or next) case in its arm and start the reading timer."""
        selected = self.ui.worklistWidget.currentItem()
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                item = self.workplace.pickAssignment(selected.data(qt.Qt.UserRole) if selected else None)
                if item is not None:
                    self._loadAssignment(item)
        except Exception:  # noqa: BLE001 - already shown
            return
        if item is None:
            slicer.util.infoDisplay(_("Your worklist is done."))

    def _loadAssignment(self, item) -> None:  # noqa: ANN001 - WorkItem
        params = self._parameterNode
        volume = self.workplace.loadAssignment(item, slicer.util.loadVolume, params.device, params.showScanPlanes)
        params.inputVolume = volume
        self._showNodes()
        self.ui.armLabel.setText(_("Arm: {arm}").format(arm=item.arm.replace("_", "-")))
        self.readTimer.start()
        self.onReadTick()

    def onReadTick(self) -> None:
        """Show the reading time of the current case."""
        text = self.workplace.readingTime()
        if text is None:
            self.readTimer.stop()
        self.ui.timerLabel.setText(text or "")

    def onSubmit(self) -> None:
        """Submit the read (every grade, AI grade shown, time) and load the next case."""
        try:
            with slicer.util.tryWithErrorDisplay(_("Submit failed."), waitCursor=True):
                nextItem = self.workplace.submit()
        except Exception:  # noqa: BLE001 - already shown
            return
        self.readTimer.stop()
        self._fillWorklist()
        if nextItem is None:
            slicer.util.infoDisplay(_("Read submitted. Your worklist is done."))
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                self._loadAssignment(nextItem)
        except Exception:  # noqa: BLE001 - already shown
            return


# ----------------------------------------------------------------------------- self-test


class LumbarVNetProTest(ScriptedLoadableModuleTest):
    """Full flow on the bundled sample inside Slicer with the real model.

    The flow is :func:`LumbarVNetProLib.selftest.full_flow`, the same code the pytest suite runs
    on slicer-core (``Testing/Python/test_slicer_flow.py``): child-process inference with the
    bundled model, scene import, manual and AI-assisted reads in a temporary SQLite reading
    database (accept / modify), a segmentation edit and a level rename, Recompute, submit.
    """

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run every test of the module."""
        self.setUp()
        self.test_full_flow()

    def test_full_flow(self) -> None:
        """Load the sample and run the shared full flow on ``slicer.mrmlScene``."""
        from LumbarVNetProLib.selftest import full_flow

        self.delayDisplay("Loading the bundled sample")
        sample = findResource("Sample/spider_sample_t2.nii.gz")
        volume = slicer.util.loadVolume(str(sample))
        work = Path(tempfile.mkdtemp(prefix="lvp-selftest-"))
        summary = full_flow(slicer.mrmlScene, volume, sample, work, device="auto", log=self.delayDisplay)
        self.assertEqual(summary["recomputed"]["model"]["name"], "label-map")
        self.delayDisplay("Test passed")


__all__ = [
    "HAVE_QT",
    "LumbarVNetPro",
    "LumbarVNetProLogic",
    "LumbarVNetProTest",
    "LumbarVNetProWidget",
    "findResource",
]
