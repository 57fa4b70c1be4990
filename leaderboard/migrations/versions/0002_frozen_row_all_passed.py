"""frozen_row.all_passed: whether the student had passed every part when the board froze

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for boards frozen before the bonus rule was recorded: their bonus stands as stored.
    with op.batch_alter_table("frozen_row") as batch:
        batch.add_column(sa.Column("all_passed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("frozen_row") as batch:
        batch.drop_column("all_passed")
