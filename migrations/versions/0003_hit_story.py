"""hits.story: the story a hit was made from, the same in every feed, so that it alerts once

The same story reaches several feeds (a Google News and a Bing News search for the same
name, a wire and the papers that carry it); each copy was an entry of its own and alerted
again. Hits made before this revision have no story and never count as a story told.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("story", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_hits_story", ["story"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.drop_index("ix_hits_story")
        batch_op.drop_column("story")
