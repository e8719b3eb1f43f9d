"""PostgreSQL roles of a multicentre reading database: an owner for migrations, an app role for LVP.

The immutability triggers (:mod:`lvp.readingdb.rules`) hold against every client, except the
tables' owner: PostgreSQL lets the owner ``ALTER TABLE ... DISABLE TRIGGER``, ``DROP TRIGGER`` or
``TRUNCATE``. So the tables belong to an **owner role** used only to create and migrate the schema
(``lvp study db-migrate``), and readers' workstations and ``lvp study`` connect as an **app role**
that may read and write rows and nothing else:

* no DDL: it owns nothing and may not create in the schema (``CREATE`` on ``public`` revoked);
* no ``TRUNCATE``, no ``DELETE`` except on draft grade entries (the triggers refuse the rest);
* the audit log: ``SELECT`` and ``INSERT`` only;
* not a superuser, cannot create roles or databases, and does not inherit the owner's rights.

:func:`setup_roles` does it all from an administrator's URL (a superuser, or a role with
``CREATEROLE`` and ``CREATEDB``); :func:`roles_script` prints the same as SQL to hand to a DBA.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from lvp.errors import DatabaseError
from lvp.readingdb.database import make_engine, mask_url, migrate

# What the app role may do on each table: row access only. Reading rows are updated on submit,
# grade entries of a draft are updated and deleted (replace=True, each deletion audited), AI and
# reference grades are re-imported; nothing else is ever deleted, and the audit log only grows.
APP_GRANTS: dict[str, str] = {
    "study": "SELECT, INSERT, UPDATE",
    "study_case": "SELECT, INSERT, UPDATE",
    "reader": "SELECT, INSERT, UPDATE",
    "study_reader": "SELECT, INSERT",
    "assignment": "SELECT, INSERT",
    "reading": "SELECT, INSERT, UPDATE",
    "grade_entry": "SELECT, INSERT, UPDATE, DELETE",
    "reference_grade": "SELECT, INSERT, UPDATE",
    "ai_result": "SELECT, INSERT, UPDATE",
    "audit_log": "SELECT, INSERT",
    "alembic_version": "SELECT",
}

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str, what: str) -> str:
    """``name`` checked as a plain lower-case SQL identifier (no quoting games), quoted."""
    if not _NAME.match(name or ""):
        raise DatabaseError(f"{what} {name!r} is not a plain PostgreSQL name: use a-z, 0-9 and _ (max 63)")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def server_statements(database: str, owner: str, app: str, owner_password: str | None = None,
                      app_password: str | None = None) -> list[str]:
    """Statements an administrator runs on the server (any database): the two roles and the database."""
    db, own, ap = _ident(database, "database"), _ident(owner, "owner role"), _ident(app, "app role")
    pw_own = f" PASSWORD {_literal(owner_password)}" if owner_password else ""
    pw_app = f" PASSWORD {_literal(app_password)}" if app_password else ""
    return [
        f"CREATE ROLE {own} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{pw_own}",
        f"CREATE ROLE {ap} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT{pw_app}",
        f"CREATE DATABASE {db} OWNER {own}",
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {db} TO {ap}",
    ]


def schema_statements(owner: str, app: str) -> list[str]:
    """Statements an administrator runs inside the new database: the schema is the owner's alone."""
    own, ap = _ident(owner, "owner role"), _ident(app, "app role")
    return [
        f"ALTER SCHEMA public OWNER TO {own}",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {ap}",
    ]


def grant_statements(app: str) -> list[str]:
    """Statements the owner runs after each migration: the app role's row rights, table by table."""
    ap = _ident(app, "app role")
    out = [f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ap}"]
    out += [f"GRANT {rights} ON TABLE {table} TO {ap}" for table, rights in APP_GRANTS.items()]
    out.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ap}")
    return out


def roles_script(database: str = "lvp", owner: str = "lvp_owner", app: str = "lvp_app") -> str:
    r"""The whole set-up as a psql script, passwords left to psql's ``\password`` (never in a file)."""
    lines = [
        "-- LVP reading database: owner role (migrations) and app role (readers, lvp study).",
        "-- Run as a PostgreSQL administrator:  psql -v ON_ERROR_STOP=1 -f this.sql",
        *[s + ";" for s in server_statements(database, owner, app)],
        f"\\password {owner}",
        f"\\password {app}",
        f"\\connect {database}",
        *[s + ";" for s in schema_statements(owner, app)],
        "-- Then, as the owner: create the tables and give the app role its rights (rerun after",
        "-- each LVP upgrade):   lvp study --db postgresql+psycopg://" + owner + "@HOST/" + database
        + " db-migrate --app-role " + app,
        "-- Readers and lvp study use postgresql+psycopg://" + app + "@HOST/" + database,
    ]
    return "\n".join(lines) + "\n"


def _run(engine: Engine, statements: list[str]) -> None:
    """Run ``statements`` in one transaction (committed at the end; AUTOCOMMIT engines commit each)."""
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def migrate_as_owner(owner_url: str, app: str | None = None) -> None:
    """Migrate the schema as the owner and (re)grant the app role its row rights on every table."""
    engine = make_engine(owner_url)
    try:
        migrate(engine)
        if app and engine.dialect.name == "postgresql":
            _run(engine, grant_statements(app))
    finally:
        engine.dispose()


def setup_roles(admin_url: str, database: str, owner: str, app: str, owner_password: str | None = None,
                app_password: str | None = None) -> tuple[str, str]:
    """Create the roles and the database, migrate as the owner, grant the app role; returns both URLs.

    ``admin_url``: a PostgreSQL URL of a role that may create roles and databases (its database
    is only used to connect). The URLs returned carry the passwords given (mask them to print).
    """
    try:
        admin = make_url(admin_url)
    except Exception as err:  # any parse error (ArgumentError, ValueError, ...) becomes one message
        raise DatabaseError(f"invalid administrator URL {mask_url(admin_url)!r}: {err.__class__.__name__}") from None
    if admin.get_backend_name() != "postgresql":
        raise DatabaseError("database roles exist on PostgreSQL only; SQLite has no roles (protect its file)")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        try:
            _run(engine, server_statements(database, owner, app, owner_password, app_password))
        except Exception as err:  # a database error becomes one message
            raise DatabaseError(f"cannot create the roles or database as {admin.username!r}: "
                                f"{mask_url(str(getattr(err, 'orig', err))).splitlines()[0]}") from None
        in_db = create_engine(admin.set(database=database), isolation_level="AUTOCOMMIT")
        try:
            _run(in_db, schema_statements(owner, app))
        finally:
            in_db.dispose()
    finally:
        engine.dispose()
    owner_url = _role_url(admin, database, owner, owner_password)
    app_url = _role_url(admin, database, app, app_password)
    migrate_as_owner(owner_url, app)
    return owner_url, app_url


def _role_url(admin: URL, database: str, user: str, password: str | None) -> str:
    return admin.set(username=user, password=password, database=database).render_as_string(hide_password=False)
