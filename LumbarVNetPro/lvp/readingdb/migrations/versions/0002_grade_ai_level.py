"""Grade entries keep the level the AI graded them as when the reader renamed the level.

Revision ID: 0002_grade_ai_level
Revises: 0001_initial
Create Date: 2026-11-26 18:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0002_grade_ai_level"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no table rebuild): the immutability triggers on grade_entry stay.
    op.add_column("grade_entry", sa.Column("ai_level", sa.String(length=20), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35, PostgreSQL): no rebuild, the triggers stay.
    op.drop_column("grade_entry", "ai_level")
