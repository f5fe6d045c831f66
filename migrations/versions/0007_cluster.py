"""feeds.polled_by, cluster_members, and (on PostgreSQL) procrastinate's job queue

Several `watcher run` processes on one PostgreSQL database form a cluster (issue 16):
procrastinate's tables hold its jobs; cluster_members says which host:pid each of its
workers is and which config it runs; feeds.polled_by says which process polled a feed last.
procrastinate's schema comes from the installed procrastinate (pinned to one minor version
in pyproject.toml): a later procrastinate whose schema changed needs a revision applying
its migrations from procrastinate/sql/migrations.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from watcher.store import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("polled_by", sa.Text(), nullable=True))
    op.create_table(
        "cluster_members",
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("config_loaded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_cluster_members")),
    )
    if op.get_bind().dialect.name == "postgresql":
        try:
            from watcher.cluster import engine_schema
        except ImportError as e:
            raise RuntimeError("watcher on PostgreSQL needs procrastinate: pip install -e '.[postgres]'") from e

        # psycopg's own execute: the script is many statements with % and : in function bodies.
        raw = op.get_bind().connection.driver_connection
        assert raw is not None
        raw.execute(engine_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            DO $$ DECLARE r record; BEGIN
              FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
                       WHERE p.proname LIKE 'procrastinate%' AND p.pronamespace = current_schema()::regnamespace LOOP
                EXECUTE 'DROP FUNCTION ' || r.f || ' CASCADE';
              END LOOP;
            END $$;
            DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,
                procrastinate_workers CASCADE;
            DROP TYPE IF EXISTS procrastinate_job_status, procrastinate_job_event_type, procrastinate_job_to_defer_v1 CASCADE;
            """
        )
    op.drop_table("cluster_members")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("polled_by")
