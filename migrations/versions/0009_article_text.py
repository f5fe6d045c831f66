"""entries.summary, content, story and seen_at: the articles kept for replay and retention

Only an entry's title and lead were stored, too little to run a new watch over. Its text
(summary and content, as matching reads them) and story key are now kept, and seen_at says
when a poll last found it in its feed, so that retention never deletes an entry its feed
still lists (it would come back as new, and alert again). Entries stored before this
revision have no text: a replay reads their title and lead.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from watcher.store import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("content", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("story", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("seen_at", UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_entries_first_seen_at"), ["first_seen_at"], unique=False)
    op.execute("UPDATE entries SET seen_at = updated_at")


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entries_first_seen_at"))
        batch_op.drop_column("seen_at")
        batch_op.drop_column("story")
        batch_op.drop_column("content")
        batch_op.drop_column("summary")
