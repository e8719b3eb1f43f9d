"""Opening the reading database: URL resolution, engine set-up and programmatic migrations.

``sqlite:///path`` (the default, ``./lvp_reading.sqlite``) needs no set-up; a multicentre study
uses PostgreSQL, e.g. ``postgresql+psycopg://user:password@host:5432/lvp``. The URL comes from the
``--db`` option, else ``LVP_DATABASE_URL``, else the default file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Alembic's per-plugin INFO lines, logged while its modules load, would drown the command's output.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # after the log level
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
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


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, also when the URL cannot be parsed.

    Every error message that names a database URL goes through this: a URL typed with a typo
    must not print the password on the screen or into a CI log.
    """
    text = str(url)
    at = text.rfind("@")  # the last '@': an unencoded '@' in a password stays hidden
    if at > 0:
        head = text[:at]
        start = head.index("//") + 2 if "//" in head else 0  # user info starts after the '//'
        colon = head.find(":", start)
        if colon >= 0:
            text = head[: colon + 1] + "***" + text[at:]
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", text)


def _url_problem(url: str, err: Exception) -> str:
    """What is wrong with a URL SQLAlchemy could not parse, in words."""
    port = re.search(r"@[^/?]*:([^/?]*)(?:[/?]|$)", url)
    if isinstance(err, ValueError) and port and not port.group(1).isdigit():
        return f"the port {port.group(1)!r} is not a number"
    return ("expected dialect+driver://user:password@host:port/database "
            "(e.g. postgresql+psycopg://lvp@db.example.org/lvp) or sqlite:///path/to/file.sqlite")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # DB-API objects are untyped
    # Foreign keys are off by default in SQLite; the ownership rules depend on them.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys = ON")
    # A REPLACE conflict resolution deletes the row in the way; with recursive triggers on, that
    # deletion fires the DELETE triggers that protect submitted reads and the audit log (the
    # BEFORE INSERT guards of migration 0003 refuse it for clients that do not set this).
    cur.execute("PRAGMA recursive_triggers = ON")
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.close()


def _sqlite_begin_immediate(conn) -> None:  # a sqlalchemy Connection
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create an engine for ``url`` with the settings the rules need (SQLite foreign keys on)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise DatabaseError(f"invalid database URL {mask_url(url)!r}: {_url_problem(url, err)}") from None
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
    try:
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True)
    except (ArgumentError, ImportError) as err:  # NoSuchModuleError is an ArgumentError
        raise DatabaseError(f"cannot use database URL {mask_url(url)!r}: {mask_url(str(err))} "
                            "(the PostgreSQL driver is psycopg: postgresql+psycopg://...)") from None


def alembic_config(connection) -> Config:  # a sqlalchemy Connection
    """An in-memory Alembic configuration bound to ``connection`` (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _first_line(err: DBAPIError) -> str:
    return mask_url(str(err.orig).strip().splitlines()[0] if str(err.orig).strip() else type(err.orig).__name__)


def _who(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"the SQLite file {url.database!r}"
    return f"role {url.username or '(default)'!r} on database {url.database!r} at {url.host or 'localhost'}"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema of ``engine``'s database to ``revision`` (nothing to do when it is there).

    A database already at ``head`` is not written to, so the application's role, which may not
    change the schema (see :mod:`lvp.readingdb.roles`), opens it; one that needs migrating and a
    role that may not do it get one message saying so and what to run.
    """
    target = head_revision() if revision == "head" else revision
    try:
        current = current_revision(engine)
    except OperationalError as err:
        raise DatabaseError(f"cannot reach the database {mask_url(engine.url.render_as_string())!r}: "
                            f"{_first_line(err)}") from None
    except DBAPIError as err:
        raise DatabaseError(f"cannot read the schema version as {_who(engine)}: {_first_line(err)}") from None
    if current == target:
        return
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    except CommandError as err:
        raise DatabaseError(
            f"the database schema is at revision {current!r}, which this LVP does not know (newest: "
            f"{head_revision()!r}): it was created by a newer LVP; update LVP ({err})") from None
    except DBAPIError as err:
        denied = getattr(err.orig, "sqlstate", None) == "42501" or "permission denied" in str(err.orig).lower()
        if denied:
            raise DatabaseError(
                f"{_who(engine)} may not create or change the reading database's tables "
                f"({_first_line(err)}); the schema is at {current or 'nothing (empty database)'}, this LVP "
                f"needs {target}. Run the migration as the owner role: lvp study --db OWNER_URL db-migrate "
                "(see docs/reading-study.md, 'Database roles')") from None
        raise DatabaseError(f"cannot migrate the database as {_who(engine)}: {_first_line(err)}") from None


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
