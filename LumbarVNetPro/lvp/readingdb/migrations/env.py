"""Alembic environment of the reading database, run programmatically by lvp.readingdb.database.

The caller passes an open connection in ``config.attributes["connection"]``; no alembic.ini.
"""

from alembic import context

from lvp.readingdb.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable when alembic is run by hand
    raise RuntimeError("run the reading-database migrations through lvp.readingdb.database.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
