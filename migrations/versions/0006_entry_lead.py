"""entries.lead: the start of an article's text, so that an alert on its title says more

Only titles were stored: an alert whose hit was on the title alone had nothing more to
show. The lead is the entry's summary, else the start of its content, at most 500
characters. Entries stored before this revision have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lead", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_column("lead")
