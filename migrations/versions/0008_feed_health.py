"""feeds.health, feed_events and outbox.event_id: a feed failing, gone or silent alerts once

Each feed keeps the health last alerted (ok, failing, gone, silent), since when it has been
failing and when it last brought a new entry; each change of health that alerted is a row
of feed_events, and its alerts are outbox rows like a hit's (hit_id or event_id, never
both). quiet_since starts at the feed's newest entry, else its last successful poll.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from watcher.store import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health", sa.String(16), server_default="ok", nullable=False))
        batch_op.add_column(sa.Column("failing_since", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("quiet_since", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE feeds SET quiet_since = COALESCE("
        "(SELECT MAX(entries.first_seen_at) FROM entries WHERE entries.feed_id = feeds.id), last_success_at)"
    )
    op.create_table(
        "feed_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("previous", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name=op.f("fk_feed_events_feed_id_feeds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_events")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("hit_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("event_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_outbox_event_id_feed_events"), "feed_events", ["event_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_unique_constraint("uq_outbox_event_channel", ["event_id", "channel"])
        batch_op.create_check_constraint("ck_outbox_hit_or_event", "(hit_id IS NULL) <> (event_id IS NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE hit_id IS NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("ck_outbox_hit_or_event", type_="check")
        batch_op.drop_constraint("uq_outbox_event_channel", type_="unique")
        batch_op.drop_constraint(op.f("fk_outbox_event_id_feed_events"), type_="foreignkey")
        batch_op.drop_column("event_id")
        batch_op.alter_column("hit_id", existing_type=sa.Integer(), nullable=False)
    op.drop_table("feed_events")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("quiet_since")
        batch_op.drop_column("failing_since")
        batch_op.drop_column("health")
