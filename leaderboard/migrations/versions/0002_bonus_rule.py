"""the bonus rule: board_entry.all_passed_at (earliest upload that passed every part) and
frozen_row.all_passed (whether the student had one when the board froze)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for boards frozen before the bonus rule was recorded: their bonus stands as stored.
    with op.batch_alter_table("frozen_row") as batch:
        batch.add_column(sa.Column("all_passed", sa.Boolean(), nullable=True))
    with op.batch_alter_table("board_entry") as batch:
        batch.add_column(sa.Column("all_passed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    # What refresh_board_entry keeps current from now on, for the results already recorded.
    op.execute(
        """
        UPDATE board_entry SET all_passed_at = (
            SELECT MIN(submission.created_at) FROM submission
            JOIN result ON result.id = submission.result_id
            WHERE submission.assignment_id = board_entry.assignment_id
              AND submission.student_id = board_entry.student_id
              AND result.passed
        )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("board_entry") as batch:
        batch.drop_column("all_passed_at")
    with op.batch_alter_table("frozen_row") as batch:
        batch.drop_column("all_passed")
