"""Shared fixtures and helpers: real databases (SQLite files, and PostgreSQL where the machine
runs one), and polls stored as the pipeline stores them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta

import pytest

from watcher.store import PollRecord, Store
from watcher.types import Alert, Article, Hit

#: PostgreSQL the tests use when it is reachable: local, trust auth, database "test".
POSTGRES_URL = os.environ.get("WATCHER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_reason() -> str | None:
    """None when PostgreSQL is usable, else why the PostgreSQL tests are skipped."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"no PostgreSQL at 127.0.0.1:5432 (database test, trust auth): {str(e).strip()}"


_PG_SKIP = _postgres_reason()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/watcher.db"
        return
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = POSTGRES_URL.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def store_poll(
    store: Store,
    feed: str,
    articles: Sequence[Article],
    hits: Mapping[str, Sequence[Hit]],
    now: datetime,
    *,
    channels: Sequence[str] = ("desk",),
    due: datetime | None = None,
    etag: str | None = None,
    problem: str | None = None,
) -> int:
    """Store a poll of ``feed`` as the pipeline does, with one alert per new hit on each of
    ``channels``, due at ``due`` (default ``now``): no routing or story dedup. Returns the
    count of new hits."""
    record = PollRecord(
        articles=list(articles),
        hits=hits,
        etag=etag,
        last_modified=None,
        moved_to=None,
        status="ok",
        problem=problem,
        next_poll_at=now + timedelta(minutes=15),
    )
    with store.saving_poll(feed, record, now) as tx:
        tx.enqueue([Alert(new, channel, due or now) for new in tx.new_hits for channel in channels])
    return len(tx.new_hits)
