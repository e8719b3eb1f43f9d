"""Each rule of the reading database, attacked through the API and around it with raw SQL."""

from __future__ import annotations

from datetime import datetime

import pytest
from readingdb_backends import db_url, seeded_study  # noqa: F401 - fixture
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lvp.errors import DatabaseError
from lvp.readingdb import Grade, ReadingDB
from lvp.readingdb.admin import add_assignment


@pytest.fixture
def study(db_url):  # noqa: F811
    db, clock, ids = seeded_study(db_url)
    ids["bob_c0_ai"] = add_assignment(db, "s1", "bob", "c0", "ai_assisted", 1)
    yield db, clock, ids
    db.close()


def raw(db: ReadingDB, sql: str, **params) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


# ------------------------------------------------------------------ own assignments only
def test_reader_cannot_touch_another_readers_assignment(study):
    db, _, ids = study
    with pytest.raises(DatabaseError, match="not assigned to reader 'bob'"):
        db.start_read("bob", ids["alice_c0_manual"])
    read = db.start_read("alice", ids["alice_c0_manual"])
    for attempt in (
        lambda: db.save_draft("bob", read.reading_id, [Grade("L4-L5", "herniation", 1)]),
        lambda: db.submit("bob", read.reading_id),
        lambda: db.get_read("bob", read.reading_id),
        lambda: db.ai_results("bob", ids["alice_c1_ai"]),
    ):
        with pytest.raises(DatabaseError, match="bob"):
            attempt()
    assert [w.assignment_id for w in db.worklist("bob")] == [ids["bob_c0_ai"]]


def test_schema_refuses_a_read_under_someone_elses_assignment(study):
    db, _, ids = study
    with db.engine.connect() as conn:
        bob = conn.execute(text("SELECT id FROM reader WHERE username='bob'")).scalar_one()
    with pytest.raises(DBAPIError):
        raw(db, "INSERT INTO reading (assignment_id, reader_id, arm, version, status, started_at) "
                "VALUES (:a, :r, 'manual', 1, 'draft', :t)", a=ids["alice_c0_manual"], r=bob, t=datetime(2025, 1, 1))


# ------------------------------------------------------------------ submitted is immutable
def _submitted(db, clock, ids):
    read = db.start_read("alice", ids["alice_c0_manual"])
    db.save_draft("alice", read.reading_id, [Grade("L4-L5", "herniation", 2), Grade("L5-S", "herniation", 0)])
    clock.advance(seconds=95)
    return db.submit("alice", read.reading_id)


def test_submit_records_duration_and_then_refuses_changes(study):
    db, clock, ids = study
    done = _submitted(db, clock, ids)
    assert done.status == "submitted"
    assert done.duration_s == pytest.approx(95.0)
    with pytest.raises(DatabaseError, match="immutable"):
        db.save_draft("alice", done.reading_id, [Grade("L4-L5", "herniation", 3)])
    with pytest.raises(DatabaseError, match="already submitted"):
        db.submit("alice", done.reading_id)
    with pytest.raises(DatabaseError, match="already submitted"):
        db.start_read("alice", ids["alice_c0_manual"])
    assert db.get_read("alice", done.reading_id).grades == done.grades


@pytest.mark.parametrize("sql", [
    "UPDATE reading SET duration_s = 1 WHERE id = :i",
    "UPDATE reading SET status = 'draft' WHERE id = :i",
    "DELETE FROM reading WHERE id = :i",
    "UPDATE grade_entry SET reader_grade = 3 WHERE reading_id = :i",
    "DELETE FROM grade_entry WHERE reading_id = :i",
    "INSERT INTO grade_entry (reading_id, arm, level, pathology, reader_grade) "
    "VALUES (:i, 'manual', 'L3-L4', 'herniation', 1)",
])
def test_raw_sql_cannot_change_a_submitted_read(study, sql):
    db, clock, ids = study
    done = _submitted(db, clock, ids)
    with pytest.raises(DBAPIError, match="LVP rule"):
        raw(db, sql, i=done.reading_id)
    assert db.get_read("alice", done.reading_id).grades == done.grades


def test_correction_is_a_new_version_with_reason_and_audit(study):
    db, clock, ids = study
    done = _submitted(db, clock, ids)
    with pytest.raises(DatabaseError, match="reason"):
        db.correct("alice", done.reading_id, [Grade("L4-L5", "herniation", 3)], reason="  ")
    fixed = db.correct("alice", done.reading_id, [Grade("L4-L5", "herniation", 3)], reason="missed extrusion")
    assert fixed.version == 2 and fixed.reading_id != done.reading_id and fixed.status == "submitted"
    grades = {(g.level, g.pathology): g.grade for g in fixed.grades}
    assert grades == {("L4-L5", "herniation"): 3, ("L5-S", "herniation"): 0}
    assert db.get_read("alice", done.reading_id).grades == done.grades  # the original is untouched
    with pytest.raises(DatabaseError, match="corrected already"):
        db.correct("alice", done.reading_id, [Grade("L4-L5", "herniation", 1)], reason="again")
    trail = db.audit_trail("reading", fixed.reading_id)
    corr = [a for a in trail if a["action"] == "correct"]
    assert len(corr) == 1 and corr[0]["actor"] == "alice"
    assert {"level": "L4-L5", "pathology": "herniation", "grade": 2, "measurement": None, "ai_grade_shown": None,
            "ai_decision": None} in corr[0]["old"]["grades"]
    assert corr[0]["new"]["reason"] == "missed extrusion"
    with pytest.raises(DBAPIError):  # schema: a version > 1 needs a reason
        raw(db, "UPDATE reading SET correction_reason = NULL WHERE id = :i", i=fixed.reading_id)


@pytest.mark.parametrize("sql", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"])
def test_audit_log_is_append_only(study, sql):
    db, clock, ids = study
    _submitted(db, clock, ids)
    before = db.audit_trail()
    with pytest.raises(DBAPIError, match="append-only"):
        raw(db, sql)
    assert db.audit_trail() == before and len(before) > 5


# ------------------------------------------------------------------ AI never in manual arm
def test_ai_output_refused_in_manual_arm_and_shown_in_ai_arm(study):
    db, _, ids = study
    manual = db.start_read("alice", ids["alice_c0_manual"])
    assert manual.ai_results is None
    with pytest.raises(DatabaseError, match="manual arm"):
        db.ai_results("alice", ids["alice_c0_manual"])
    ai = db.start_read("bob", ids["bob_c0_ai"])
    assert {(a.level, a.grade) for a in ai.ai_results} == {("L4-L5", 2), ("L5-S", 1)}
    db.save_draft("bob", ai.reading_id, [Grade("L4-L5", "herniation", 2), Grade("L5-S", "herniation", 2)])
    db.submit("bob", ai.reading_id)
    rows = {r["level"]: r for r in db.audit_trail("grade_entry") if r["actor"] == "bob" for r in [r["new"]]}
    assert rows["L4-L5"]["ai_decision"] == "accepted" and rows["L5-S"]["ai_decision"] == "modified"
    db.save_draft("alice", manual.reading_id, [Grade("L4-L5", "herniation", 2)])
    assert all(r["new"]["ai_grade_shown"] is None for r in db.audit_trail("grade_entry") if r["actor"] == "alice")


def test_schema_refuses_ai_grade_on_a_manual_read(study):
    db, _, ids = study
    manual = db.start_read("alice", ids["alice_c0_manual"])
    with pytest.raises(DBAPIError):
        raw(db, "INSERT INTO grade_entry (reading_id, arm, level, pathology, reader_grade, ai_grade_shown) "
                "VALUES (:i, 'manual', 'L4-L5', 'herniation', 2, 2)", i=manual.reading_id)
    with pytest.raises(DBAPIError):  # nor by pretending the entry belongs to the AI arm
        raw(db, "INSERT INTO grade_entry (reading_id, arm, level, pathology, reader_grade, ai_grade_shown) "
                "VALUES (:i, 'ai_assisted', 'L4-L5', 'herniation', 2, 2)", i=manual.reading_id)


# ------------------------------------------------------------------ arms and sessions
def test_same_case_cannot_be_read_in_both_arms_in_one_session(study):
    db, _, _ = study
    with pytest.raises(DatabaseError, match="constraint"):
        add_assignment(db, "s1", "alice", "c1", "manual", 1)  # c1 is already in session 1 (AI arm)
    with db.engine.connect() as conn:
        a = conn.execute(text("SELECT study_id, reader_id, case_id FROM assignment WHERE arm='ai_assisted' "
                              "AND session=1 ORDER BY id")).first()
    with pytest.raises(DBAPIError):
        raw(db, "INSERT INTO assignment (study_id, reader_id, case_id, arm, session, order_index) "
                "VALUES (:s, :r, :c, 'manual', 1, 9)", s=a[0], r=a[1], c=a[2])


def test_session_two_opens_after_session_one_and_washout(study):
    db, clock, ids = study
    assert not {w.assignment_id: w.available for w in db.worklist("alice")}[ids["alice_c0_ai"]]
    with pytest.raises(DatabaseError, match="not open yet"):
        db.start_read("alice", ids["alice_c0_ai"])
    for key in ("alice_c0_manual", "alice_c1_ai"):
        r = db.start_read("alice", ids[key])
        db.submit("alice", r.reading_id, [Grade("L4-L5", "herniation", 1)])
    clock.advance(days=13)
    with pytest.raises(DatabaseError, match="washout"):
        db.start_read("alice", ids["alice_c0_ai"])
    clock.advance(days=1, seconds=1)
    assert db.start_read("alice", ids["alice_c0_ai"]).ai_results


# ------------------------------------------------------------------ drafts survive crashes
def test_draft_survives_a_crash_and_is_resumed(study, db_url):  # noqa: F811
    db, _, ids = study
    read = db.start_read("alice", ids["alice_c1_ai"])
    db.save_draft("alice", read.reading_id, [Grade("L4-L5", "canal_stenosis", 2, measurement=9.5)])
    db.close()  # the client dies: connections gone, nothing else flushed
    again = ReadingDB(db_url)
    resumed = again.start_read("alice", ids["alice_c1_ai"])
    assert resumed.reading_id == read.reading_id and resumed.status == "draft"
    assert resumed.grades == [Grade("L4-L5", "canal_stenosis", 2, 9.5)]
    again.close()


def test_grades_are_checked_against_the_scale(study):
    db, _, ids = study
    read = db.start_read("alice", ids["alice_c0_manual"])
    with pytest.raises(DatabaseError, match="not on the pfirrmann scale"):
        db.save_draft("alice", read.reading_id, [Grade("L4-L5", "pfirrmann", 0)])
    with pytest.raises(DatabaseError, match="unknown pathology"):
        db.save_draft("alice", read.reading_id, [Grade("L4-L5", "spondylolisthesis", 1)])
    with pytest.raises(DatabaseError, match="no grades"):
        db.submit("alice", read.reading_id)
