"""Database back-ends for the reading-database tests: SQLite always, PostgreSQL when configured.

``LVP_TEST_POSTGRES_URL`` points at a PostgreSQL database the tests may use to create and drop
throwaway databases (``.ci/start-postgres.sh`` prints it); without it the PostgreSQL variants skip.
Each test gets a fresh, empty database.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ENV = "LVP_TEST_POSTGRES_URL"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def postgres_server_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (e.g. eval \"$(.ci/start-postgres.sh)\")")
    return url


def _admin_engine(url: str):
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=None)


def fresh_database_url(backend: str, tmp_path) -> tuple[str, callable]:
    """A URL of a new empty database of ``backend`` and a function that removes it."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'reading.sqlite'}", lambda: None
    server = postgres_server_url()
    name = f"lvp_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(server)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh database URL on each back-end (the PostgreSQL variant skips when not configured)."""
    url, drop = fresh_database_url(request.param, tmp_path)
    yield url
    drop()
