"""``lvp study db-roles`` and ``lvp study db-migrate``: PostgreSQL roles and schema migrations.

The reading database's tables belong to an owner role that only migrates them; readers and
``lvp study`` connect as an app role without DDL or TRUNCATE (see :mod:`lvp.readingdb.roles`).
Passwords come from the environment (``LVP_OWNER_PASSWORD``, ``LVP_APP_PASSWORD``), never from
the command line, and are never printed.
"""

from __future__ import annotations

import argparse
import os


def cmd_db_roles(args: argparse.Namespace) -> int:
    """Create the owner and app roles and the database, migrate as the owner, grant the app role."""
    from lvp.readingdb.database import mask_url, resolve_url
    from lvp.readingdb.roles import roles_script, setup_roles

    if args.sql:
        print(roles_script(args.database, args.owner, args.app), end="")
        return 0
    owner_url, app_url = setup_roles(resolve_url(args.db), args.database, args.owner, args.app,
                                     os.environ.get("LVP_OWNER_PASSWORD"), os.environ.get("LVP_APP_PASSWORD"))
    print(f"owner (migrations only): {mask_url(owner_url)}")
    print(f"app (readers, lvp study): {mask_url(app_url)}")
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Bring the schema to this LVP's newest revision (as the owner) and re-grant the app role."""
    from lvp.readingdb.database import mask_url, resolve_url
    from lvp.readingdb.roles import migrate_as_owner

    url = resolve_url(args.db)
    migrate_as_owner(url, args.app_role)
    granted = f"; role {args.app_role!r} has row access only" if args.app_role else ""
    print(f"{mask_url(url)}: schema at the newest revision{granted}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``db-roles`` and ``db-migrate`` to ``lvp study``'s sub-commands."""
    sp = sub.add_parser("db-roles", help="PostgreSQL: create the owner and app roles and the database",
                        description=cmd_db_roles.__doc__ + " --db is an administrator's URL.")
    sp.add_argument("--database", default="lvp", help="database to create (lvp)")
    sp.add_argument("--owner", default="lvp_owner", help="owner role: migrations only (lvp_owner)")
    sp.add_argument("--app", default="lvp_app", help="app role: readers and lvp study (lvp_app)")
    sp.add_argument("--sql", action="store_true", help="print the SQL script for a DBA instead of running it")
    sp.set_defaults(func=cmd_db_roles)
    sp = sub.add_parser("db-migrate", help="migrate the schema (run with the owner's URL)",
                        description=cmd_db_migrate.__doc__)
    sp.add_argument("--app-role", default=None, help="app role to give row access to every table")
    sp.set_defaults(func=cmd_db_migrate)
