"""Issue 16 items 7-10, attacked as a hostile or careless client would: REPLACE around the triggers,
AI output through a not-yet-open AI read, path and formula characters, secrets in error messages.

Real SQLite (through LVP's engine and through a plain ``sqlite3`` client that sets no pragmas)
and, where configured, real PostgreSQL.
"""

from __future__ import annotations

import csv
import sqlite3

import pytest
from readingdb_backends import db_url, seeded_study  # noqa: F401 - fixture
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lvp.cli import main
from lvp.csv_safe import safe_cell
from lvp.errors import DatabaseError
from lvp.readingdb import AIGrade, Grade, ReadingDB
from lvp.readingdb.admin import add_assignment, add_cases, add_readers

SECRET = "S3cr3t-pw"


@pytest.fixture
def study(db_url):  # noqa: F811
    db, clock, ids = seeded_study(db_url)
    db.store_ai_results("s1", "c1", [AIGrade("L4-L5", "herniation", 3, 0.8)])
    yield db, clock, ids, db_url
    db.close()


def _submitted(db, clock, ids):
    read = db.start_read("alice", ids["alice_c0_manual"])
    db.save_draft("alice", read.reading_id, [Grade("L4-L5", "herniation", 2), Grade("L5-S", "herniation", 0)])
    clock.advance(seconds=95)
    return db.submit("alice", read.reading_id)


def _state(db, reading_id):
    with db.engine.connect() as conn:
        reading = conn.execute(text("SELECT id, assignment_id, version, status, submitted_at FROM reading "
                                    "WHERE id = :i"), {"i": reading_id}).all()
        grades = conn.execute(text("SELECT id, reading_id, level, pathology, reader_grade FROM grade_entry "
                                   "WHERE reading_id = :i ORDER BY id"), {"i": reading_id}).all()
        audit = conn.execute(text("SELECT id, actor, action, entity, entity_id, old_value, new_value "
                                  "FROM audit_log ORDER BY id")).all()
    return reading, grades, audit


# ------------------------------------------------------------------ item 7: REPLACE on SQLite
def _sqlite_client(db, db_url, client):  # noqa: F811
    """Run raw SQL through LVP's engine (pragmas on) or a plain sqlite3 connection (no pragmas)."""
    if client == "lvp":
        def run(sql, **params):
            with db.engine.begin() as conn:
                conn.execute(text(sql), params)
        return run
    path = db_url.removeprefix("sqlite:///")

    def run_plain(sql, **params):
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute(sql, params)
        finally:
            conn.close()
    return run_plain


REPLACE_ATTACKS = {
    "audit row rewritten": "INSERT OR REPLACE INTO audit_log (id, at, actor, action, entity) "
                           "VALUES (:audit, '2025-01-01 00:00:00', 'mallory', 'nothing', 'reading')",
    "audit row REPLACE INTO": "REPLACE INTO audit_log (id, at, actor, action, entity) "
                              "VALUES (:audit, '2025-01-01 00:00:00', 'mallory', 'nothing', 'reading')",
    "submitted read back to draft": "INSERT OR REPLACE INTO reading (id, assignment_id, reader_id, arm, version, "
                                    "status, started_at) SELECT id, assignment_id, reader_id, arm, version, 'draft', "
                                    "started_at FROM reading WHERE id = :read",
    "submitted read replaced by key": "INSERT OR REPLACE INTO reading (assignment_id, reader_id, arm, version, status, "
                                      "started_at) SELECT assignment_id, reader_id, arm, version, 'draft', started_at "
                                      "FROM reading WHERE id = :read",
    "submitted grade moved away": "INSERT OR REPLACE INTO grade_entry (id, reading_id, arm, level, pathology, "
                                  "reader_grade) VALUES (:grade, :draft, 'ai_assisted', 'L1-L2', 'herniation', 1)",
    "submitted grade rewritten": "INSERT OR REPLACE INTO grade_entry (id, reading_id, arm, level, pathology, "
                                 "reader_grade) SELECT id, reading_id, arm, level, pathology, 3 FROM grade_entry "
                                 "WHERE id = :grade",
    "draft grade takes a submitted id": "UPDATE OR REPLACE grade_entry SET id = :grade WHERE reading_id = :draft",
}


@pytest.mark.parametrize("client", ["lvp", "plain sqlite3"])
@pytest.mark.parametrize("attack", list(REPLACE_ATTACKS))
def test_sqlite_replace_cannot_rewrite_a_submitted_read_or_the_audit_log(study, client, attack):
    db, clock, ids, url = study
    if db.dialect != "sqlite":
        pytest.skip("REPLACE is SQLite's")
    done = _submitted(db, clock, ids)
    draft = db.start_read("alice", ids["alice_c1_ai"])
    db.save_draft("alice", draft.reading_id, [Grade("L4-L5", "herniation", 3)])
    before = _state(db, done.reading_id)
    params = {"audit": before[2][0][0], "read": done.reading_id, "grade": before[1][0][0],
              "draft": draft.reading_id}
    run = _sqlite_client(db, url, client)
    with pytest.raises((DBAPIError, sqlite3.DatabaseError), match="LVP rule"):
        run(REPLACE_ATTACKS[attack], **params)
    assert _state(db, done.reading_id) == before
    assert db.get_read("alice", done.reading_id).status == "submitted"


@pytest.mark.parametrize("client", ["lvp", "plain sqlite3"])
def test_sqlite_update_or_replace_cannot_take_a_submitted_reads_key(study, client):
    db, clock, ids, url = study
    if db.dialect != "sqlite":
        pytest.skip("REPLACE is SQLite's")
    done = _submitted(db, clock, ids)
    run = _sqlite_client(db, url, client)
    # A second, draft version of the same assignment (allowed: it collides with nothing)...
    run("INSERT INTO reading (assignment_id, reader_id, arm, version, status, started_at, correction_reason) "
        "SELECT assignment_id, reader_id, arm, 2, 'draft', started_at, 'x' FROM reading WHERE id = :read",
        read=done.reading_id)
    before = _state(db, done.reading_id)
    # ...may not be renumbered onto the submitted version 1 (which REPLACE would delete).
    with pytest.raises((DBAPIError, sqlite3.DatabaseError), match="LVP rule"):
        run("UPDATE OR REPLACE reading SET version = 1 WHERE assignment_id = :a AND status = 'draft'",
            a=ids["alice_c0_manual"])
    assert _state(db, done.reading_id) == before


def test_lvp_connections_fire_delete_triggers_on_replace(study):
    db, *_ = study
    if db.dialect != "sqlite":
        pytest.skip("SQLite pragma")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA recursive_triggers").scalar() == 1
        names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"trg_audit_no_replace", "trg_reading_no_replace_insert", "trg_grade_no_replace_update"} <= names


@pytest.mark.parametrize("sql", [
    "INSERT INTO audit_log (id, at, actor, action, entity) VALUES (:audit, now(), 'mallory', 'x', 'reading') "
    "ON CONFLICT (id) DO UPDATE SET actor = EXCLUDED.actor",
    "INSERT INTO reading (id, assignment_id, reader_id, arm, version, status, started_at) SELECT id, assignment_id, "
    "reader_id, arm, version, 'draft', started_at FROM reading WHERE id = :read "
    "ON CONFLICT (id) DO UPDATE SET status = 'draft', submitted_at = NULL",
    "TRUNCATE reading CASCADE",
    "TRUNCATE grade_entry",
])
def test_postgres_upsert_and_truncate_cannot_rewrite_a_submitted_read(study, sql):
    db, clock, ids, _ = study
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL statements")
    done = _submitted(db, clock, ids)
    before = _state(db, done.reading_id)
    with pytest.raises(DBAPIError, match="LVP rule"):
        with db.engine.begin() as conn:
            conn.execute(text(sql), {"audit": before[2][0][0], "read": done.reading_id})
    assert _state(db, done.reading_id) == before


# ------------------------------------------------------------------ item 8: blinding
def test_ai_output_hidden_through_a_not_open_ai_read_while_the_manual_read_is_a_draft(study):
    db, clock, ids, _ = study
    manual = db.start_read("alice", ids["alice_c0_manual"])
    db.save_draft("alice", manual.reading_id, [Grade("L4-L5", "herniation", 1)])
    # The issue's leak: c0's AI grades through alice's session-2 AI assignment, not open yet.
    with pytest.raises(DatabaseError, match="hidden while your manual read|start the read first"):
        db.ai_results("alice", ids["alice_c0_ai"])
    with pytest.raises(DatabaseError, match="not open yet"):
        db.start_read("alice", ids["alice_c0_ai"])
    # Another case's AI read, open in session 1, shows its own AI output only.
    ai = db.start_read("alice", ids["alice_c1_ai"])
    assert [(a.level, a.grade) for a in ai.ai_results] == [("L4-L5", 3)]
    assert [(a.level, a.grade) for a in db.ai_results("alice", ids["alice_c1_ai"])] == [("L4-L5", 3)]
    # Session 1 done and the washout over: the session-2 AI read of c0 opens and shows c0's AI.
    db.submit("alice", manual.reading_id)
    db.submit("alice", ai.reading_id, [Grade("L4-L5", "herniation", 3)])
    with pytest.raises(DatabaseError, match="start the read first"):
        db.ai_results("alice", ids["alice_c0_ai"])
    clock.advance(days=15)
    opened = db.start_read("alice", ids["alice_c0_ai"])
    assert {(a.level, a.grade) for a in opened.ai_results} == {("L4-L5", 2), ("L5-S", 1)}
    assert db.ai_results("alice", ids["alice_c0_ai"]) == opened.ai_results


def test_ai_output_hidden_while_a_later_manual_read_of_the_case_is_a_draft(study):
    db, clock, ids, _ = study
    # A design with the AI arm first: c1 AI in session 1, c1 manual in session 2.
    late_manual = add_assignment(db, "s1", "alice", "c1", "manual", 2)
    ai = db.start_read("alice", ids["alice_c1_ai"])
    db.submit("alice", ai.reading_id, [Grade("L4-L5", "herniation", 3)])
    first = db.start_read("alice", ids["alice_c0_manual"])
    db.submit("alice", first.reading_id, [Grade("L4-L5", "herniation", 1)])
    clock.advance(days=15)
    assert db.get_read("alice", ai.reading_id).ai_results  # session 2 not started: still visible
    manual = db.start_read("alice", late_manual)
    assert manual.ai_results is None
    for look in (lambda: db.ai_results("alice", ids["alice_c1_ai"]),
                 lambda: db.get_read("alice", ai.reading_id)):
        with pytest.raises(DatabaseError, match=f"manual read {manual.reading_id} of the same case"):
            look()
    db.submit("alice", manual.reading_id, [Grade("L4-L5", "herniation", 2)])
    assert db.ai_results("alice", ids["alice_c1_ai"])


# ------------------------------------------------------------------ item 9: names and CSV cells
@pytest.mark.parametrize("name", ["../evil", "a/b", "..", r"x\y", "=HYPERLINK(1)", "-2+3", "@SUM(A1)", "con",
                                  ".hidden", "tab\tname"])
def test_reader_names_with_path_or_formula_characters_are_refused(study, name):
    db, *_ = study
    with pytest.raises(DatabaseError, match="not allowed"):
        db.get_or_create_reader(name)
    with pytest.raises(DatabaseError, match="not allowed"):
        add_readers(db, "s1", [{"username": name}])


def test_drafts_never_leave_the_drafts_folder(study, tmp_path):
    from LumbarVNetProLib.reading import ReadingError, ReadingSession

    db, *_ = study
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    # A reader row written around the API (an old database, another client) with a path in its name.
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO reader (username, display_name, center) VALUES ('../../evil', '', '')"))
    with pytest.raises(ReadingError, match="not allowed"):
        ReadingSession(db, "../../evil", drafts)
    session = ReadingSession(db, "alice", drafts)
    session.start(session.worklist()[0].assignment_id)
    session.set_grade("L4-L5", "herniation", 2)
    written = [p for p in tmp_path.rglob("*.json")]
    assert written and all(p.is_relative_to(drafts / "alice") for p in written)


def test_csv_export_escapes_formula_cells(study, tmp_path):
    db, clock, ids, url = study
    add_cases(db, "s1", [{"case_key": '=HYPERLINK("http://x.example","open")', "image_ref": "@SUM(A1)",
                          "center": "+1+1"}])
    asg = add_assignment(db, "s1", "bob", '=HYPERLINK("http://x.example","open")', "manual", 1)
    read = db.start_read("bob", asg)
    done = db.submit("bob", read.reading_id, [Grade("L4-L5", "herniation", 2, measurement=-1.5)])
    db.correct("bob", done.reading_id, [Grade("L4-L5", "herniation", 3)], reason="-cmd|' /C calc'!A0")
    out = tmp_path / "reads.csv"
    assert main(["study", "--db", url, "export", "s1", "-o", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["reader"] == "bob")
    assert row["case_key"] == "'=HYPERLINK(\"http://x.example\",\"open\")"
    assert row["case_center"] == "'+1+1"
    assert row["correction_reason"] == "'-cmd|' /C calc'!A0"
    assert row["reader_grade"] == "3" and row["version"] == "2"
    # Every cell a spreadsheet would evaluate is escaped; numbers are left as numbers.
    for r in rows:
        for key, value in r.items():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), (key, value)
            if value.startswith("-"):
                float(value)
    assert safe_cell(-1.5) == -1.5 and safe_cell("-1.5") == "'-1.5"


# ------------------------------------------------------------------ item 10: errors without secrets
@pytest.mark.parametrize("url, problem", [
    (f"postgresql+psycopg://lvp:{SECRET}@db.example.org:54x2/lvp", "port '54x2' is not a number"),
    (f"postgresql+psycopg//lvp:{SECRET}@db.example.org/lvp", "expected dialect"),
    (f"postgresql+nodriver://lvp:{SECRET}@db.example.org/lvp", "psycopg"),
    (f"postgresql+psycopg://lvp:{SECRET}@127.0.0.1:1/lvp", "cannot reach"),
    (f"postgresql+psycopg://lvp@127.0.0.1:1/lvp?password={SECRET}", "cannot reach"),
])
def test_database_url_errors_name_the_problem_and_hide_the_password(url, problem, capsys):
    with pytest.raises(DatabaseError) as err:
        ReadingDB(url)
    assert problem in str(err.value) and SECRET not in str(err.value)
    assert main(["study", "--db", url, "status", "s1"]) != 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert problem in out.err and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1
