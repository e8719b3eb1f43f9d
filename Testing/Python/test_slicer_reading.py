"""Reading workflow on a real SQLite reading database and a real MRML scene (slicer-core)."""

from __future__ import annotations

import json

import pytest
from slicer_helpers import SAMPLE_DIR

from lvp.readingdb import AIGrade, ReadingDB, admin

pytest_plugins = ("slicer_helpers",)  # the reference_result and scene_with_sample fixtures

SAMPLE = SAMPLE_DIR / "spider_sample_t2.nii.gz"


@pytest.fixture()
def db(tmp_path):
    database = ReadingDB(f"sqlite:///{tmp_path / 'reading.sqlite'}")
    admin.create_study(database, "s", washout_days=0)
    admin.add_cases(
        database, "s", [{"case_key": "c1", "image_ref": str(SAMPLE)}, {"case_key": "c2", "image_ref": str(SAMPLE)}]
    )
    admin.add_readers(database, "s", [{"username": "r1"}])
    admin.add_assignment(database, "s", "r1", "c1", "manual", 1, 0)
    admin.add_assignment(database, "s", "r1", "c2", "ai_assisted", 1, 1)
    database.store_ai_results(
        "s", "c2", [AIGrade("L4-L5", "herniation", 2, 0.8, 4.1), AIGrade("L4-L5", "canal_stenosis", 1, 0.7, 95.0)]
    )
    yield database
    database.close()


def _ai_node_count(scene) -> int:
    return sum(
        scene.GetNodesByClass(cls).GetNumberOfItems()
        for cls in (
            "vtkMRMLSegmentationNode",
            "vtkMRMLMarkupsFiducialNode",
            "vtkMRMLMarkupsPlaneNode",
            "vtkMRMLLabelMapVolumeNode",
        )
    )


def test_sign_in_refuses_empty_and_unknown_reader(db, tmp_path):
    from LumbarVNetProLib.reading import ReadingError, ReadingSession
    from lvp.errors import DatabaseError

    with pytest.raises(ReadingError):
        ReadingSession(db, "  ", tmp_path)
    with pytest.raises(DatabaseError):
        ReadingSession(db, "nobody", tmp_path)
    items = ReadingSession(db, "r1", tmp_path).worklist()
    assert [(i.case_key, i.arm) for i in items] == [("c1", "manual"), ("c2", "ai_assisted")]


def test_manual_arm_loads_no_ai_and_submits_intact(db, tmp_path, scene_with_sample, reference_result):
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.reading import ReadingSession

    scene, volume, _ = scene_with_sample
    session = ReadingSession(db, "r1", tmp_path / "drafts")
    item = session.next_assignment()
    assert item.arm == "manual"
    # The report is passed on purpose: the manual arm must ignore it.
    read = session.start(item.assignment_id, json.loads((reference_result / "report.json").read_text()))
    assert all(r.ai_grade is None and r.value is None and r.confidence is None for r in read.rows)
    before = _ai_node_count(scene)
    nodes = CaseLogic(scene).loadCase("manual", volume, read.rows, resultDir=reference_result, caseKey="c1")
    assert nodes.segmentation is None and nodes.levelLabels is None and nodes.scanPlanes == []
    assert _ai_node_count(scene) == before
    table = lvpscene.read_grade_table(nodes.gradeTable)
    assert all(row["ai_grade"] == "" and row["value"] == "" for row in table)

    from LumbarVNetProLib.reading import ReadingError

    with pytest.raises(ReadingError, match="missing"):
        session.submit()
    expected = {}
    for i, row in enumerate(read.rows):
        grade = [3, 1, 2, 0, 4][i % 5] if row.pathology != "pfirrmann" else 4
        session.set_grade(row.level, row.pathology, grade)
        expected[row.key] = grade
    submitted = session.submit()
    assert submitted.status == "submitted" and submitted.duration_s >= 0
    stored = db.get_read("r1", read.reading_id)
    assert {(g.level, g.pathology): g.grade for g in stored.grades} == expected
    assert stored.ai_results is None
    assert not (tmp_path / "drafts" / "r1" / f"read-{read.reading_id}.json").exists()
    rows = admin.export_reads(db, "s")
    assert len(rows) == len(expected) and all(r["ai_grade_shown"] is None for r in rows)


def test_ai_arm_accept_and_modify_reach_the_database(db, tmp_path, scene_with_sample, reference_result):
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.reading import ReadingError, ReadingSession

    scene, volume, _ = scene_with_sample
    session = ReadingSession(db, "r1", tmp_path / "drafts")
    manual = session.next_assignment()
    read = session.start(manual.assignment_id)
    for row in read.rows:
        session.set_grade(row.level, row.pathology, 4 if row.pathology == "pfirrmann" else 0)
    session.submit()
    item = session.next_assignment()
    assert item.arm == "ai_assisted"
    report = json.loads((reference_result / "report.json").read_text())
    read = session.start(item.assignment_id, report)
    assert {r.key: r.ai_grade for r in read.rows} == {("L4-L5", "herniation"): 2, ("L4-L5", "canal_stenosis"): 1}
    nodes = CaseLogic(scene).loadCase("ai_assisted", volume, read.rows, resultDir=reference_result, caseKey="c2")
    assert nodes.segmentation is not None and nodes.levelLabels.GetNumberOfControlPoints() > 0
    # Nothing is accepted before the reader says so: submit is refused while a row is unreviewed.
    assert {r.state for r in read.rows} == {"unreviewed"} and all(r.decision is None for r in read.rows)
    session.set_grade("L4-L5", "canal_stenosis", 3)  # modify one
    with pytest.raises(ReadingError, match="missing: L4-L5 herniation"):
        session.submit()
    session.set_grade("L4-L5", "herniation", 2)  # accept the other
    session.submit()
    entries = {(r["level"], r["pathology"]): r for r in admin.export_reads(db, "s") if r["arm"] == "ai_assisted"}
    assert entries[("L4-L5", "herniation")]["reader_grade"] == 2
    assert entries[("L4-L5", "herniation")]["ai_decision"] == "accepted"
    assert entries[("L4-L5", "canal_stenosis")]["reader_grade"] == 3
    assert entries[("L4-L5", "canal_stenosis")]["ai_grade_shown"] == 1
    assert entries[("L4-L5", "canal_stenosis")]["ai_decision"] == "modified"
    assert session.next_assignment() is None


def test_unfinished_read_survives_a_crash_as_draft(db, tmp_path):
    from LumbarVNetProLib.reading import ReadingSession

    drafts = tmp_path / "drafts"
    session = ReadingSession(db, "r1", drafts)
    item = session.next_assignment()
    read = session.start(item.assignment_id)
    session.set_grade("L4-L5", "herniation", 3)
    session.set_grade("L5-S", "pfirrmann", 5)
    del session  # "crash": nothing is submitted or closed
    status = {i.assignment_id: i.status for i in db.worklist("r1")}
    assert status[item.assignment_id] == "draft"
    assert "submitted" not in status.values()
    assert admin.export_reads(db, "s") == []  # a draft is never counted as a read
    backup = json.loads((drafts / "r1" / f"read-{read.reading_id}.json").read_text())
    assert backup["status"] == "draft"
    resumed = ReadingSession(db, "r1", drafts).start(item.assignment_id)
    assert resumed.reading_id == read.reading_id and resumed.resumed
    grades = {r.key: r.reader_grade for r in resumed.rows}
    assert grades[("L4-L5", "herniation")] == 3 and grades[("L5-S", "pfirrmann")] == 5


def test_renamed_level_survives_resume_and_submits_with_the_ai_grade_shown(db, tmp_path):
    """Recompute renames L4-L5 to L3-L4: resume and submit pair the reader's grade with the AI's L4-L5 grade."""
    from LumbarVNetProLib.grades import apply_recompute
    from LumbarVNetProLib.reading import ReadingSession

    url = str(db.engine.url)
    session = ReadingSession(db, "r1")  # no local backup: the database draft alone must do
    ai_item = next(i for i in session.worklist() if i.arm == "ai_assisted")
    current = session.start(ai_item.assignment_id)
    session.set_grade("L4-L5", "herniation", 3)  # AI said 2: modified
    # The reader renames the disc in the Segment Editor; the re-graded report names it L3-L4.
    report = {"levels": [{"level": "L3-L4", "grades": {"herniation": {"grade": 1, "value": 3.0},
                                                       "canal_stenosis": {"grade": 1, "value": 90.0}}}]}
    rows, _changes = apply_recompute(current.rows, report, {"L4-L5": "L3-L4"})
    session.replace_rows(rows)
    db.close()

    reopened = ReadingDB(url)
    try:
        resumed = ReadingSession(reopened, "r1").start(ai_item.assignment_id)
        assert resumed.resumed
        rows = {r.key: r for r in resumed.rows}
        assert set(rows) == {("L3-L4", "herniation"), ("L3-L4", "canal_stenosis")}  # no stale L4-L5 row
        assert (rows[("L3-L4", "herniation")].ai_grade, rows[("L3-L4", "herniation")].reader_grade) == (2, 3)
        assert rows[("L3-L4", "herniation")].decision == "modified"
        assert rows[("L3-L4", "canal_stenosis")].ai_grade == 1 and rows[("L3-L4", "canal_stenosis")].ai_level == "L4-L5"
        # The canal row was never reviewed: it followed the rename, unreviewed, and is accepted now.
        assert rows[("L3-L4", "canal_stenosis")].state == "unreviewed"
        session = ReadingSession(reopened, "r1")
        session.start(ai_item.assignment_id)
        session.set_grade("L3-L4", "canal_stenosis", 1)
        done = session.submit()
        assert {(g.level, g.pathology, g.grade, g.ai_level) for g in done.grades} == {
            ("L3-L4", "herniation", 3, "L4-L5"),
            ("L3-L4", "canal_stenosis", 1, "L4-L5"),
        }
        audits = [a["new"] for a in reopened.audit_trail("grade_entry") if a["new"] is not None]
        shown = {(a["level"], a["pathology"]): (a["ai_grade_shown"], a["ai_decision"]) for a in audits}
        assert shown[("L3-L4", "herniation")] == (2, "modified")
        assert shown[("L3-L4", "canal_stenosis")] == (1, "accepted")
        deleted = [a for a in reopened.audit_trail("grade_entry") if a["action"] == "delete_grade"]
        assert {(a["old"]["level"], a["old"]["pathology"]) for a in deleted} == {("L4-L5", "herniation")}
    finally:
        reopened.close()
