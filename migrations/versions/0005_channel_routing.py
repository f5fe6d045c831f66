"""channels.routed_hit and hits.silent: hits reach a channel absent when they were matched

A channel missing from the config of the watcher that stored a hit (another watcher's
channel, or one taken out by a reload and put back) never got that hit. Each channel now
records how far its routing got, and the next watcher that has it routes it the hits it
missed; hits of a silent first poll are marked so that they are never routed. Channels
start at the newest hit when a watcher first meets them: the upgrade sends no backlog.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("silent", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "channels",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("routed_hit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_channels")),
    )


def downgrade() -> None:
    op.drop_table("channels")
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.drop_column("silent")
