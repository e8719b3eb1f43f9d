"""Database back-ends for the reading-database tests: SQLite always, PostgreSQL when configured.

``LVP_TEST_POSTGRES_URL`` points at a PostgreSQL database the tests may use to create and drop
throwaway databases (``.ci/start-postgres.sh`` prints it); without it the PostgreSQL variants skip.
Each test gets a fresh, empty database.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta

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


class Clock:
    """A settable clock (naive UTC) so that durations and washouts are exact."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


def seeded_study(url: str):
    """A ReadingDB on ``url`` with study ``s1`` (washout 14 days): cases c0-c2, readers alice and bob,
    AI grades of c0, and alice's assignments c0 manual and c1 AI (session 1), c0 AI (session 2).

    Returns ``(db, clock, ids)``; ``ids`` names the assignments (``alice_c0_manual``, ...).
    """
    from lvp.readingdb import AIGrade, ReadingDB
    from lvp.readingdb.admin import add_assignment, add_cases, add_readers, create_study

    clock = Clock()
    db = ReadingDB(url, clock=clock)
    create_study(db, "s1", washout_days=14)
    add_cases(db, "s1", [{"case_key": f"c{i}", "image_ref": f"img/{i}.nii.gz"} for i in range(3)])
    add_readers(db, "s1", [{"username": "alice"}, {"username": "bob"}])
    db.store_ai_results("s1", "c0", [AIGrade("L4-L5", "herniation", 2, 0.9), AIGrade("L5-S", "herniation", 1, 0.6)])
    ids = {
        "alice_c0_manual": add_assignment(db, "s1", "alice", "c0", "manual", 1),
        "alice_c1_ai": add_assignment(db, "s1", "alice", "c1", "ai_assisted", 1),
        "alice_c0_ai": add_assignment(db, "s1", "alice", "c0", "ai_assisted", 2),
    }
    return db, clock, ids
