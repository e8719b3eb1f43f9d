"""Database triggers that make submitted reads and the audit log immutable.

Declarative constraints in :mod:`lvp.readingdb.models` cover ownership, arms and sessions; what
they cannot express (a row that may no longer change once a status is reached) is enforced here by
triggers, for SQLite and PostgreSQL. The migrations create them, so they hold for every client of
the database, not only this API. Every trigger message starts with ``LVP rule:``, which the API uses
to turn the database error into a :class:`lvp.errors.DatabaseError`.
"""

from __future__ import annotations

import re

RULE_PREFIX = "LVP rule:"

_SQLITE = [
    """CREATE TRIGGER trg_reading_submitted_no_update BEFORE UPDATE ON reading
       WHEN OLD.status = 'submitted'
       BEGIN SELECT RAISE(ABORT, 'LVP rule: a submitted read is immutable; submit a correction'); END""",
    """CREATE TRIGGER trg_reading_submitted_no_delete BEFORE DELETE ON reading
       WHEN OLD.status = 'submitted'
       BEGIN SELECT RAISE(ABORT, 'LVP rule: a submitted read cannot be deleted'); END""",
    """CREATE TRIGGER trg_grade_insert_submitted BEFORE INSERT ON grade_entry
       WHEN (SELECT status FROM reading WHERE id = NEW.reading_id) = 'submitted'
       BEGIN SELECT RAISE(ABORT, 'LVP rule: grades of a submitted read are immutable'); END""",
    """CREATE TRIGGER trg_grade_update_submitted BEFORE UPDATE ON grade_entry
       WHEN (SELECT status FROM reading WHERE id = OLD.reading_id) = 'submitted'
         OR (SELECT status FROM reading WHERE id = NEW.reading_id) = 'submitted'
       BEGIN SELECT RAISE(ABORT, 'LVP rule: grades of a submitted read are immutable'); END""",
    """CREATE TRIGGER trg_grade_delete_submitted BEFORE DELETE ON grade_entry
       WHEN (SELECT status FROM reading WHERE id = OLD.reading_id) = 'submitted'
       BEGIN SELECT RAISE(ABORT, 'LVP rule: grades of a submitted read are immutable'); END""",
    """CREATE TRIGGER trg_audit_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'LVP rule: the audit log is append-only'); END""",
    """CREATE TRIGGER trg_audit_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'LVP rule: the audit log is append-only'); END""",
]

_POSTGRES = [
    """CREATE FUNCTION lvp_reading_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.status = 'submitted' THEN
           RAISE EXCEPTION 'LVP rule: a submitted read is immutable; submit a correction';
         END IF;
         IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER trg_reading_immutable BEFORE UPDATE OR DELETE ON reading
       FOR EACH ROW EXECUTE FUNCTION lvp_reading_immutable()""",
    """CREATE FUNCTION lvp_grade_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE st text;
       BEGIN
         -- FOR SHARE: a concurrent submit of the parent read is waited for, then seen.
         IF TG_OP <> 'INSERT' THEN
           SELECT status INTO st FROM reading WHERE id = OLD.reading_id FOR SHARE;
           IF st = 'submitted' THEN
             RAISE EXCEPTION 'LVP rule: grades of a submitted read are immutable';
           END IF;
         END IF;
         IF TG_OP <> 'DELETE' THEN
           SELECT status INTO st FROM reading WHERE id = NEW.reading_id FOR SHARE;
           IF st = 'submitted' THEN
             RAISE EXCEPTION 'LVP rule: grades of a submitted read are immutable';
           END IF;
           RETURN NEW;
         END IF;
         RETURN OLD;
       END $$""",
    """CREATE TRIGGER trg_grade_immutable BEFORE INSERT OR UPDATE OR DELETE ON grade_entry
       FOR EACH ROW EXECUTE FUNCTION lvp_grade_immutable()""",
    """CREATE FUNCTION lvp_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'LVP rule: the audit log is append-only';
       END $$""",
    """CREATE TRIGGER trg_audit_append_only BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION lvp_audit_append_only()""",
    # TRUNCATE bypasses row triggers; forbid it too.
    """CREATE TRIGGER trg_audit_no_truncate BEFORE TRUNCATE ON audit_log
       FOR EACH STATEMENT EXECUTE FUNCTION lvp_audit_append_only()""",
]

# Added by migration 0003. SQLite's REPLACE conflict resolution (``INSERT OR REPLACE``,
# ``REPLACE INTO``, ``UPDATE OR REPLACE``) deletes the row in the way without firing DELETE
# triggers unless ``PRAGMA recursive_triggers`` is on, which a client other than LVP need not set.
# So a write that would replace a protected row is refused *before* the conflict is resolved,
# whatever the client's pragmas: an insert (or an update's new key) that collides with an audit
# record, a submitted read or a grade of a submitted read. (LVP's own connections also set
# recursive_triggers, so the DELETE triggers above fire on a replace as a second guard.)
_SUBMITTED_READ_KEY = """SELECT 1 FROM reading r WHERE r.status = 'submitted' AND {not_self}
         (r.id = NEW.id OR (r.assignment_id = NEW.assignment_id AND r.version = NEW.version))"""
_SUBMITTED_GRADE_ID = """SELECT 1 FROM grade_entry g JOIN reading r ON r.id = g.reading_id
         WHERE r.status = 'submitted' AND g.id = NEW.id {not_self}"""

_SQLITE_REPLACE_GUARDS = [
    """CREATE TRIGGER trg_audit_no_replace BEFORE INSERT ON audit_log
       WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
       BEGIN SELECT RAISE(ABORT, 'LVP rule: the audit log is append-only; a record cannot be replaced'); END""",
    f"""CREATE TRIGGER trg_reading_no_replace_insert BEFORE INSERT ON reading
       WHEN EXISTS ({_SUBMITTED_READ_KEY.format(not_self="")})
       BEGIN SELECT RAISE(ABORT, 'LVP rule: a submitted read is immutable; it cannot be replaced'); END""",
    f"""CREATE TRIGGER trg_reading_no_replace_update BEFORE UPDATE ON reading
       WHEN EXISTS ({_SUBMITTED_READ_KEY.format(not_self="r.id <> OLD.id AND")})
       BEGIN SELECT RAISE(ABORT, 'LVP rule: a submitted read is immutable; it cannot be replaced'); END""",
    f"""CREATE TRIGGER trg_grade_no_replace_insert BEFORE INSERT ON grade_entry
       WHEN EXISTS ({_SUBMITTED_GRADE_ID.format(not_self="")})
       BEGIN SELECT RAISE(ABORT, 'LVP rule: grades of a submitted read are immutable'); END""",
    f"""CREATE TRIGGER trg_grade_no_replace_update BEFORE UPDATE ON grade_entry
       WHEN EXISTS ({_SUBMITTED_GRADE_ID.format(not_self="AND g.id <> OLD.id")})
       BEGIN SELECT RAISE(ABORT, 'LVP rule: grades of a submitted read are immutable'); END""",
]

# PostgreSQL has no REPLACE (``INSERT ... ON CONFLICT DO UPDATE`` fires the UPDATE triggers), but
# TRUNCATE bypasses row triggers on every table: refuse it on the read tables as on the audit log.
_POSTGRES_REPLACE_GUARDS = [
    """CREATE FUNCTION lvp_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'LVP rule: % cannot be truncated; reads are immutable', TG_TABLE_NAME;
       END $$""",
    """CREATE TRIGGER trg_reading_no_truncate BEFORE TRUNCATE ON reading
       FOR EACH STATEMENT EXECUTE FUNCTION lvp_no_truncate()""",
    """CREATE TRIGGER trg_grade_no_truncate BEFORE TRUNCATE ON grade_entry
       FOR EACH STATEMENT EXECUTE FUNCTION lvp_no_truncate()""",
]


def _of(dialect: str, sqlite: list[str], postgres: list[str]) -> list[str]:
    """The statements for ``dialect`` (a copy); an unknown dialect raises ValueError naming it."""
    if dialect == "sqlite":
        return list(sqlite)
    if dialect == "postgresql":
        return list(postgres)
    raise ValueError(f"no trigger definitions for database dialect {dialect!r}")


def replace_guard_ddl(dialect: str) -> list[str]:
    """The statements of migration 0003: refuse writes that would replace protected rows."""
    return _of(dialect, _SQLITE_REPLACE_GUARDS, _POSTGRES_REPLACE_GUARDS)


def drop_replace_guard_ddl(dialect: str) -> list[str]:
    """The statements that remove what :func:`replace_guard_ddl` created."""
    return _drops(replace_guard_ddl(dialect), dialect)


def trigger_ddl(dialect: str) -> list[str]:
    """The statements that create the immutability triggers on ``dialect`` (sqlite / postgresql)."""
    return _of(dialect, _SQLITE, _POSTGRES)


def drop_trigger_ddl(dialect: str) -> list[str]:
    """The statements that remove what :func:`trigger_ddl` created (for downgrades)."""
    return _drops(trigger_ddl(dialect), dialect)


_CREATED = re.compile(r"\s*CREATE (TRIGGER|FUNCTION) (\w+)")
_TABLE = re.compile(r"\sON (\w+)")


def _drops(ddl: list[str], dialect: str) -> list[str]:
    """DROP statements for every trigger and function that ``ddl`` creates, the names read from the
    DDL itself (so each name is written once, in the statement that creates it): on SQLite in the
    order created; on PostgreSQL the triggers (ON their table) newest first, then their functions.
    """
    triggers, functions = [], []
    for statement in ddl:
        kind, name = _CREATED.match(statement).groups()
        if kind == "FUNCTION":
            functions.append(f"DROP FUNCTION IF EXISTS {name}()")
        elif dialect == "sqlite":
            triggers.append(f"DROP TRIGGER IF EXISTS {name}")
        else:
            triggers.insert(0, f"DROP TRIGGER IF EXISTS {name} ON {_TABLE.search(statement).group(1)}")
    return triggers + functions[::-1]
