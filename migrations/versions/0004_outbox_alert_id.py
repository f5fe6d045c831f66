"""outbox.alert_id: a random UUID per alert, so that alert ids are unique beyond one database

Alert ids were "{hit row id}.{channel}": after a database reset every new alert reused an
earlier alert's id, and receivers that drop repeated ids (webhook-id, Message-ID) dropped
them. Rows made before this revision get a new UUID each: an alert retried after the
upgrade goes out with another id than before it, once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_id", sa.String(length=36), nullable=True))
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("alert_id", sa.String))
    conn = op.get_bind()
    ids = conn.execute(sa.select(outbox.c.id)).scalars().all()
    if ids:
        conn.execute(
            outbox.update().where(outbox.c.id == sa.bindparam("b_id")).values(alert_id=sa.bindparam("b_alert_id")),
            [{"b_id": row_id, "b_alert_id": str(uuid.uuid4())} for row_id in ids],
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("alert_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.create_unique_constraint("uq_outbox_alert_id", ["alert_id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_alert_id", type_="unique")
        batch_op.drop_column("alert_id")
