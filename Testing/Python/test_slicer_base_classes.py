"""The module on Slicer 5.12.3's own Python (issue 9): module, logic, parameter node, widget.

``ScriptedLoadableModule``, ``util``, ``packaging``, ``i18n`` and ``parameterNodeWrapper`` are
Slicer's unmodified sources (``../shared/third_party``), MRML is slicer-core; only qt/ctk are
stand-ins (slicer_app.py). Each test drives the panel through its buttons, selectors and keys
and checks what a reader would see; child processes are real (``lvp infer`` on the sample, pip).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import qt_fakes
import slicer_app
from slicer_app import make_widget, module_parent, wait_idle
from slicer_helpers import REPO_ROOT, SAMPLE_DIR

pytest_plugins = ("slicer_helpers", "slicer_app")

SAMPLE = SAMPLE_DIR / "spider_sample_t2.nii.gz"
HAVE_MODEL = (REPO_ROOT / "models" / "models.json").is_file()
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="no bundled model in models/")


@pytest.fixture()
def module(slicer_app):
    import LumbarVNetPro

    return LumbarVNetPro


@pytest.fixture()
def widget(module, slicer_app):
    panel = make_widget(module)
    panel.logic.case.python = sys.executable  # the test's Python runs the core (PythonSlicer in Slicer)
    yield panel
    panel.cleanup()


def _load(slicer, path=SAMPLE):
    return slicer.util.loadVolume(str(path))


def _run(slicer, widget, volume, out: Path) -> None:
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    widget.ui.deviceComboBox.setCurrentIndex(widget.ui.deviceComboBox.findData("cpu"))
    widget.ui.outputFolderPathLineEdit.currentPath = str(out)
    widget.ui.applyButton.click()
    wait_idle(slicer, widget)


def _cell(widget, row, column):
    item = widget.ui.gradeTableWidget.item(row, column)
    return item.text() if item is not None else ""


# ----------------------------------------------------------------------------- module, logic, parameters


def test_module_logic_and_parameter_node_on_slicers_base_classes(module, slicer_app):
    """Item 1: Slicer's ScriptedLoadableModuleLogic.__init__ calls super().__init__() without a scene."""
    slicer = slicer_app
    parent = module_parent()
    module.LumbarVNetPro(parent)
    assert parent.title == "LumbarVNetPro" and slicer.selfTests["LumbarVNetPro"]
    logic = module.LumbarVNetProLogic()  # raised TypeError with CaseLogic as a second base
    assert logic.case.scene is slicer.mrmlScene and logic.moduleName == "LumbarVNetPro"
    params = logic.getParameterNode()
    node = params.parameterNode
    assert node.GetClassName() == "vtkMRMLScriptedModuleNode" and node.GetAttribute("ModuleName") == "LumbarVNetPro"
    params.device = "cpu"
    assert node.GetParameter("device") == "cpu"  # Slicer's wrapper serialises into the scene's node
    with pytest.raises(ValueError, match="must be in one of the following"):
        params.device = "gpu"  # the Choice annotation is Slicer's own validator
    assert logic.getParameterNode().parameterNode is node  # a singleton per scene


def test_setup_binds_the_ui_and_exit_unbinds_and_stops_the_segment_editor(widget, slicer_app):
    slicer = slicer_app
    params = widget._parameterNode
    widget.ui.modelSourceComboBox.setCurrentIndex(1)  # the user picks "folder"
    assert params.modelSource == "folder"
    params.showScanPlanes = True
    assert widget.ui.showPlanesCheckBox.checked  # node -> GUI
    volume = _load(slicer)
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    assert params.inputVolume is volume
    editor = widget.ui.segmentEditorWidget
    editor.setActiveEffectByName("Paint")
    editor.installKeyboardShortcuts()
    editor.setupViewObservations()
    widget.exit()
    # Item 11: an active Paint effect would keep painting after the reader left the module.
    assert editor.activeEffect() is None and not editor.keyboardShortcutsInstalled and not editor.viewsObserved
    widget.ui.modelSourceComboBox.setCurrentIndex(0)
    assert params.modelSource == "folder"  # unbound: the GUI no longer writes the node
    widget.enter()
    assert widget.ui.modelSourceComboBox.currentIndex == 1  # re-bound: the GUI shows the node


def test_widget_built_without_a_parent_keeps_its_setup(module, slicer_app):
    """The self-test builds the panel as ``LumbarVNetProWidget()``: Slicer's base then runs setup()
    inside ``__init__``; state assigned after it used to wipe the logic and the scene observers."""
    slicer = slicer_app
    panel = module.LumbarVNetProWidget()
    try:
        assert panel.logic is not None and panel.workplace is not None and panel.parent.visible
        assert panel.hasObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, panel.onSceneStartClose)
        assert panel.keyActions and panel._parameterNode is not None
        slicer.mrmlScene.Clear(0)  # a scene close reaches it and it rebinds (no isEntered on this parent)
        assert panel._parameterNode is not None
    finally:
        panel.cleanup()


def test_database_url_is_not_a_parameter_and_never_in_the_scene(widget, slicer_app, tmp_path):
    """Item 13: the parameter node is saved into .mrml scenes; a PostgreSQL URL may hold a password."""
    from LumbarVNetProLib import reading

    slicer = slicer_app
    assert "databaseUrl" not in type(widget._parameterNode).allParameters
    widget.ui.databaseUrlLineEdit.text = "postgresql+psycopg://reader:s3cret@db.example/study"
    slicer.mrmlScene.SetSaveToXMLString(1)
    slicer.mrmlScene.Commit()
    assert "s3cret" not in slicer.mrmlScene.GetSceneXMLString()
    assert reading.url_without_password("postgresql://u:s3cret@h:5432/db") == "postgresql://u@h:5432/db"
    default = reading.database_url("", environ={}, dataDir=tmp_path / "data")
    assert default.startswith("sqlite:///") and Path(default.removeprefix("sqlite:///")).is_absolute()
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": ""}
    assert reading.user_data_dir(env, "linux") == tmp_path / ".local" / "share" / "LumbarVNetPro"
    assert reading.database_url("", environ={"LVP_DATABASE_URL": "sqlite:////x.db"}) == "sqlite:////x.db"


# ----------------------------------------------------------------------------- the whole flow


@needs_model
def test_widget_flow_run_cancel_keyboard_recompute_and_both_reading_arms(widget, slicer_app, tmp_path):
    """Items 1, 5, 10 and the reader items: the self-test's own flow, on Slicer's base classes."""
    from LumbarVNetProLib.selftest import widget_flow

    slicer = slicer_app
    volume = _load(slicer)
    summary = widget_flow(widget, volume, SAMPLE, tmp_path, slicer.app.processEvents, log=lambda _m: None)
    assert summary["reading"] == "done", summary["why"]
    assert summary["manualRows"] == 25 and summary["aiRows"] > 0


@needs_model
def test_result_is_filed_under_the_volume_selected_at_start(widget, slicer_app, tmp_path):
    """Item 4: the selector is locked while a run lasts, the result goes to the start volume, and
    another volume's earlier result is not deleted."""
    from LumbarVNetProLib import scene as lvpscene

    slicer = slicer_app
    first, second = _load(slicer), _load(slicer)
    _run(slicer, widget, second, tmp_path / "second")
    second_result = widget._parameterNode.segmentation
    assert second_result.GetAttribute(lvpscene.VOLUME_ATTRIBUTE) == second.GetID()
    widget.ui.inputVolumeSelector.setCurrentNode(first)
    widget.ui.outputFolderPathLineEdit.currentPath = str(tmp_path / "first")
    widget.ui.applyButton.click()
    assert not widget.ui.inputVolumeSelector.enabled
    widget._parameterNode.inputVolume = second  # the selection changes while the child runs
    wait_idle(slicer, widget)
    result = widget._parameterNode.segmentation
    assert result.GetAttribute(lvpscene.VOLUME_ATTRIBUTE) == first.GetID()
    assert second_result.GetScene() is slicer.mrmlScene  # the other volume's result is still there
    assert widget.ui.inputVolumeSelector.enabled


@needs_model
def test_closing_the_scene_cancels_the_run(widget, slicer_app, tmp_path):
    slicer = slicer_app
    volume = _load(slicer)
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    widget.ui.outputFolderPathLineEdit.currentPath = str(tmp_path / "out")
    widget.ui.applyButton.click()
    running = widget.workplace.job.running
    slicer.mrmlScene.Clear(0)  # File > Close scene
    assert running.cancelled and running.poll() is not None
    assert not widget.workplace.running and not widget.pollTimer.isActive()
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_case_navigation_and_grading_keys_are_bound_to_the_panel(widget, slicer_app):
    shortcuts = {s.key.toString(): s for s in widget.shortcuts}
    assert set("012345") | {"A", "Up", "Down", "Alt+N", "Alt+P"} <= set(shortcuts)
    table = widget.ui.gradeTableWidget
    assert all(shortcuts[k].parent() is table for k in "012345A")
    assert all(s.context == qt_fakes.Qt.WidgetWithChildrenShortcut for s in widget.shortcuts)


# ----------------------------------------------------------------------------- reading


def _study(tmp_path, washout_days=0, ai_result: Path | None = None):
    """A SQLite reading database: c1 manual, c2 AI-assisted (with a second session after a washout)."""
    from lvp.readingdb import ReadingDB, admin

    image = tmp_path / "cases" / "c2.nii.gz"
    image.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, image)
    if ai_result is not None:
        shutil.copytree(ai_result, tmp_path / "cases" / "c2.nii.gz.lvp")
    url = f"sqlite:///{(tmp_path / 'reading.sqlite').as_posix()}"
    db = ReadingDB(url)
    admin.create_study(db, "s", washout_days=washout_days)
    cases = [{"case_key": "c1", "image_ref": str(SAMPLE)}, {"case_key": "c2", "image_ref": str(image)}]
    admin.add_cases(db, "s", cases)
    admin.add_readers(db, "s", [{"username": "r1"}])
    admin.add_assignment(db, "s", "r1", "c1", "manual", 1, 0)
    admin.add_assignment(db, "s", "r1", "c2", "ai_assisted", 1, 1)
    if washout_days:
        admin.add_assignment(db, "s", "r1", "c1", "ai_assisted", 2, 0)
    db.close()
    return url


def _sign_in(widget, url):
    widget.ui.readerIdLineEdit.text = "r1"
    widget.ui.databaseUrlLineEdit.text = url
    widget.ui.signInButton.click()


def test_manual_arm_refuses_run_analysis_and_submit_asks_first(widget, slicer_app, tmp_path, reference_result):
    """Items 5 and the reader's Submit confirmation, with the app out of testing mode (a real user)."""
    slicer = slicer_app
    _sign_in(widget, _study(tmp_path, ai_result=reference_result))
    assert widget.ui.worklistWidget.count == 2
    widget.ui.loadCaseButton.click()
    assert widget.workplace.inBlindedRead and not widget.ui.applyButton.enabled
    with pytest.raises(ValueError, match="blinded"):
        widget.workplace.startRun(widget._parameterNode)
    widget.onApply()  # even if reached (a shortcut, a script): refused, nothing starts
    assert not widget.workplace.running
    widget.ui.gradeTableWidget.setCurrentCell(0, 0)
    widget.keyActions["2"]()
    # Alt+N / Alt+P: next and previous case; the draft is kept and the previous case resumes.
    widget.keyActions["Alt+N"]()
    assert widget.workplace.session.current.case_key == "c2" and widget.ui.applyButton.enabled
    widget.keyActions["Alt+P"]()
    assert widget.workplace.session.current.case_key == "c1" and widget.workplace.rows[0].reader_grade == 2
    for r in range(widget.ui.gradeTableWidget.rowCount):
        widget.ui.gradeTableWidget.setCurrentCell(r, 0)
        widget.keyActions["2"]()
    slicer.app.testing = False
    qt_fakes.QMessageBox.answers[:] = [qt_fakes.QMessageBox.Cancel]
    widget.ui.submitButton.click()
    assert any("Submit your read of case c1" in text for text in qt_fakes.QMessageBox.shown)
    assert widget.workplace.session.current is not None  # cancelled: nothing submitted
    qt_fakes.QMessageBox.answers[:] = [qt_fakes.QMessageBox.Ok]
    widget.ui.submitButton.click()
    current = widget.workplace.session.current
    assert current is not None and current.case_key == "c2"  # submitted; the next case opened


def test_finishing_run_never_replaces_the_rows_of_an_open_read(slicer_app, tmp_path, reference_result):
    """Item 5: a run finishing while a read is open is withheld (kept on disk, not shown)."""
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.parameters import Settings
    from LumbarVNetProLib.workflow import WITHHELD, Workplace
    from lvp.readingdb import ReadingDB

    slicer = slicer_app
    url = _study(tmp_path, ai_result=reference_result)
    place = Workplace(CaseLogic(slicer.mrmlScene, python=sys.executable))
    place.signIn("r1", url, tmp_path / "drafts")
    items = place.worklist()
    item = place.pickAssignment(items[1].assignmentId)  # the AI-assisted case (result precomputed)
    volume = place.loadAssignment(item, slicer.util.loadVolume)
    rows = [r.key for r in place.rows]
    if not HAVE_MODEL:
        pytest.skip("no bundled model")
    place.startRun(Settings(inputVolume=volume, outputFolder=tmp_path / "run", device="cpu"))
    place.job.running.wait()
    result = place.poll()
    assert result.state == WITHHELD and "kept in" in result.error
    assert [r.key for r in place.rows] == rows and place.session.current.case_key == "c2"
    place.session.db.close()
    ReadingDB(url).close()


def test_numbering_doubt_and_not_assessable_reasons_are_shown(widget, slicer_app, tmp_path, reference_result):
    """report.json's optional numbering status and per-grade reasons reach the panel."""
    import json

    result = tmp_path / "result"
    shutil.copytree(reference_result, result)
    report = json.loads((result / "report.json").read_text())
    report["numbering"] = {"confident": False, "reasons": ["6 lumbar-type vertebrae"]}
    level = next(lv for lv in report["levels"] if lv["level"] == "L4-L5")
    level["grades"]["canal_stenosis"] = {"grade": None, "reasons": ["canal not segmented at this level"]}
    (result / "report.json").write_text(json.dumps(report))
    _sign_in(widget, _study(tmp_path / "study", ai_result=result))
    widget.ui.worklistWidget.setCurrentRow(1)
    widget.ui.loadCaseButton.click()
    assert "6 lumbar-type vertebrae" in widget.ui.numberingLabel.text
    table = widget.ui.gradeTableWidget
    texts = [[_cell(widget, r, c) for c in range(7)] for r in range(table.rowCount)]
    row = next(t for t in texts if t[0] == "L4-L5" and t[1] == "Central canal stenosis")
    assert row[2] == "not assessable: canal not segmented at this level" and row[6] == "not assessable"


def test_washout_cases_are_disabled_in_the_worklist(widget, slicer_app, tmp_path):
    _sign_in(widget, _study(tmp_path, washout_days=30))
    items = [widget.ui.worklistWidget.item(i) for i in range(widget.ui.worklistWidget.count)]
    waiting = [i for i in items if "(washout)" in i.text()]
    assert len(waiting) == 1 and not waiting[0].flags() & qt_fakes.Qt.ItemIsEnabled
    assert all(i.flags() & qt_fakes.Qt.ItemIsEnabled for i in items if i not in waiting)
    widget.ui.worklistWidget.setCurrentRow(items.index(waiting[0]))
    assert widget.ui.worklistWidget.currentItem() is not waiting[0]  # cannot be selected
    from LumbarVNetProLib.reading import ReadingError

    with pytest.raises(ReadingError, match="washout"):
        widget.workplace.pickAssignment(waiting[0].data(qt_fakes.Qt.UserRole))


@needs_model
def test_ai_case_without_a_result_is_computed_as_a_job_with_progress(widget, slicer_app, tmp_path):
    """Item 6: loading an AI-assisted case without its result never blocks the application."""
    slicer = slicer_app
    _sign_in(widget, _study(tmp_path))  # no c2.nii.gz.lvp folder
    widget.ui.worklistWidget.setCurrentRow(1)
    widget.ui.loadCaseButton.click()
    assert widget.workplace.runningKind == "case" and widget.ui.cancelButton.enabled
    assert widget.ui.statusLabel.text.startswith("Computing the AI result of case c2")
    wait_idle(slicer, widget)
    assert widget.workplace.session.current.case_key == "c2" and widget.ui.gradeTableWidget.rowCount > 0
    assert (tmp_path / "cases" / "c2.nii.gz.lvp" / "report.json").is_file()


@needs_model
def test_cancelling_an_ai_case_computation_leaves_no_read_open(widget, slicer_app, tmp_path):
    slicer = slicer_app
    _sign_in(widget, _study(tmp_path))
    widget.ui.loadCaseButton.click()  # c1, manual: a read is open
    assert widget.workplace.session.current.case_key == "c1"
    widget.ui.worklistWidget.setCurrentRow(1)
    widget.ui.loadCaseButton.click()  # c2 has no result: computed as a job
    image = widget._parameterNode.inputVolume
    widget.ui.cancelButton.click()
    wait_idle(slicer, widget)
    assert widget.ui.statusLabel.text == "Cancelled."
    assert widget.workplace.session.current is None and not widget.ui.submitButton.enabled
    assert image.GetScene() is None and widget.ui.gradeTableWidget.rowCount == 0


def test_sign_in_offers_the_reading_packages_and_installs_with_progress_and_cancel(
    widget, slicer_app, tmp_path, monkeypatch, caplog
):
    """Item 3 (and 6): Sign in, not only Run, offers SQLAlchemy/alembic; pip runs as a job."""
    from LumbarVNetProLib import install

    slicer = slicer_app
    monkeypatch.setattr(install, "READING_REQUIREMENTS", ("lvp-no-such-reading-package==1.0",))
    monkeypatch.setenv(install.WHEELS_ENV, str(tmp_path))  # offline: an empty wheel folder
    slicer.app.testing = False
    qt_fakes.QMessageBox.answers[:] = [qt_fakes.QMessageBox.Ok, qt_fakes.QMessageBox.Ok]
    _sign_in(widget, f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert any("lvp-no-such-reading-package" in text for text in qt_fakes.QMessageBox.shown)
    assert widget.workplace.runningKind == "install" and widget.ui.cancelButton.enabled
    assert widget.workplace.session is None  # nothing imported before the packages are there
    wait_idle(slicer, widget)
    assert widget.ui.statusLabel.text == "Failed."
    # errorDisplay logs the message (and shows it when a main window exists).
    assert "pip install failed" in caplog.text and "lvp-no-such-reading-package" in caplog.text
    # Again, cancelled this time: pip's whole process tree ends.
    qt_fakes.QMessageBox.answers[:] = [qt_fakes.QMessageBox.Ok]
    widget.ui.signInButton.click()
    running = widget.workplace.job.running
    widget.ui.cancelButton.click()
    wait_idle(slicer, widget)
    assert running.cancelled and widget.ui.statusLabel.text == "Cancelled."


# ----------------------------------------------------------------------------- rows a reader meets


def test_rows_are_unreviewed_until_accepted_and_show_readable_names(slicer_app):
    from LumbarVNetProLib.grades import numbering_note, rows_from_report, table_cells

    report = {
        "numbering": {"confident": False, "reasons": ["transitional L5/S1 suspected"]},
        "levels": [{"level": "L4-L5", "grades": {
            # report.json 1.2: confidence_kind, status, reason (lvp.grading)
            "herniation": {"grade": 2, "confidence": 0.8, "measurement": "posterior_displacement_mm", "value": 4.0,
                           "confidence_kind": "calibrated", "status": "graded"},
            "lateral_recess_left": {"grade": None, "status": "not assessable",
                                    "reason": "not assessable: needs an axial series"},
            "lateral_recess_right": {"grade": 1, "confidence": 0.6, "confidence_kind": "heuristic"},
            "canal_stenosis": {"grade": None},  # no grade and no word why: no row
        }}],
    }
    rows = rows_from_report(report)
    assert [(r.pathology, r.state) for r in rows] == [("herniation", "unreviewed"),
                                                      ("lateral_recess_left", "not assessable"),
                                                      ("lateral_recess_right", "unreviewed")]
    assert table_cells(rows[0])[1:4] == ["Disc herniation", "protrusion", "0.80 (calibrated)"]
    assert table_cells(rows[1])[2] == "not assessable: needs an axial series"
    assert table_cells(rows[2])[3] == "0.60 (heuristic)"
    rows[0].accept()
    assert rows[0].state == "accepted"
    with pytest.raises(ValueError, match="no grade to accept"):
        rows[1].accept()
    assert "transitional L5/S1 suspected" in numbering_note(report)
    assert numbering_note({"levels": []}) == "" and numbering_note({"numbering": {"confident": True}}) == ""


@needs_model
def test_table_wheel_keys_and_row_click_on_a_result(widget, slicer_app, tmp_path):
    """Combo boxes ignore the wheel, number keys grade, a row click centres the slice views on its disc."""
    slicer = slicer_app
    red = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    volume = _load(slicer)
    _run(slicer, widget, volume, tmp_path / "out")
    table = widget.ui.gradeTableWidget
    rows = widget.workplace.rows
    row = next((r for r in range(table.rowCount) if rows[r].ai_grade is not None), 0)
    decided = ("modified", "accepted") if rows[row].ai_grade is not None else ("graded",)
    combo = table.cellWidget(row, 5)
    before = combo.currentIndex
    combo.wheelEvent(1)  # the reader scrolls the table with the mouse over a combo box
    assert combo.currentIndex == before and widget.workplace.rows[row].reader_grade is None
    table.clickCell(row, 0)
    center = widget.workplace.levelCenter(row)
    matrix = red.GetSliceToRAS()
    assert center is not None and [round(matrix.GetElement(i, 3), 3) for i in range(3)] == [round(c, 3) for c in center]
    widget.keyActions["3"]()
    assert widget.workplace.rows[row].reader_grade == 3 and _cell(widget, row, 6) in decided
    assert combo.currentData == 3
    widget.keyActions["0" if rows[row].pathology == "pfirrmann" else "5"]()  # off the scale: nothing changes
    assert widget.workplace.rows[row].reader_grade == 3


# ----------------------------------------------------------------------------- processes, DICOM


def test_children_start_without_a_console_window_on_windows():
    from LumbarVNetProLib import process

    options = process.popen_options("nt")
    assert options["creationflags"] & process.CREATE_NO_WINDOW
    assert options["creationflags"] & process.CREATE_NEW_PROCESS_GROUP
    args, kill = process.kill_tree_command(1234)
    assert args == ["taskkill", "/F", "/T", "/PID", "1234"] and kill["creationflags"] & process.CREATE_NO_WINDOW
    assert process.popen_options("posix") == {"start_new_session": True}


def test_volume_under_a_transform_is_written_in_world_coordinates(slicer_app, tmp_path):
    """Item 12: a parent transform (e.g. DICOM acquisition regularisation) is hardened on export."""
    import SimpleITK as sitk
    import vtk

    from LumbarVNetProLib import scene as lvpscene

    slicer = slicer_app
    volume = _load(slicer)
    plain = sitk.ReadImage(str(lvpscene.write_volume(volume, tmp_path / "plain.nii.gz")))
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(2, 3, 12.5)  # 12.5 mm superior (RAS)
    transform.SetMatrixTransformToParent(matrix)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    moved = sitk.ReadImage(str(lvpscene.write_volume(volume, tmp_path / "moved.nii.gz")))
    assert moved.GetOrigin()[2] == pytest.approx(plain.GetOrigin()[2] + 12.5)
    assert volume.GetParentTransformNode() is transform  # the node itself is not changed
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1  # no copy left
    # A non-linear (grid) transform, as the DICOM acquisition-geometry regularisation adds: resampled.
    import numpy as np
    from vtk.util import numpy_support

    grid = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    displacement = vtk.vtkImageData()
    displacement.SetDimensions(4, 4, 4)
    displacement.SetSpacing(200.0, 200.0, 200.0)
    displacement.SetOrigin(-300.0, -300.0, -300.0)
    displacement.AllocateScalars(vtk.VTK_DOUBLE, 3)
    vectors = numpy_support.vtk_to_numpy(displacement.GetPointData().GetScalars())
    vectors[:] = 0.0
    vectors[:, 0] = 7.0  # 7 mm along R everywhere
    transform_to_parent = slicer.vtkOrientedGridTransform()
    transform_to_parent.SetDisplacementGridData(displacement)
    grid.SetAndObserveTransformToParent(transform_to_parent)
    volume.SetAndObserveTransformNodeID(grid.GetID())
    warped = sitk.ReadImage(str(lvpscene.write_volume(volume, tmp_path / "warped.nii.gz")))
    same = warped.GetOrigin() == plain.GetOrigin() and np.array_equal(
        sitk.GetArrayFromImage(warped), sitk.GetArrayFromImage(plain)
    )
    assert not same and volume.GetParentTransformNode() is grid


def test_series_uid_is_kept_in_the_result(slicer_app, tmp_path, reference_result):
    """Item 12: the DICOM series a volume came from is named in its result's report.json."""
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import CaseLogic, RunJob
    from LumbarVNetProLib.process import ProcessRunner

    slicer = slicer_app
    volume = _load(slicer)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    item = lvpscene.subject_item(slicer.mrmlScene, volume)
    sh.SetItemUID(item, "DICOM", "1.2.826.0.1.3680043.8.498.1")
    assert lvpscene.series_uid_of(volume) == "1.2.826.0.1.3680043.8.498.1"
    out = tmp_path / "result"
    running = ProcessRunner().start([sys.executable, "-c", "pass"])
    shutil.copytree(reference_result, out)  # what the child wrote
    running.wait()
    job = RunJob(running, out, out / "input.nii.gz", volume, lvpscene.series_uid_of(volume), 0.0)
    report = CaseLogic(slicer.mrmlScene).finishInference(job)
    assert report["input"]["series_uid"] == "1.2.826.0.1.3680043.8.498.1"
    assert lvpscene.load_report(out)["input"]["series_uid"] == "1.2.826.0.1.3680043.8.498.1"


def test_worklist_dicom_folders_load_through_dicom_import(tmp_path):
    from LumbarVNetProLib.reading import ReadingError
    from LumbarVNetProLib.workflow import load_case_image

    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "IM0001.dcm").write_bytes(b"")
    calls = []
    loaded = load_case_image(folder, lambda p: calls.append(("volume", p)), lambda p: calls.append(("dicom", p)) or 1)
    assert calls == [("dicom", str(folder))] and loaded == 1
    with pytest.raises(ReadingError, match="DICOM import is not available"):
        load_case_image(folder, lambda p: 1, None)
    with pytest.raises(ReadingError, match="not found"):
        load_case_image(tmp_path / "missing.nii.gz", lambda p: 1, lambda p: 1)
    source = (slicer_app.MODULE_DIR / "LumbarVNetPro.py").read_text()
    assert "DICOMUtils.importDicom" in source and "loadDicom=self._loadDicom" in source


def test_gpu_asks_the_pytorch_extension_never_pip(widget, slicer_app, tmp_path, monkeypatch, caplog):
    """Item 8: torch for the GPU comes from the PyTorch extension's installTorch; without it, a message."""
    from LumbarVNetProLib import install

    slicer = slicer_app
    extension = tmp_path / "ext"
    extension.mkdir()
    # The PyTorch extension's module as Slicer puts it on sys.path (only its entry point matters here).
    (extension / "PyTorchUtils.py").write_text(
        "calls = []\n"
        "class PyTorchUtilsLogic:\n"
        "    def installTorch(self, askConfirmation=False, **kwargs):\n"
        "        calls.append(askConfirmation)\n"
        "        return None  # the user declined\n"
    )
    monkeypatch.syspath_prepend(str(extension))
    monkeypatch.setattr(install, "torch_status", lambda: "extension")
    volume = _load(slicer)
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    widget.ui.deviceComboBox.setCurrentIndex(widget.ui.deviceComboBox.findData("cuda"))
    widget.ui.applyButton.click()
    calls = sys.modules.pop("PyTorchUtils").calls  # imported by the panel; not left for other tests
    assert calls == [True] and not widget.workplace.running  # asked with confirmation; declined: no run
    monkeypatch.setattr(install, "torch_status", lambda: "missing")
    widget.ui.applyButton.click()
    assert "PyTorch" in caplog.text and not widget.workplace.running
