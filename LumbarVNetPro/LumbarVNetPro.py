"""LumbarVNetPro: the radiologist's workplace in 3D Slicer.

Thin glue between Qt/MRML and the core: the work is in ``LumbarVNetProLib`` (MRML, no Qt) and
the ``lvp`` core package (no Slicer). The Qt parts are imported only inside Slicer, so the
logic can be imported (and tested) with the Qt-free ``slicer-core`` libraries.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import slicer

from LumbarVNetProLib import scene as lvpscene
from LumbarVNetProLib.grades import describe_changes, grade_name, grade_values
from LumbarVNetProLib.logic import CaseLogic
from LumbarVNetProLib.parameters import DEVICE_LABELS, DEVICES, LumbarVNetProParameterNode, validate
from LumbarVNetProLib.process import ProcessFailed

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
    """The module logic: usable without the widget, e.g. ``LumbarVNetProLogic().process(volume)``."""

    def __init__(self, scene=None, runner=None, python: str | None = None) -> None:  # noqa: ANN001
        """``scene`` defaults to ``slicer.mrmlScene`` (set by the application)."""
        ScriptedLoadableModuleLogic.__init__(self)
        CaseLogic.__init__(self, scene if scene is not None else slicer.mrmlScene, runner, python)

    def getParameterNode(self) -> LumbarVNetProParameterNode:
        """The wrapped parameter node of the scene (Slicer only)."""
        return LumbarVNetProParameterNode(super().getParameterNode())

    def runFromParameters(self, params: LumbarVNetProParameterNode, progress=None) -> lvpscene.CaseNodes:  # noqa: ANN001
        """``process`` with the settings of a parameter node (raises ``ValueError`` with the problems)."""
        problems = validate(params)
        if problems:
            raise ValueError(" ".join(problems))
        modelDir = Path(params.modelFolder) if params.modelSource == "folder" else None
        return self.process(
            params.inputVolume,
            outputDir=params.outputFolder,
            device=params.device,
            modelDir=modelDir,
            showPlanes=params.showScanPlanes,
            progress=progress,
        )


# ----------------------------------------------------------------------------- widget


class LumbarVNetProWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: run, results, grade table, reading workflow. Holds no logic of its own."""

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        """Initialise state; the UI is built in :meth:`setup`."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.nodes = None
        self.rows = []
        self.readingSession = None
        self._caseKey = ""

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

        for device in DEVICES:
            self.ui.deviceComboBox.addItem(DEVICE_LABELS[device], device)
        self.ui.gradeTableWidget.setColumnCount(7)
        self.ui.gradeTableWidget.setHorizontalHeaderLabels(
            [
                _("Level"),
                _("Pathology"),
                _("AI grade"),
                _("Confidence"),
                _("Measurement"),
                _("Reader grade"),
                _("Decision"),
            ]
        )
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
        """Stop a running child and disconnect observers when the module is unloaded."""
        if self.job is not None:
            self.job.running.cancel()
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
        """Drop the parameter node before the scene closes."""
        self.setParameterNode(None)

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
        problems = validate(self._parameterNode)
        if problems:
            slicer.util.errorDisplay("\n".join(problems))
            return
        if not self._ensureDependencies():
            return
        params = self._parameterNode
        modelDir = Path(params.modelFolder) if params.modelSource == "folder" else None
        try:
            # startInference verifies the model's sha256 (lvp.model_catalog) before starting.
            self.job = self.logic.startInference(params.inputVolume, params.outputFolder, params.device, modelDir)
        except Exception as err:  # noqa: BLE001 - shown to the user as a message
            slicer.util.errorDisplay(_("Could not start the analysis: {error}").format(error=err))
            return
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.setText(_("Starting…"))
        self.ui.applyButton.setEnabled(False)
        self.ui.cancelButton.setEnabled(True)
        self.pollTimer.start()

    def onPoll(self) -> None:
        """Show the child's progress; load the result or show the error when it ends."""
        if self.job is None:
            self.pollTimer.stop()
            return
        for message in self.job.running.progress_messages():
            self.ui.progressBar.setValue(int(100 * message.progress))
            self.ui.statusLabel.setText(message.stage)
        if self.job.running.poll() is None:
            return
        self.pollTimer.stop()
        job, self.job = self.job, None
        self.ui.applyButton.setEnabled(True)
        self.ui.cancelButton.setEnabled(False)
        self.ui.progressBar.setVisible(False)
        if job.running.cancelled:
            self.ui.statusLabel.setText(_("Cancelled."))
            return
        try:
            self.logic.finishInference(job)
            params = self._parameterNode
            self.nodes = self.logic.loadResult(job.outputDir, params.inputVolume, "", params.showScanPlanes)
        except (ProcessFailed, ValueError, OSError) as err:
            self.ui.statusLabel.setText(_("Failed."))
            slicer.util.errorDisplay(_("The analysis failed: {error}").format(error=err))
            return
        self._showNodes()
        self.ui.statusLabel.setText(_("Done."))

    def onCancel(self) -> None:
        """Kill the child and everything it started."""
        if self.job is not None:
            self.job.running.cancel()

    def _ensureDependencies(self) -> bool:
        from LumbarVNetProLib import install

        missing = install.missing_requirements()
        if not missing:
            return True
        text = _("LumbarVNetPro needs these Python packages: {packages}. Install them now?").format(
            packages=", ".join(install.requirement_name(r) for r in missing)
        )
        if not slicer.util.confirmOkCancelDisplay(text):
            return False
        return self.onInstall()

    def onInstall(self) -> bool:
        """Install the core's missing third-party dependencies (the core ships in the module).

        Never SimpleITK or numpy; without a reachable package index the message says how to
        install offline.
        """
        from LumbarVNetProLib import install
        from LumbarVNetProLib.process import python_executable

        try:
            with slicer.util.tryWithErrorDisplay(_("Installing failed."), waitCursor=True):
                installed = install.install(
                    Path(tempfile.gettempdir()) / "lvp-install", self.logic.runner, python_executable()
                )
            done = _("Installed: {packages}").format(packages=", ".join(installed))
            self.ui.statusLabel.setText(done if installed else _("Nothing to install."))
            return True
        except Exception:  # noqa: BLE001 - already shown by tryWithErrorDisplay
            return False

    # ------------------------------------------------------------------ results
    def _showNodes(self) -> None:
        if self.nodes is None:
            return
        params = self._parameterNode
        params.segmentation = self.nodes.segmentation
        params.levelLabels = self.nodes.levelLabels
        params.gradeTable = self.nodes.gradeTable
        if self.nodes.segmentation is not None:
            editor = self.ui.segmentEditorWidget
            if editor.mrmlSegmentEditorNode() is None:
                editor.setMRMLSegmentEditorNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"))
            editor.setSegmentationNode(self.nodes.segmentation)
            editor.setSourceVolumeNode(params.inputVolume)
        self._fillGradeTable()

    def onShowPlanes(self, visible: bool) -> None:
        """One click shows or hides every scan plane."""
        if self.nodes is not None:
            lvpscene.set_planes_visible(self.nodes.scanPlanes, visible)

    def _fillGradeTable(self) -> None:
        table = self.ui.gradeTableWidget
        table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            cells = [
                row.level,
                row.pathology,
                grade_name(row.pathology, row.ai_grade),
                "" if row.confidence is None else f"{row.confidence:.2f}",
                f"{row.measurement} {row.value:.1f}" if row.value is not None else row.measurement,
            ]
            for c, text in enumerate(cells):
                table.setItem(r, c, qt.QTableWidgetItem(text))
            combo = qt.QComboBox()
            combo.addItem("—", None)
            for grade in grade_values(row.pathology):
                combo.addItem(f"{grade} {grade_name(row.pathology, grade)}", grade)
            combo.setCurrentIndex(max(combo.findData(row.reader_grade), 0))
            combo.connect(
                "currentIndexChanged(int)", lambda i, r=r, combo=combo: self.onReaderGrade(r, combo.itemData(i))
            )
            table.setCellWidget(r, 5, combo)
            table.setItem(r, 6, qt.QTableWidgetItem(row.decision or ""))

    def onReaderGrade(self, rowIndex: int, grade) -> None:  # noqa: ANN001 - int or None
        """The reader changed a grade in the combo box: save the draft, update the table node."""
        if grade is None:
            return
        row = self.rows[rowIndex]
        try:
            if self.readingSession is not None and self.readingSession.current is not None:
                self.readingSession.set_grade(row.level, row.pathology, int(grade))
            else:
                row.reader_grade = int(grade)
        except Exception as err:  # noqa: BLE001
            slicer.util.errorDisplay(str(err))
            return
        self.ui.gradeTableWidget.setItem(rowIndex, 6, qt.QTableWidgetItem(row.decision or ""))
        if self.nodes is not None and self.nodes.gradeTable is not None:
            lvpscene.write_grade_table(self.nodes.gradeTable, self.rows)

    def onRecompute(self) -> None:
        """Re-measure and re-grade from the edited segmentation; list the grades that changed."""
        if self.nodes is None or self.nodes.segmentation is None:
            slicer.util.errorDisplay(_("Load an AI result first."))
            return
        work = Path(tempfile.mkdtemp(prefix="lvp-recompute-"))
        try:
            with slicer.util.tryWithErrorDisplay(_("Recompute failed."), waitCursor=True):
                self.rows, changes, _report = self.logic.recompute(
                    self.nodes, self._parameterNode.inputVolume, self.rows, work, caseKey=self._caseKey
                )
                if self.readingSession is not None and self.readingSession.current is not None:
                    self.readingSession.replace_rows(self.rows)
        except Exception:  # noqa: BLE001 - already shown
            return
        self._fillGradeTable()
        lines = describe_changes(changes)
        self.ui.changesLabel.setText("\n".join(lines) if lines else _("No grade changed."))

    # ------------------------------------------------------------------ reading
    def onSignIn(self) -> None:
        """Open the reading database and list the reader's worklist with arms."""
        from LumbarVNetProLib.reading import ReadingSession
        from lvp.readingdb import ReadingDB

        params = self._parameterNode
        params.readerId = self.ui.readerIdLineEdit.text.strip()
        try:
            with slicer.util.tryWithErrorDisplay(_("Sign-in failed."), waitCursor=True):
                db = ReadingDB(params.databaseUrl or None)
                draftDir = Path(slicer.app.temporaryPath) / "LumbarVNetPro-drafts"
                self.readingSession = ReadingSession(db, params.readerId, draftDir)
        except Exception:  # noqa: BLE001 - already shown
            return
        self._fillWorklist()

    def _fillWorklist(self) -> None:
        self.ui.worklistWidget.clear()
        for item in self.readingSession.worklist():
            text = f"{item.case_key} — {item.arm.replace('_', '-')} — {item.status}"
            if not item.available:
                text += " " + _("(washout)")
            entry = qt.QListWidgetItem(text)
            entry.setData(qt.Qt.UserRole, item.assignment_id)
            self.ui.worklistWidget.addItem(entry)

    def onLoadCase(self) -> None:
        """Load the selected (or next) case in its arm and start the reading timer."""
        if self.readingSession is None:
            slicer.util.errorDisplay(_("Sign in first."))
            return
        selected = self.ui.worklistWidget.currentItem()
        item = None
        if selected is not None:
            wanted = selected.data(qt.Qt.UserRole)
            item = next((i for i in self.readingSession.worklist() if i.assignment_id == wanted), None)
        item = item or self.readingSession.next_assignment()
        if item is None:
            slicer.util.infoDisplay(_("Your worklist is done."))
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                self._loadAssignment(item)
        except Exception:  # noqa: BLE001 - already shown
            return

    def _loadAssignment(self, item) -> None:  # noqa: ANN001 - WorkItem
        if self.nodes is not None:
            lvpscene.remove_case_nodes(slicer.mrmlScene, self._caseKey)
        self._caseKey = item.case_key
        imageRef = Path(item.image_ref)
        volume = slicer.util.loadVolume(str(imageRef))
        report, resultDir = None, None
        if item.arm != "manual":
            # AI arm only: the case's precomputed result folder (``<image>.lvp``) or a fresh run.
            resultDir = imageRef.parent / (imageRef.name + ".lvp")
            if not (resultDir / "report.json").is_file():
                job = self.logic.startInference(volume, resultDir, self._parameterNode.device)
                job.running.wait()
                self.logic.finishInference(job)
            report = lvpscene.load_report(resultDir)
        current = self.readingSession.start(item.assignment_id, report)
        self.rows = current.rows
        self.nodes = self.logic.loadCase(
            item.arm, volume, self.rows, resultDir, item.case_key, self._parameterNode.showScanPlanes
        )
        self._parameterNode.inputVolume = volume
        self._showNodes()
        self.ui.armLabel.setText(_("Arm: {arm}").format(arm=item.arm.replace("_", "-")))
        self.ui.recomputeButton.setEnabled(item.arm != "manual")
        self.readTimer.start()
        self.onReadTick()

    def onReadTick(self) -> None:
        """Show the reading time of the current case."""
        current = self.readingSession.current if self.readingSession else None
        if current is None:
            self.readTimer.stop()
            self.ui.timerLabel.setText("")
            return
        self.ui.timerLabel.setText(time.strftime("%M:%S", time.gmtime(current.elapsed_s())))

    def onSubmit(self) -> None:
        """Submit the read (every grade, AI grade shown, time) and load the next case."""
        if self.readingSession is None or self.readingSession.current is None:
            slicer.util.errorDisplay(_("No case is being read."))
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Submit failed."), waitCursor=True):
                self.readingSession.submit()
        except Exception:  # noqa: BLE001 - already shown
            return
        self.readTimer.stop()
        self._fillWorklist()
        nextItem = self.readingSession.next_assignment()
        if nextItem is not None:
            self._loadAssignment(nextItem)
        else:
            slicer.util.infoDisplay(_("Read submitted. Your worklist is done."))


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
