"""Fill a watcher database with an archive of already-stored entries, for the
"cost follows the new entries, not the stored ones" check.

It migrates the database with ``watcher.store.Store`` (the same Alembic head as the
pipeline), creates the configured feed rows with ``Store.sync_feeds``, and bulk-inserts
``count`` archive entries spread over those feeds through ``watcher.store``'s own
``entries`` table with SQLAlchemy Core ``executemany`` (a few seconds for 200k rows).
Archive keys (``urn:bench:archive:...``) never collide with the served entries' keys, so the
next poll still finds every served entry new, while every index it probes is 200k rows deep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from watcher.store import Store, entries, feeds


def seed_archive(database_url: str, configured: Sequence[tuple[str, str]], count: int, *, chunk: int = 5000) -> int:
    """Insert ``count`` archive entries spread over the ``(name, url)`` feeds; return the total
    number of rows in ``entries`` afterwards."""
    store = Store(database_url)
    try:
        store.upgrade()
        now = datetime.now(UTC)
        store.sync_feeds(list(configured), now)
        with store.engine.begin() as conn:
            feed_ids = [row.id for row in conn.execute(sa.select(feeds.c.id).order_by(feeds.c.id))]
            old = now - timedelta(days=30)
            rows = []
            for n in range(count):
                feed_id = feed_ids[n % len(feed_ids)]
                key = f"urn:bench:archive:{feed_id}:{n}"
                when = old - timedelta(minutes=n)
                rows.append(
                    {
                        "feed_id": feed_id,
                        "key_hash": hashlib.sha1(key.encode()).hexdigest(),
                        "key": key,
                        "entry_id": key,
                        "link": f"https://news.example/archive/{feed_id}/{n}",
                        "title": f"Archived story {n} from feed {feed_id}",
                        "published": when,
                        "content_hash": hashlib.sha256(key.encode()).hexdigest(),
                        "first_seen_at": when,
                        "updated_at": when,
                    }
                )
                if len(rows) == chunk:
                    conn.execute(entries.insert(), rows)
                    rows = []
            if rows:
                conn.execute(entries.insert(), rows)
            return int(conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar_one())
    finally:
        store.close()
