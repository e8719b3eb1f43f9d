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
