"""LumbarVNetPro: the radiologist's workplace in 3D Slicer.

Thin glue between Qt/MRML and the core: the work is in ``LumbarVNetProLib`` (MRML, no Qt) and
the ``lvp`` core package (no Slicer). This file runs on Slicer's own base classes only; the
tests load it on Slicer 5.12.3's ``ScriptedLoadableModule``, ``util`` and
``parameterNodeWrapper`` with stand-ins for ``qt``/``ctk`` alone (Testing/Python/slicer_app.py).

Over 400 lines on purpose: Slicer loads a scripted module from this one file (widget, logic,
self-test classes must live here); each method only wires one Qt control to LumbarVNetProLib.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import ctk
import qt
import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LumbarVNetProLib import scene as lvpscene
from LumbarVNetProLib import workflow
from LumbarVNetProLib.grades import grade_choices, table_cells
from LumbarVNetProLib.logic import CaseLogic
from LumbarVNetProLib.parameters import DEVICE_LABELS, DEVICES, declare_parameters

MODULE_NAME = "LumbarVNetPro"
MODULE_DIR = Path(__file__).resolve().parent
SETTINGS_DATABASE_URL = "LumbarVNetPro/DatabaseUrl"

LumbarVNetProParameterNode = parameterNodeWrapper(declare_parameters(Choice))


def resourceCandidates(relativePath: str, moduleDir: Path = MODULE_DIR) -> list[Path]:
    """Where a resource may be, in the order searched: ``Resources/`` beside the script
    (installed extension, as Slicer's ``resourcePath()``), then the repository's ``Resources``.
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

    def __init__(self, parent) -> None:  # qSlicerScriptedLoadableModule
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
        if iconPath is not None:
            self.parent.icon = qt.QIcon(str(iconPath))


# ----------------------------------------------------------------------------- logic


class LumbarVNetProLogic(ScriptedLoadableModuleLogic):
    """The module logic: usable without the widget, e.g. ``LumbarVNetProLogic().process(volume)``.

    Composition, not inheritance: Slicer's ``ScriptedLoadableModuleLogic.__init__`` calls
    ``super().__init__()`` without arguments, so a second base needing a scene cannot follow it
    in the MRO. The work is :attr:`case`, a :class:`LumbarVNetProLib.logic.CaseLogic`.
    """

    def __init__(self, scene=None, runner=None, python: str | None = None) -> None:
        """``scene`` defaults to ``slicer.mrmlScene`` (set by the application)."""
        ScriptedLoadableModuleLogic.__init__(self)
        self.case = CaseLogic(scene if scene is not None else slicer.mrmlScene, runner, python)

    def getParameterNode(self) -> LumbarVNetProParameterNode:
        """The scene's parameter node, wrapped with the module's typed settings."""
        return LumbarVNetProParameterNode(super().getParameterNode())

    def process(self, inputVolume, *args, **kwargs):
        """Run inference on ``inputVolume`` (blocking) and load the result; see :meth:`CaseLogic.process`."""
        return self.case.process(inputVolume, *args, **kwargs)

    def runFromParameters(self, params, progress=None):
        """:meth:`process` with the settings of a parameter node."""
        return self.case.runFromParameters(params, progress)

    def shutdown(self) -> None:
        """End the warm ``lvp serve`` worker that runs the cases (it also ends with this logic or Python)."""
        self.case.shutdown()


# ----------------------------------------------------------------------------- widget


class LumbarVNetProWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: Qt wiring only. State and decisions are in :class:`LumbarVNetProLib.workflow.Workplace`."""

    def __init__(self, parent=None) -> None:
        """Initialise state; the UI is built in :meth:`setup`.

        The state is set *before* Slicer's base ``__init__``: without a parent that one builds a
        panel and calls :meth:`setup` itself (the self-test does this), which must not be undone.
        ``VTKObservationMixin`` is initialised by the base's ``super().__init__()`` chain; calling
        it again here would drop the scene observers that :meth:`setup` added.
        """
        self.logic = None
        self.workplace = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._afterInstall = None
        self.shortcuts = []
        self.keyActions = {}  # key sequence text -> what it does (the self-test presses keys through it)
        ScriptedLoadableModuleWidget.__init__(self, parent)

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
        self.workplace = workflow.Workplace(self.logic.case)

        for device in DEVICES:
            self.ui.deviceComboBox.addItem(DEVICE_LABELS[device], device)
        headers = [_("Level"), _("Pathology"), _("AI grade"), _("Confidence"), _("Measurement")]
        headers += [_("Reader grade"), _("Decision")]
        table = self.ui.gradeTableWidget
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        table.setSelectionMode(qt.QAbstractItemView.SingleSelection)
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setEnabled(False)
        self.ui.recomputeButton.setEnabled(False)
        self.ui.submitButton.setEnabled(False)
        self.ui.databaseUrlLineEdit.text = qt.QSettings().value(SETTINGS_DATABASE_URL, "") or ""

        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecompute)
        self.ui.showPlanesCheckBox.connect("toggled(bool)", self.onShowPlanes)
        self.ui.signInButton.connect("clicked(bool)", self.onSignIn)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.submitButton.connect("clicked(bool)", self.onSubmit)
        self.ui.installButton.connect("clicked(bool)", self.onInstall)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        table.connect("currentCellChanged(int,int,int,int)", self.onRowSelected)
        self._setupShortcuts()

        # Child processes are polled from the GUI thread: Qt widgets are never touched elsewhere.
        # 50 ms: a poll only drains a queue of lines, and a warm worker's case takes about 0.5 s,
        # so a 200 ms tick added a tenth of it on average before the result was taken.
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(50)
        self.pollTimer.connect("timeout()", self.onPoll)
        self.readTimer = qt.QTimer()
        self.readTimer.setInterval(1000)
        self.readTimer.connect("timeout()", self.onReadTick)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def _setupShortcuts(self) -> None:
        """Keyboard grading on the grade table, case navigation on the panel (SlicerCaseIterator-like)."""

        def bind(key: str, parent, slot) -> None:
            shortcut = qt.QShortcut(qt.QKeySequence(key), parent)
            # Only while the focus is in the table (or the panel): never steals keys from other modules.
            shortcut.setContext(qt.Qt.WidgetWithChildrenShortcut)
            shortcut.connect("activated()", slot)
            self.shortcuts.append(shortcut)
            self.keyActions[key] = slot

        table = self.ui.gradeTableWidget
        for digit in "012345":
            bind(digit, table, lambda digit=digit: self.onGradeKey(digit))
        bind("A", table, lambda: self.onGradeKey("a"))
        bind("Up", table, lambda: self.moveRow(-1))
        bind("Down", table, lambda: self.moveRow(1))
        bind("Alt+N", self.parent, lambda: self.onAdjacentCase(1))
        bind("Alt+P", self.parent, lambda: self.onAdjacentCase(-1))

    def cleanup(self) -> None:
        """Stop a running job and the warm worker, the timers and the observers.

        Slicer calls this when the module is unloaded, which includes the application closing; the
        worker also ends by itself if Slicer crashes (its stdin closes). A scene close does not end
        an idle worker: it holds no scene state, and the next case then starts warm.
        """
        if self.workplace is not None:
            self.workplace.close()
        self.pollTimer.stop()
        self.readTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        """Make sure the parameter node exists when the module is shown."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Unbind the GUI and stop the embedded Segment Editor, as Slicer's SegmentEditor.py does.

        Without this an active effect (Paint) would keep painting in the slice views after the
        reader left the module.
        """
        editor = self.ui.segmentEditorWidget
        editor.setActiveEffect(None)
        editor.uninstallKeyboardShortcuts()
        editor.removeViewObservations()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        """Cancel a running job and drop the parameter node and case nodes before the scene closes."""
        self.workplace.sceneClosing()
        self.pollTimer.stop()
        self._setRunning(False)
        self.setParameterNode(None)
        self._fillGradeTable()

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter node in the new scene."""
        # A panel built without a module parent (the self-test's) has no isEntered: always shown.
        if getattr(self.parent, "isEntered", True):
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Bind to the scene's parameter node, picking a volume if none is chosen."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, node) -> None:
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

    # --------------------------------------------------------------------- jobs
    def onApply(self) -> None:
        """Start inference in a child process; progress comes from its stage messages."""
        if self.workplace.inBlindedRead:
            slicer.util.errorDisplay(_("Run analysis is not available during a manual-arm (blinded) read."))
            return
        from LumbarVNetProLib import install

        if not self._ensureDependencies(install.ANALYSIS_REQUIREMENTS, self.onApply):
            return
        if self._parameterNode.device == "cuda" and not self._ensureTorch():
            return
        try:
            self.workplace.startRun(self._parameterNode)
        except Exception as err:  # settings, model check or start: shown as a message
            slicer.util.errorDisplay(_("Could not start the analysis: {error}").format(error=err))
            return
        self._startPolling(_("Starting…"))

    def _startPolling(self, text: str) -> None:
        self._setRunning(True)
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.setText(text)
        self.pollTimer.start()

    def _setRunning(self, running: bool) -> None:
        """While a job runs: progress and Cancel shown, everything that would start another disabled.

        The input selector is disabled too: the result belongs to the volume the run started on.
        """
        self.ui.progressBar.setVisible(running)
        self.ui.cancelButton.setEnabled(running)
        self.ui.inputVolumeSelector.setEnabled(not running)
        self.ui.installButton.setEnabled(not running)
        self.ui.signInButton.setEnabled(not running)
        self.ui.loadCaseButton.setEnabled(not running)
        self._updateButtons()

    def _updateButtons(self) -> None:
        running = self.workplace.running
        self.ui.applyButton.setEnabled(not running and not self.workplace.inBlindedRead)
        self.ui.recomputeButton.setEnabled(not running and self.workplace.canRecompute)
        reading = self.workplace.session is not None and self.workplace.session.current is not None
        self.ui.submitButton.setEnabled(not running and reading)

    def onPoll(self) -> None:
        """Show the running job's progress; take its result (or show why not) when it ends."""
        params = self._parameterNode
        result = self.workplace.poll(bool(params and params.showScanPlanes))
        if result.stage is not None:
            if result.progress is not None:
                self.ui.progressBar.setValue(int(100 * result.progress))
            self.ui.statusLabel.setText(result.stage)
        if result.state == workflow.RUNNING:
            return
        self.pollTimer.stop()
        self._setRunning(False)
        if result.kind == workflow.CASE and result.state in (workflow.CANCELLED, workflow.FAILED):
            # The case never opened: its image leaves the scene, no read is on screen.
            self.workplace.closeCase()
            self._showNodes()
        if result.state == workflow.CANCELLED:
            self.ui.statusLabel.setText(_("Cancelled."))
            return
        if result.state == workflow.FAILED:
            self.ui.statusLabel.setText(_("Failed."))
            what = result.kind.capitalize()
            slicer.util.errorDisplay(_("{kind} failed: {error}").format(kind=what, error=result.error))
            return
        if result.state == workflow.WITHHELD:
            self.ui.statusLabel.setText(result.error)
            return
        if result.kind == workflow.ANALYSIS:
            self._showNodes()
            self.ui.statusLabel.setText(_("Done."))
        elif result.kind == workflow.CASE:
            self._caseOpened()
        elif result.kind == workflow.RECOMPUTE:
            self._fillGradeTable()
            self.ui.changesLabel.setText("\n".join(result.lines) if result.lines else _("No grade changed."))
            self.ui.statusLabel.setText(_("Recomputed."))
        elif result.kind == workflow.INSTALL:
            from LumbarVNetProLib import install

            self.ui.statusLabel.setText(_("Installed: {packages}").format(packages=", ".join(result.lines)))
            stale = install.imported_before(result.lines)
            if stale:
                # As slicer.packaging.pip_ensure: a package already imported keeps its old version
                # in memory until Slicer restarts.
                slicer.util.infoDisplay(
                    _("Restart Slicer before going on: {packages} were already loaded in memory.").format(
                        packages=", ".join(stale)
                    )
                )
                self._afterInstall = None
                return
            then, self._afterInstall = self._afterInstall, None
            if then is not None:
                then()

    def onCancel(self) -> None:
        """Kill the running child and everything it started."""
        self.workplace.cancel()

    # ------------------------------------------------------------ dependencies
    def _ensureDependencies(self, requirements, then=None) -> bool:
        """True when ``requirements`` are installed; else offer to install them (pip_ensure-like).

        The install runs as the panel's job (progress, Cancel); ``then`` is called when it is done.
        In testing mode nothing is installed (as ``slicer.packaging.pip_ensure``).
        """
        from LumbarVNetProLib import install

        missing = install.missing_requirements(requirements)
        if not missing:
            return True
        names = ", ".join(install.requirement_name(r) for r in missing)
        if slicer.app.testingEnabled():
            slicer.util.errorDisplay(_("Missing Python packages (not installed in testing mode): {p}").format(p=names))
            return False
        text = _(
            "LumbarVNetPro needs these Python packages: {packages}.\n\nInstall them now into Slicer's Python? "
            "(Offline: see the module documentation, LVP_WHEELS.)"
        ).format(packages=names)
        if not slicer.util.confirmOkCancelDisplay(text, windowTitle=_("LumbarVNetPro - Install Python packages")):
            return False
        self._startInstall(requirements, then)
        return False

    def _startInstall(self, requirements, then=None) -> None:
        from LumbarVNetProLib import install

        try:
            running, missing, work = install.start_install(self.logic.case.runner, requirements)
        except Exception as err:  # shown as a message
            slicer.util.errorDisplay(_("Installing failed: {error}").format(error=err))
            return
        if running is None:
            self.ui.statusLabel.setText(_("Nothing to install."))
            return
        self._afterInstall = then
        self.workplace.startInstall(running, [install.requirement_name(r) for r in missing], work)
        self._startPolling(_("Installing {packages}…").format(packages=", ".join(missing)))

    def onInstall(self) -> None:
        """Install every missing runtime dependency now (analysis and reading)."""
        from LumbarVNetProLib import install

        if not install.missing_requirements(install.RUNTIME_REQUIREMENTS):
            self.ui.statusLabel.setText(_("Nothing to install."))
            return
        self._ensureDependencies(install.RUNTIME_REQUIREMENTS)

    def _ensureTorch(self) -> bool:
        """GPU runs need torch: from the PyTorch extension (``PyTorchUtils``), never from the index."""
        from LumbarVNetProLib import install

        status = install.torch_status()
        if status == "available":
            return True
        if status == "extension":
            import PyTorchUtils  # the PyTorch Slicer extension

            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True)
            return torch is not None
        slicer.util.errorDisplay(_(install.TORCH_MISSING))
        return False

    # ------------------------------------------------------------------ results
    def _showNodes(self) -> None:
        nodes = self.workplace.nodes
        self.ui.numberingLabel.setText(self.workplace.numbering)
        if nodes is None:
            self._fillGradeTable()
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
            editor.setSourceVolumeNode(self.workplace.resultVolume)
        self._updateButtons()
        self._fillGradeTable()

    def onShowPlanes(self, visible: bool) -> None:
        """One click shows or hides every scan plane."""
        if self.workplace.nodes is not None:
            lvpscene.set_planes_visible(self.workplace.nodes.scanPlanes, visible)

    def _fillGradeTable(self) -> None:
        table = self.ui.gradeTableWidget
        rows = self.workplace.rows
        table.setRowCount(len(rows))
        for r in range(len(rows)):
            for c, text in enumerate(table_cells(rows[r])):
                table.setItem(r, c, qt.QTableWidgetItem(text))
            combo = ctk.ctkComboBox()
            # A wheel turn over the table scrolls it; it never changes a grade.
            combo.scrollWheelEffect = ctk.ctkComboBox.NeverScroll
            combo.addItem("—", None)
            for label, grade in grade_choices(rows[r].pathology):
                combo.addItem(label, grade)
            table.setCellWidget(r, 5, combo)
            self._updateRow(r)
            combo.connect(
                "currentIndexChanged(int)", lambda i, r=r, combo=combo: self.onReaderGrade(r, combo.itemData(i))
            )

    def _updateRow(self, rowIndex: int) -> None:
        """Show a row's reader grade and state; an unreviewed AI grade looks different from an accepted one."""
        row = self.workplace.rows[rowIndex]
        table = self.ui.gradeTableWidget
        combo = table.cellWidget(rowIndex, 5)
        if combo is not None:
            wasBlocked = combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(row.reader_grade), 0))
            combo.blockSignals(wasBlocked)
        state = qt.QTableWidgetItem(_(row.state))
        font = qt.QFont()
        font.setItalic(row.state in ("unreviewed", "not graded", "not assessable"))
        state.setFont(font)
        if row.state == "unreviewed":
            state.setBackground(qt.QBrush(qt.QColor(255, 236, 179)))
            state.setToolTip(_("Not reviewed yet: press A to accept the AI grade, or choose a grade."))
        elif row.note:
            state.setToolTip(row.note)
        table.setItem(rowIndex, 6, state)

    def onReaderGrade(self, rowIndex: int, grade) -> None:  # int or None
        """The reader changed a grade in the combo box: draft, grade table node, decision cell."""
        try:
            self.workplace.setReaderGrade(rowIndex, grade)
        except Exception as err:  # shown as a message
            slicer.util.errorDisplay(str(err))
        self._updateRow(rowIndex)

    def onGradeKey(self, key: str) -> None:
        """A grading key on the selected row (digit: that grade; A: accept the AI grade)."""
        row = self.ui.gradeTableWidget.currentRow()
        try:
            changed = self.workplace.keyGrade(row, key)
        except Exception as err:  # shown as a message
            slicer.util.errorDisplay(str(err))
            return
        if changed is not None:
            self._updateRow(row)

    def moveRow(self, step: int) -> None:
        """Select the previous / next row (level) of the grade table."""
        table = self.ui.gradeTableWidget
        row = min(max(table.currentRow() + step, 0), table.rowCount - 1)
        if row >= 0:
            table.setCurrentCell(row, 0)

    def onRowSelected(self, row: int, column: int = 0, previousRow: int = -1, previousColumn: int = -1) -> None:
        """Centre the slice views on the disc of the selected row (when its position is known)."""
        center = self.workplace.levelCenter(row)
        if center is not None:
            slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *center, slicer.vtkMRMLSliceNode.CenteredJumpSlice)

    def onRecompute(self) -> None:
        """Re-measure and re-grade from the edited segmentation in a child process."""
        try:
            self.workplace.startRecompute()
        except Exception as err:  # shown as a message
            slicer.util.errorDisplay(_("Recompute failed: {error}").format(error=err))
            return
        self._startPolling(_("Recomputing…"))

    # ------------------------------------------------------------------ reading
    def onSignIn(self) -> None:
        """Open the reading database and list the reader's worklist with arms."""
        from LumbarVNetProLib import install, reading

        entered = self.ui.databaseUrlLineEdit.text.strip()
        url = reading.database_url(entered)
        # The reading database needs SQLAlchemy and alembic: offered here, on the first click.
        if not self._ensureDependencies(install.reading_requirements(url), self.onSignIn):
            return
        params = self._parameterNode
        params.readerId = self.ui.readerIdLineEdit.text.strip()
        draftDir = reading.user_data_dir() / "drafts"
        try:
            with slicer.util.tryWithErrorDisplay(_("Sign-in failed."), waitCursor=True):
                self.workplace.signIn(params.readerId, url, draftDir)
        except Exception:  # already shown
            return
        if entered:
            # Remembered for the next session without its password (never in the scene).
            qt.QSettings().setValue(SETTINGS_DATABASE_URL, reading.url_without_password(entered))
        self._fillWorklist()

    def _fillWorklist(self) -> None:
        self.ui.worklistWidget.clear()
        for entry in self.workplace.worklist(washout=_("(washout)")):
            item = qt.QListWidgetItem(entry.text)
            item.setData(qt.Qt.UserRole, entry.assignmentId)
            if not entry.available:
                # Still in its washout period: shown, but it cannot be selected or opened.
                item.setFlags(item.flags() & ~qt.Qt.ItemIsEnabled)
                item.setToolTip(_("This case is in its washout period and cannot be read yet."))
            self.ui.worklistWidget.addItem(item)

    def onLoadCase(self) -> None:
        """Load the selected (or next) case in its arm and start the reading timer."""
        selected = self.ui.worklistWidget.currentItem()
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                item = self.workplace.pickAssignment(selected.data(qt.Qt.UserRole) if selected else None)
                if item is not None:
                    self._loadAssignment(item)
        except Exception:  # already shown
            return
        if item is None:
            slicer.util.infoDisplay(_("Your worklist is done."))

    def onAdjacentCase(self, step: int) -> None:
        """Next (``1``) or previous (``-1``) case of the worklist (keyboard shortcut)."""
        if self.workplace.session is None or self.workplace.running:
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                item = self.workplace.adjacentAssignment(step)
                if item is not None:
                    self._loadAssignment(item)
        except Exception:  # already shown
            return

    def _loadAssignment(self, item) -> None:  # WorkItem
        params = self._parameterNode
        self.readTimer.stop()
        volume = self.workplace.loadAssignment(
            item, slicer.util.loadVolume, params.device, params.showScanPlanes, loadDicom=self._loadDicom
        )
        params.inputVolume = volume
        self.ui.armLabel.setText(_("Arm: {arm}").format(arm=_("manual") if item.arm == "manual" else _("AI-assisted")))
        if self.workplace.running:  # the AI-assisted case has no result yet: computed as a job
            self._fillGradeTable()
            self._startPolling(_("Computing the AI result of case {case}…").format(case=item.case_key))
            return
        self._caseOpened()

    def _caseOpened(self) -> None:
        self._showNodes()
        self.readTimer.start()
        self.onReadTick()
        self._updateButtons()

    @staticmethod
    def _loadDicom(folder: str):  # the loaded volume node
        """Import a DICOM series folder through Slicer's DICOM database and load its volume."""
        from DICOMLib import DICOMUtils

        loaded = []
        with DICOMUtils.TemporaryDICOMDatabase() as db:
            DICOMUtils.importDicom(folder, db)
            for patient in db.patients():
                loaded += DICOMUtils.loadPatientByUID(patient)
        volumes = [slicer.mrmlScene.GetNodeByID(i) for i in loaded]
        volumes = [v for v in volumes if v is not None and v.IsA("vtkMRMLScalarVolumeNode")]
        if len(volumes) != 1:
            raise RuntimeError(f"{folder} holds {len(volumes)} image series; a case folder must hold one")
        return volumes[0]

    def onReadTick(self) -> None:
        """Show the reading time of the current case."""
        text = self.workplace.readingTime()
        if text is None:
            self.readTimer.stop()
        self.ui.timerLabel.setText(text or "")

    def onSubmit(self) -> None:
        """Ask, then submit the read (every grade, AI grade shown, time) and load the next case."""
        try:
            question = self.workplace.submitQuestion()
        except Exception as err:  # shown as a message
            slicer.util.errorDisplay(str(err))
            return
        # In testing mode Slicer 5.12's confirmOkCancelDisplay compares its testing answer (True)
        # with QMessageBox.Ok and so says "cancel": the self-test would never submit. Ask only a user.
        if not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
            question, windowTitle=_("Submit read")
        ):
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Submit failed."), waitCursor=True):
                nextItem = self.workplace.submit()
        except Exception:  # already shown
            return
        self.readTimer.stop()
        self._fillWorklist()
        if nextItem is None:
            self.workplace.closeCase()
            self._showNodes()
            slicer.util.infoDisplay(_("Read submitted. Your worklist is done."))
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
                self._loadAssignment(nextItem)
        except Exception:  # already shown
            return


# ----------------------------------------------------------------------------- self-test


class LumbarVNetProTest(ScriptedLoadableModuleTest):
    """The panel on the bundled sample, as a reader uses it (widget, logic, child processes).

    :func:`LumbarVNetProLib.selftest.widget_flow` is shared with the pytest suite
    (``Testing/Python/test_slicer_base_classes.py``, on Slicer's real base classes): Run
    analysis with the bundled model, a cancel, keyboard accept, Recompute, and, when the reading
    database's packages are installed, a blinded manual read and an AI-assisted read. About
    10-30 s on a CPU.
    """

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run every test of the module."""
        self.setUp()
        self.test_widget_flow()

    def test_widget_flow(self) -> None:
        """Build the widget and logic, then drive them through the reader's flow on the sample."""
        from LumbarVNetProLib.selftest import widget_flow

        self.delayDisplay("Loading the bundled sample")
        sample = findResource("Sample/spider_sample_t2.nii.gz")
        volume = slicer.util.loadVolume(str(sample))
        widget = LumbarVNetProWidget()  # no parent: Slicer builds it and runs setup()
        work = Path(tempfile.mkdtemp(prefix="lvp-selftest-"))
        try:
            summary = widget_flow(widget, volume, sample, work, slicer.app.processEvents, log=self.delayDisplay)
        finally:
            widget.cleanup()
            widget.parent.deleteLater()
            shutil.rmtree(work, ignore_errors=True)
        self.assertGreater(summary["rows"], 0)
        if summary["reading"] == "skipped":
            # Said, not hidden: the analysis part passed, the reading part did not run.
            self.delayDisplay("Reading part NOT run: " + summary["why"])
        self.delayDisplay("Test passed")


__all__ = [
    "LumbarVNetPro",
    "LumbarVNetProLogic",
    "LumbarVNetProParameterNode",
    "LumbarVNetProTest",
    "LumbarVNetProWidget",
    "findResource",
]
