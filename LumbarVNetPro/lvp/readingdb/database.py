"""Opening the reading database: URL resolution, engine set-up and programmatic migrations.

``sqlite:///path`` (the default, ``./lvp_reading.sqlite``) needs no set-up; a multicentre study
uses PostgreSQL, e.g. ``postgresql+psycopg://user:password@host:5432/lvp``. The URL comes from the
``--db`` option, else ``LVP_DATABASE_URL``, else the default file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lvp.errors import DatabaseError
from lvp.readingdb.rules import RULE_PREFIX

ENV_VAR = "LVP_DATABASE_URL"
DEFAULT_URL = "sqlite:///lvp_reading.sqlite"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: ``url`` if given, else ``$LVP_DATABASE_URL``, else the default file."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API objects are untyped
    # Foreign keys are off by default in SQLite; the ownership rules depend on them.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.close()


def _sqlite_begin_immediate(conn) -> None:  # noqa: ANN001 - a sqlalchemy Connection
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create an engine for ``url`` with the settings the rules need (SQLite foreign keys on)."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise DatabaseError(f"invalid database URL {url!r}: {err}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise DatabaseError(f"folder of the SQLite database does not exist: {folder}")
        # isolation_level=None hands transaction control to SQLAlchemy, which then starts every
        # transaction with BEGIN IMMEDIATE: writers queue on the database lock up front instead of
        # reading, racing and failing on a unique constraint (SQLite has no row locks).
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r}; use sqlite or postgresql")
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True)


def alembic_config(connection) -> Config:  # noqa: ANN001 - a sqlalchemy Connection
    """An in-memory Alembic configuration bound to ``connection`` (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema of ``engine``'s database to ``revision``."""
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:
        # Alembic's per-plugin INFO lines would drown the command's own output.
        alembic_log.setLevel(logging.WARNING)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    except OperationalError as err:
        raise DatabaseError(f"cannot reach or migrate the database: {err.orig}") from None


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrade the schema of ``engine``'s database to ``revision`` (``base``: drop everything)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def rule_violation(err: DBAPIError) -> DatabaseError:
    """Turn a database error raised by a rule (trigger or constraint) into a user-facing error."""
    msg = str(err.orig)
    if RULE_PREFIX in msg:
        text = msg[msg.index(RULE_PREFIX) :].splitlines()[0]
        return DatabaseError(text)
    if isinstance(err, IntegrityError):
        return DatabaseError(f"database constraint violated: {msg.splitlines()[0]}")
    return DatabaseError(f"database error: {msg.splitlines()[0]}")


class Database:
    """An opened reading database: an engine plus transactional sessions."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True, pool_size: int = 5) -> None:
        """Open ``url`` (see :func:`resolve_url`) and, unless ``upgrade`` is False, migrate to head."""
        self.url = resolve_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if upgrade:
            migrate(self.engine)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        Database errors raised by the rules come out as :class:`DatabaseError`.
        """
        sess = self._sessions()
        try:
            yield sess
            sess.commit()
        except DBAPIError as err:
            sess.rollback()
            raise rule_violation(err) from err
        except BaseException:
            sess.rollback()
            raise
        finally:
            sess.close()

    def close(self) -> None:
        """Release all connections."""
        self.engine.dispose()
