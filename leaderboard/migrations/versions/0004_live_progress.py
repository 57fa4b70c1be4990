"""live progress: submission.progress_json, the parts' states while a worker grades it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submission", sa.Column("progress_json", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # Plain ALTER TABLE on both databases (SQLite >= 3.35): a batch copy of ``submission``
    # would have to drop the table that results point to, which the foreign keys refuse.
    op.execute("ALTER TABLE submission DROP COLUMN progress_json")
