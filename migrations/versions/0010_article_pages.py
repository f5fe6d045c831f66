"""Full article text: the page's text kept with its entry, and the entries waiting for theirs

entries.article_text is the main text of the entry's page, once fetched; entries.article_note
is the one-line reason it is not there (a 404, a timeout, robots.txt, a Google News link),
when the entry was matched on the feed's own text instead (which entries.summary and content
keep, so the entry can still be matched on it when its page does not come). article_waits holds each entry
whose page is being fetched, until it is matched: when its page comes or at due_at, whichever
is first. The row is what makes that happen once, and survives a crash: what a stopped watcher
left waiting is fetched or matched at the next start.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("article_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("article_note", sa.Text(), nullable=True))
    op.create_table(
        "article_waits",
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("page_url", sa.Text(), nullable=False),
        sa.Column("public_only", sa.Boolean(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_article_waits_entry_id_entries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_article_waits")),
    )
    with op.batch_alter_table("article_waits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_article_waits_due_at"), ["due_at"], unique=False)


def downgrade() -> None:
    op.drop_table("article_waits")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_column("article_note")
        batch_op.drop_column("article_text")
