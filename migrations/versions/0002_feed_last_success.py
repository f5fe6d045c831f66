"""feeds.last_success_at: when a feed was last fetched successfully

A feed whose first attempts failed is still on its first poll when it finally answers:
its backlog must be stored silently, which the status alone ("failed") could not tell.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(), nullable=True))
    # Feeds that have succeeded before (they are ok or empty now, or stored entries once):
    # their last poll is the best estimate there is.
    op.execute("UPDATE feeds SET last_success_at = last_polled_at WHERE status IN ('ok', 'empty') OR entries_seen > 0")


def downgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("last_success_at")
