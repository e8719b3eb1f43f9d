"""Writes that would replace a submitted read, its grades or an audit record are refused.

SQLite's REPLACE conflict resolution deleted such rows without firing the DELETE triggers (issue
16, item 7); PostgreSQL gets TRUNCATE guards on the read tables. See lvp.readingdb.rules.

Revision ID: 0003_replace_guards
Revises: 0002_grade_ai_level
Create Date: 2026-11-30 01:00:00
"""

from alembic import op

from lvp.readingdb.rules import drop_replace_guard_ddl, replace_guard_ddl

revision = "0003_replace_guards"
down_revision = "0002_grade_ai_level"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in replace_guard_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_replace_guard_ddl(op.get_bind().dialect.name):
        op.execute(statement)
