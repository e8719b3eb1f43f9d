"""Migrations build exactly the schema of the models, on both back-ends, and can be rolled back."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from readingdb_backends import db_url  # noqa: F401 - fixture
from sqlalchemy import inspect

from lvp.readingdb import ReadingDB
from lvp.readingdb.database import current_revision, downgrade, head_revision, migrate
from lvp.readingdb.models import Base


def test_migration_matches_models_and_round_trips(db_url):  # noqa: F811
    db = ReadingDB(db_url)
    assert current_revision(db.engine) == head_revision()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    downgrade(db.engine, "base")
    assert not set(Base.metadata.tables) & set(inspect(db.engine).get_table_names())
    migrate(db.engine, "head")
    assert set(Base.metadata.tables) <= set(inspect(db.engine).get_table_names())
    db.close()


def test_url_resolution(monkeypatch, tmp_path):
    from lvp.readingdb.database import DEFAULT_URL, ENV_VAR, resolve_url

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_url() == DEFAULT_URL
    monkeypatch.setenv(ENV_VAR, "sqlite:///x.sqlite")
    assert resolve_url() == "sqlite:///x.sqlite"
    assert resolve_url("sqlite:///y.sqlite") == "sqlite:///y.sqlite"


def _lvp_triggers_and_functions(conn) -> set[str]:
    from sqlalchemy import text

    if conn.dialect.name == "sqlite":
        return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
    triggers = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars()
    functions = conn.execute(text("SELECT proname FROM pg_proc WHERE proname LIKE 'lvp\\_%'")).scalars()
    return set(triggers) | {f"{f}()" for f in functions}


def test_the_drop_statements_remove_exactly_what_the_migrations_created(db_url):  # noqa: F811
    # The DROP statements take their names from the CREATE statements (lvp.readingdb.rules._drops):
    # what the migrations created is what a downgrade removes, guard by guard.
    import re

    from sqlalchemy import text

    from lvp.readingdb import rules

    def named(statements):
        return {re.sub(r" ON \w+$", "", s.removeprefix("DROP TRIGGER IF EXISTS ").removeprefix(
            "DROP FUNCTION IF EXISTS ")) for s in statements}

    db = ReadingDB(db_url)
    with db.engine.begin() as conn:
        dialect = conn.dialect.name
        made = _lvp_triggers_and_functions(conn)
        guards, immutability = named(rules.drop_replace_guard_ddl(dialect)), named(rules.drop_trigger_ddl(dialect))
        assert made == guards | immutability and not guards & immutability
        for statement in rules.drop_replace_guard_ddl(dialect):
            conn.execute(text(statement))
        assert _lvp_triggers_and_functions(conn) == immutability
        for statement in rules.drop_trigger_ddl(dialect):
            conn.execute(text(statement))
        assert _lvp_triggers_and_functions(conn) == set()
    db.close()
