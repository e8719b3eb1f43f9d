"""The module's full flow on one case, shared by the Slicer self-test and the pytest suite.

``LumbarVNetProTest`` (inside Slicer, on ``slicer.mrmlScene``) and
``Testing/Python/test_slicer_flow.py`` (slicer-core, a fresh ``vtkMRMLScene``) both call
:func:`full_flow`, so the code paths checked in CI are the ones the in-application test runs:

1. real inference with the bundled model in a child process (``lvp infer``; model sha256
   verified first) and import of the result into the scene;
2. a reading database (SQLite in ``work``): study, reader, a manual-arm and an AI-assisted-arm
   assignment of the case, the model's grades stored as the AI results;
3. manual arm: only the reader's grade table, no AI node, every row graded, submitted;
4. AI-assisted arm: the result loaded, one grade accepted, one modified; then the reader edits
   the segmentation (erases part of a middle disc, renames the lowest disc ``L5-L6 disc``) and
   Recomputes (``lvp infer --labels``): the rename and the edit reach the new report, names
   are kept, the renamed level's rows carry the reader's grades over; the read is submitted
   and the database holds accepted / modified decisions.

Checks raise ``AssertionError`` with a message (unittest and pytest both report it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from lvp.labels import DISC_LABELS, STRUCTURES, level_of

from . import scene as lvpscene
from .grades import grade_values
from .logic import CaseLogic
from .reading import AI_ASSISTED, MANUAL, ReadingSession

STUDY = "selftest"
READER = "r1"


def check(condition: object, message: str) -> None:
    """``assert`` that survives ``python -O`` and names what failed."""
    if not condition:
        raise AssertionError(message)


def edit_segment(scene, segmentation, volume, segmentId: str, keep: np.ndarray) -> None:
    """Replace one segment's voxels by ``keep`` (bool array ``[k, j, i]`` on ``volume``'s grid), as an editor does."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LVP edit")
    try:
        image = vtk.vtkImageData()
        image.SetDimensions(keep.shape[2], keep.shape[1], keep.shape[0])
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(keep.astype(np.uint8).ravel(), deep=True))
        labelmap.SetAndObserveImageData(image)
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        oriented = logic.CreateOrientedImageDataFromVolumeNode(labelmap)
        ok = logic.SetBinaryLabelmapToSegment(oriented, segmentation, segmentId, logic.MODE_REPLACE)
        check(ok, f"could not write the edited voxels into segment {segmentId!r}")
    finally:
        scene.RemoveNode(labelmap)


def reading_db(work: Path, imageRef: Path):  # lvp.readingdb.ReadingDB
    """A SQLite reading database in ``work``: one reader, the case in the manual and the AI arm."""
    from lvp.readingdb import ReadingDB, admin

    db = ReadingDB(f"sqlite:///{Path(work) / 'reading.sqlite'}")
    admin.create_study(db, STUDY, washout_days=0)
    cases = [{"case_key": key, "image_ref": str(imageRef)} for key in ("c1", "c2")]
    admin.add_cases(db, STUDY, cases)
    admin.add_readers(db, STUDY, [{"username": READER}])
    admin.add_assignment(db, STUDY, READER, "c1", MANUAL, 1, 0)
    admin.add_assignment(db, STUDY, READER, "c2", AI_ASSISTED, 1, 1)
    return db


def ai_grades_of(report: dict) -> list:
    """The report's grades as the reading database's AI results."""
    from lvp.readingdb import AIGrade

    from .grades import rows_from_report

    # A grade the AI could not give ("not assessable") is not an AI result to store.
    rows = [r for r in rows_from_report(report) if r.ai_grade is not None]
    return [AIGrade(r.level, r.pathology, r.ai_grade, r.confidence, r.value) for r in rows]


def full_flow(
    scene,  # vtkMRMLScene
    volume,  # the sample as a scalar volume node in ``scene``
    imageRef: Path,
    work: Path,
    python: str | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict:
    """Run the whole flow (module docstring); returns a summary for the caller's own checks."""
    from lvp.readingdb import admin

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    logic = CaseLogic(scene, python=python)

    log("Inference with the bundled model in a child process")
    resultDir = work / "result"
    job = logic.startInference(volume, resultDir, device)
    job.running.wait(timeout_s=900)
    report = logic.finishInference(job)
    check(report["model"].get("name") not in ("reference-mask", "semantic-mask", "label-map"),
          f"the result is not a model's output: {report['model']}")
    discs = [lv["disc_label"] for lv in report["levels"]]
    check(len(discs) >= 3, f"the model found fewer than 3 disc levels: {[lv['level'] for lv in report['levels']]}")
    check(DISC_LABELS["L5-L6"] not in discs, "the sample has no L5-L6 disc; the model found one")
    # The edit: erase part of a middle disc; rename the lowest disc L5-L6; one more stays untouched.
    edited_value, renamed_value = discs[len(discs) // 2], discs[-1]
    untouched = next(v for v in discs if v not in (edited_value, renamed_value))

    log("Reading database: manual arm")
    db = reading_db(work, imageRef)
    try:
        db.store_ai_results(STUDY, "c2", ai_grades_of(report), model_version=str(report["model"].get("version", "")))
        session = ReadingSession(db, READER, work / "drafts")
        item = session.next_assignment()
        check(item is not None and item.arm == MANUAL, f"first assignment should be manual: {item}")
        read = session.start(item.assignment_id, report)  # the manual arm must ignore the report
        check(all(r.ai_grade is None and r.value is None for r in read.rows), "manual rows carry AI output")
        nodes = logic.loadCase(MANUAL, volume, read.rows, resultDir, "c1")
        check(nodes.segmentation is None and nodes.levelLabels is None and not nodes.scanPlanes,
              "the manual arm loaded AI nodes")
        for row in read.rows:
            session.set_grade(row.level, row.pathology, grade_values(row.pathology)[0])
        session.submit()
        lvpscene.remove_case_nodes(scene, "c1")

        log("Reading database: AI-assisted arm, accept / modify")
        item = session.next_assignment()
        check(item is not None and item.arm == AI_ASSISTED, f"second assignment should be AI-assisted: {item}")
        read = session.start(item.assignment_id, report)
        nodes = logic.loadCase(AI_ASSISTED, volume, read.rows, resultDir, "c2")
        seg = nodes.segmentation.GetSegmentation()
        check(seg.GetNumberOfSegments() >= 10, f"only {seg.GetNumberOfSegments()} segments imported")
        check(nodes.levelLabels.GetNumberOfControlPoints() >= 10, "level labels missing")
        check(lvpscene.read_grade_table(nodes.gradeTable), "the grade table is empty")
        graded = sorted((r for r in read.rows if r.ai_grade is not None), key=lambda r: r.pathology == "pfirrmann")
        modified = graded[0] if graded else None
        check(modified is not None, "the model's result has no grade to accept or modify")
        new_grade = next(g for g in grade_values(modified.pathology) if g != modified.ai_grade)
        session.set_grade(modified.level, modified.pathology, new_grade)

        log(f"Editing the segmentation: erase part of {STRUCTURES[edited_value].name}, "
            f"rename {STRUCTURES[renamed_value].name} to L5-L6 disc")
        edited_id = lvpscene.segment_id_for_value(nodes.segmentation, edited_value)
        labels = lvpscene.export_labelmap(scene, nodes.segmentation, volume)
        disc = labels == edited_value
        rows_si = np.nonzero(disc.any(axis=(0, 2)))[0]
        keep = disc.copy()
        keep[:, : rows_si[len(rows_si) // 2], :] = False  # the cranial half of the rows goes
        edit_segment(scene, nodes.segmentation, volume, edited_id, keep)
        renamed_id = lvpscene.segment_id_for_value(nodes.segmentation, renamed_value)
        renamed_level = level_of(STRUCTURES[renamed_value].name)
        seg.GetSegment(renamed_id).SetName("L5-L6 disc")

        log("Recompute (lvp infer --labels: no network, level names kept)")
        rows, changes, new_report = logic.recompute(nodes, volume, read.rows, work / "recompute", caseKey="c2")
        session.replace_rows(rows)
        new_levels = [lv["level"] for lv in new_report["levels"]]
        check(new_report["model"].get("name") == "label-map", "Recompute ran the network")
        check("L5-L6" in new_levels and renamed_level not in new_levels, f"the rename did not survive: {new_levels}")
        check(lvpscene.segment_tag(seg.GetSegment(renamed_id), lvpscene.LABEL_VALUE_TAG) == str(DISC_LABELS["L5-L6"]),
              "the renamed segment's value tag was not updated")
        before = {s["label"]: s for s in report["structures"]}
        after = {s["label"]: s for s in new_report["structures"]}
        check(after[edited_value]["volume_mm3"] < before[edited_value]["volume_mm3"], "the edited disc did not shrink")
        check(after[edited_value]["confidence"] == 1.0, "an edited level should have confidence 1.0")
        check(after[untouched]["confidence"] == before[untouched]["confidence"],
              "an untouched level lost its confidence")
        labels_in_scene = {nodes.levelLabels.GetNthControlPointLabel(i)
                           for i in range(nodes.levelLabels.GetNumberOfControlPoints())}
        check("L5-L6" in labels_in_scene and renamed_level not in labels_in_scene, f"level labels: {labels_in_scene}")
        old_levels = {r.level for r in read.rows}
        check(renamed_level not in old_levels
              or any(c.level == "L5-L6" and c.old_level == renamed_level for c in changes),
              "the renamed level's grades are not listed as renamed")
        check(all(r.level != renamed_level for r in rows), "rows of the old level name are left")
        kept = next(r for r in rows if r.key == modified.key)
        check(kept.reader_grade == new_grade, "Recompute overwrote the reader's modified grade")

        log("Submit")
        for row in rows:  # the reader accepts every AI grade not yet reviewed
            if row.reader_grade is None:
                grade = row.ai_grade if row.ai_grade is not None else grade_values(row.pathology)[0]
                session.set_grade(row.level, row.pathology, grade)
        session.submit()
        check(session.next_assignment() is None, "the worklist should be done")
        entries = [r for r in admin.export_reads(db, STUDY) if r["arm"] == AI_ASSISTED]
        decisions = {(r["level"], r["pathology"]): r["ai_decision"] for r in entries}
        check(decisions.get(modified.key) == "modified", f"modified grade not stored as modified: {decisions}")
        check("accepted" in decisions.values(), "no accepted grade was stored")
        return {
            "report": report,
            "recomputed": new_report,
            "changes": changes,
            "decisions": decisions,
            "structures": {v: STRUCTURES[v].name for v in after},
        }
    finally:
        db.close()


# --------------------------------------------------------------------------- the panel itself


def wait_panel(widget, processEvents: Callable[[], None], timeout_s: float, what: str) -> None:
    """Let the application run (its timers poll the child) until the panel's job is over.

    After ``timeout_s`` the job is cancelled and ``AssertionError`` names ``what``.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while widget.workplace.running or widget.pollTimer.isActive():
        processEvents()
        if time.monotonic() > deadline:
            widget.onCancel()
            raise AssertionError(f"{what} did not finish in {timeout_s:.0f} s")
        time.sleep(0.02)


def _cell(widget, row: int, column: int) -> str:
    item = widget.ui.gradeTableWidget.item(row, column)
    return item.text() if item is not None else ""


def _reading_available() -> str:
    """``""`` when the reading database's packages import, else why not."""
    import importlib.util

    missing = [name for name in ("sqlalchemy", "alembic") if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed (Install dependencies in the panel)" if missing else ""


def widget_flow(
    widget,  # a set-up LumbarVNetProWidget
    volume,  # the sample as a scalar volume node in slicer.mrmlScene
    imageRef: Path,
    work: Path,
    processEvents: Callable[[], None],
    log: Callable[[str], None] = print,
    timeout_s: float = 60.0,
) -> dict:
    """Drive the panel as a reader does, through its buttons, selectors and keys; returns a summary.

    Shared by the Slicer self-test and the pytest suite (Slicer's real base classes there):
    Run analysis (the input selector is locked while it runs; rows arrive unreviewed), Cancel
    of a second run (the first result stays), keyboard accept, Recompute, then, when the reading
    packages are installed, a blinded manual read (no AI node, Run analysis refused, every row
    graded by key) and an AI-assisted read (the previous case leaves the scene), each submitted.
    """
    import shutil

    scene = widget.logic.case.scene
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    ui = widget.ui
    widget.enter()
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.deviceComboBox.setCurrentIndex(ui.deviceComboBox.findData("cpu"))
    ui.outputFolderPathLineEdit.currentPath = str(work / "run")
    params = widget._parameterNode
    check(params.inputVolume is volume and params.device == "cpu", "the settings did not reach the parameter node")

    from .install import ANALYSIS_REQUIREMENTS, missing_requirements

    missing = missing_requirements(ANALYSIS_REQUIREMENTS)
    check(not missing, f"the analysis packages are not installed ({', '.join(missing)}): click 'Install "
          "dependencies' in the panel (offline: LVP_WHEELS, see the module documentation), then test again")
    log("Run analysis (child process, bundled model)")
    ui.applyButton.click()
    check(widget.workplace.runningKind == "analysis", f"no analysis started: {ui.statusLabel.text}")
    check(not ui.inputVolumeSelector.enabled, "the input selector stays enabled during a run")
    wait_panel(widget, processEvents, timeout_s, "the analysis")
    check(ui.statusLabel.text == "Done.", f"the analysis did not finish: {ui.statusLabel.text}")
    rows = ui.gradeTableWidget.rowCount
    check(rows > 0 and params.segmentation is not None, "no result in the panel")
    states = {_cell(widget, r, 6) for r in range(rows)}
    check(states <= {"unreviewed", "not assessable"} and "unreviewed" in states, f"AI rows not unreviewed: {states}")
    check("_" not in _cell(widget, 0, 1), f"an internal key is shown: {_cell(widget, 0, 1)!r}")
    segmentation = params.segmentation

    log("Keyboard: select the first row, accept its AI grade")
    first = next(r for r in range(rows) if _cell(widget, r, 6) == "unreviewed")
    ui.gradeTableWidget.setCurrentCell(first, 0)
    widget.keyActions["A"]()
    check(_cell(widget, first, 6) == "accepted", f"row {first} after A: {_cell(widget, first, 6)!r}")
    ui.gradeTableWidget.setCurrentCell(0, 0)
    widget.keyActions["Down"]()
    check(ui.gradeTableWidget.currentRow() == 1, "Down did not move to the next level")

    log("Cancel a second run: the first result stays")
    ui.outputFolderPathLineEdit.currentPath = str(work / "cancelled")
    ui.applyButton.click()
    ui.cancelButton.click()
    wait_panel(widget, processEvents, timeout_s, "the cancel")
    check(ui.statusLabel.text == "Cancelled.", f"cancel: {ui.statusLabel.text}")
    check(params.segmentation is segmentation and segmentation.GetScene() is scene, "cancel removed the result")

    log("Recompute from the segmentation (child process)")
    ui.recomputeButton.click()
    wait_panel(widget, processEvents, timeout_s, "Recompute")
    check(ui.statusLabel.text == "Recomputed.", f"Recompute: {ui.statusLabel.text}")
    check(_cell(widget, first, 6) == "accepted", "Recompute lost the reader's accepted row")
    summary = {"rows": rows, "reading": "skipped", "why": _reading_available()}
    if summary["why"]:
        widget.exit()
        return summary

    log("Reading: sign in, blinded manual read")
    from lvp.readingdb import ReadingDB, admin

    cases = work / "cases"
    cases.mkdir(exist_ok=True)
    image = cases / "c2.nii.gz"
    shutil.copy(imageRef, image)
    shutil.copytree(work / "run", cases / "c2.nii.gz.lvp", dirs_exist_ok=True)
    url = f"sqlite:///{(work / 'reading.sqlite').as_posix()}"
    db = ReadingDB(url)
    try:
        admin.create_study(db, STUDY, washout_days=0)
        admin.add_cases(db, STUDY, [{"case_key": "c1", "image_ref": str(imageRef)},
                                    {"case_key": "c2", "image_ref": str(image)}])
        admin.add_readers(db, STUDY, [{"username": READER}])
        admin.add_assignment(db, STUDY, READER, "c1", MANUAL, 1, 0)
        admin.add_assignment(db, STUDY, READER, "c2", AI_ASSISTED, 1, 1)
    finally:
        db.close()
    ui.readerIdLineEdit.text = READER
    ui.databaseUrlLineEdit.text = url
    ui.signInButton.click()
    check(ui.worklistWidget.count == 2, f"worklist has {ui.worklistWidget.count} entries")
    ui.loadCaseButton.click()
    segmentations = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    ai_nodes = [segmentations.GetItemAsObject(i) for i in range(segmentations.GetNumberOfItems())]
    check(not [n for n in ai_nodes if n.GetAttribute(lvpscene.CASE_ATTRIBUTE) == "c1"], "AI nodes in the manual read")
    check(not ui.applyButton.enabled, "Run analysis is offered during the blinded read")
    manual_rows = ui.gradeTableWidget.rowCount
    check(all(not _cell(widget, r, 2) and not _cell(widget, r, 3) for r in range(manual_rows)),
          "AI grades shown in the manual arm")
    ui.gradeTableWidget.setCurrentCell(0, 0)
    for r in range(manual_rows):
        ui.gradeTableWidget.setCurrentCell(r, 0)
        widget.keyActions["1"]()  # grade 1 is on every scale read (0-3 and Pfirrmann 1-5)
    check(all(_cell(widget, r, 6) == "graded" for r in range(manual_rows)), "keyboard grading missed rows")
    c1_image = params.inputVolume
    ui.submitButton.click()
    check(c1_image.GetScene() is None, "the previous case's image is still in the scene")

    log("Reading: AI-assisted read, every AI grade accepted by key, submit")
    ai_rows = ui.gradeTableWidget.rowCount
    check(ai_rows > 0 and "accepted" not in {_cell(widget, r, 6) for r in range(ai_rows)},
          "the AI-assisted case opened with rows already accepted")
    for r in range(ai_rows):
        ui.gradeTableWidget.setCurrentCell(r, 0)
        if _cell(widget, r, 2).startswith("not assessable"):
            widget.keyActions["1"]()
        else:
            widget.keyActions["A"]()
    ui.submitButton.click()
    check(widget.workplace.session.current is None, "the AI-assisted read was not submitted")
    widget.exit()
    summary.update(reading="done", why="", manualRows=manual_rows, aiRows=ai_rows)
    return summary
