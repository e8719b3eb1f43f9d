"""PostgreSQL roles: the tables belong to an owner that only migrates; LVP runs as an app role.

Against the real PostgreSQL of ``LVP_TEST_POSTGRES_URL`` (a superuser; ``.ci/start-postgres.sh``):
each test creates its own owner role, app role and database with ``lvp study db-roles`` (the
library call behind it), runs a whole read as the app role, and attacks the rules as that role
would: disabling or dropping triggers, TRUNCATE, DDL, rewriting the audit log. Skips without it.
"""

from __future__ import annotations

import uuid

import pytest
from readingdb_backends import postgres_server_url
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from lvp.cli import main
from lvp.errors import DatabaseError
from lvp.readingdb import AIGrade, Grade, ReadingDB
from lvp.readingdb.admin import add_assignment, add_cases, add_readers, create_study, export_reads
from lvp.readingdb.database import downgrade, make_engine
from lvp.readingdb.roles import roles_script, schema_statements, server_statements, setup_roles

pytestmark = pytest.mark.postgres


@pytest.fixture
def names():
    """Fresh role and database names, dropped afterwards whatever the test did."""
    server = postgres_server_url()
    tag = uuid.uuid4().hex[:10]
    n = {"database": f"lvp_r_{tag}", "owner": f"lvp_o_{tag}", "app": f"lvp_a_{tag}", "server": server}
    yield n
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{n["database"]}" WITH (FORCE)'))
        for role in (n["app"], n["owner"]):
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


@pytest.fixture
def roles(names):
    owner_url, app_url = setup_roles(names["server"], names["database"], names["owner"], names["app"],
                                     owner_password="owner-pw", app_password="app-pw")
    return {**names, "owner_url": owner_url, "app_url": app_url}


def _a_submitted_read(db: ReadingDB) -> int:
    create_study(db, "s", washout_days=0)
    add_cases(db, "s", [{"case_key": "c1"}, {"case_key": "c2"}])
    add_readers(db, "s", [{"username": "ana"}])
    db.store_ai_results("s", "c2", [AIGrade("L4-L5", "herniation", 2, 0.8)])
    manual = add_assignment(db, "s", "ana", "c1", "manual", 1)
    ai = add_assignment(db, "s", "ana", "c2", "ai_assisted", 1, 1)
    read = db.start_read("ana", manual)
    db.save_draft("ana", read.reading_id, [Grade("L4-L5", "herniation", 1), Grade("L5-S", "herniation", 0)])
    db.save_draft("ana", read.reading_id, [Grade("L4-L5", "herniation", 2)], replace=True)  # deletes L5-S
    done = db.submit("ana", read.reading_id)
    db.correct("ana", done.reading_id, [Grade("L4-L5", "herniation", 3)], reason="missed extrusion")
    second = db.start_read("ana", ai)
    assert second.ai_results and db.ai_results("ana", ai)
    db.submit("ana", second.reading_id, [Grade("L4-L5", "herniation", 2)])
    return done.reading_id


def _snapshot(engine) -> tuple:
    with engine.connect() as conn:
        return (conn.execute(text("SELECT id, status, version FROM reading ORDER BY id")).all(),
                conn.execute(text("SELECT id, reading_id, reader_grade FROM grade_entry ORDER BY id")).all(),
                conn.execute(text("SELECT id, actor, action, old_value, new_value FROM audit_log ORDER BY id")).all())


ATTACKS = [
    "ALTER TABLE reading DISABLE TRIGGER ALL",
    "ALTER TABLE audit_log DISABLE TRIGGER trg_audit_append_only",
    "DROP TRIGGER trg_grade_immutable ON grade_entry",
    "ALTER TABLE audit_log OWNER TO CURRENT_USER",
    "TRUNCATE audit_log",
    "TRUNCATE reading CASCADE",
    "DELETE FROM audit_log",
    "UPDATE audit_log SET actor = 'mallory'",
    "DELETE FROM reading",
    "CREATE TABLE notes (t text)",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "DROP TABLE audit_log",
]


def test_app_role_runs_a_whole_study_but_cannot_touch_the_rules(roles):
    db = ReadingDB(roles["app_url"])  # at head already: opening it writes no schema
    try:
        _a_submitted_read(db)
        assert len(export_reads(db, "s")) == 2
        before = _snapshot(db.engine)
        refused = []
        for sql in ATTACKS:
            try:
                with db.engine.begin() as conn:
                    conn.execute(text(sql))
            except DBAPIError as err:
                refused.append(getattr(err.orig, "sqlstate", None))
            else:
                pytest.fail(f"the app role could run: {sql}")
        # Every attack failed for want of privilege (42501) or ownership (42501 too in PostgreSQL).
        assert set(refused) == {"42501"}, refused
        assert _snapshot(db.engine) == before
    finally:
        db.close()
    # The tables belong to the owner, and the app role holds none of the dangerous rights.
    owner = make_engine(roles["owner_url"])
    with owner.connect() as conn:
        owners = set(conn.execute(text("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars())
        app_rights = set(conn.execute(text(
            "SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = :a"),
            {"a": roles["app"]}).scalars())
        attrs = conn.execute(text("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = :a"),
                             {"a": roles["app"]}).one()
    owner.dispose()
    assert owners == {roles["owner"]}
    assert app_rights <= {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert not any(attrs)


def test_app_role_on_an_empty_or_old_schema_gets_one_clear_message(names, capsys):
    # The database and roles exist but nobody migrated: the app role may not create the tables.
    admin = create_engine(names["server"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for s in server_statements(names["database"], names["owner"], names["app"]):
            conn.execute(text(s))
    in_db = create_engine(admin.url.set(database=names["database"]), isolation_level="AUTOCOMMIT")
    with in_db.connect() as conn:
        for s in schema_statements(names["owner"], names["app"]):
            conn.execute(text(s))
    in_db.dispose()
    admin.dispose()
    base = make_engine(names["server"]).url
    app_url = base.set(username=names["app"], password="app-pw-x", database=names["database"])
    owner_url = base.set(username=names["owner"], database=names["database"])
    app_url_s = app_url.render_as_string(hide_password=False)
    with pytest.raises(DatabaseError, match="may not create or change") as err:
        ReadingDB(app_url_s)
    assert "db-migrate" in str(err.value) and "app-pw-x" not in str(err.value)
    # The command line: one line, no traceback, no password.
    assert main(["study", "--db", app_url_s, "status", "s"]) == 2
    out = capsys.readouterr()
    assert "may not create or change" in out.err and "Traceback" not in out.err and "app-pw-x" not in out.err
    assert len(out.err.strip().splitlines()) == 1
    # The owner migrates and grants; then the app role opens it.
    owner_s = owner_url.render_as_string(hide_password=False)
    assert main(["study", "--db", owner_s, "db-migrate", "--app-role", names["app"]]) == 0
    ReadingDB(app_url_s).close()
    # A schema one revision behind: the app role is told to have the owner migrate, again.
    downgrade(make_engine(owner_s), "0002_grade_ai_level")
    with pytest.raises(DatabaseError, match="needs 0003_replace_guards"):
        ReadingDB(app_url_s)


def test_db_roles_command_and_script(names, capsys, monkeypatch):
    monkeypatch.setenv("LVP_OWNER_PASSWORD", "own-secret")
    monkeypatch.setenv("LVP_APP_PASSWORD", "app-secret")
    argv = ["study", "--db", names["server"], "db-roles", "--database", names["database"],
            "--owner", names["owner"], "--app", names["app"]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert names["app"] in out and "own-secret" not in out and "app-secret" not in out
    script = roles_script(names["database"], names["owner"], names["app"])
    assert "NOSUPERUSER" in script and "PASSWORD" not in script and "db-migrate" in script
    with pytest.raises(DatabaseError, match="not a plain PostgreSQL name"):
        roles_script("lvp; DROP DATABASE x", "o", "a")
