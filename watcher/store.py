"""The database: tables, migrations and the DAO the pipeline talks to.

The only module that imports SQLAlchemy. Callers see methods named after pipeline steps
(``changed_articles``, ``saving_poll``, ``claim_due``, ``mark_sent``) and get ``types``
dataclasses back, never sessions or rows. Every method is one transaction (``saving_poll``
spans the caller's decisions between its reads and writes); every database failure is raised
as ``StorageError``. It stores; it decides nothing (which alerts a poll makes is ``route``'s call).

SQLite (the default) runs in WAL mode with a busy timeout so that ``watcher poll`` and the
daemon can share a file; PostgreSQL runs the same code with pool pre-ping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from watcher.errors import SchemaOutdatedError, StorageError, redact_url
from watcher.types import (
    Alert,
    Article,
    Evidence,
    FeedState,
    HealthChange,
    HealthEvent,
    Hit,
    NewHit,
    OutboxItem,
    OutboxStatus,
    StoredHit,
    StoryAlert,
    Waiting,
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


#: Namespace of the PostgreSQL advisory locks that make two feeds' saves of one story take turns.
_STORY_LOCK = 0x73746F72  # "stor"
#: The PostgreSQL advisory lock that routing a channel's missed hits takes alone, and that
#: every save adding hits shares: when a router reads the newest hit, no smaller hit id is
#: still uncommitted (ids are handed out before commit, and commits come in any order).
_ROUTE_LOCK = 0x726F7574  # "rout"

#: The newest script in migrations/versions (tests/test_store.py checks this against Alembic).
SCHEMA_HEAD = "0010"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

feeds = sa.Table(
    "feeds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("moved_to", sa.Text),
    sa.Column("status", sa.String(16), nullable=False, server_default="new"),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_polled_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("next_poll_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("entries_seen", sa.Integer, nullable=False, server_default="0"),
    # "host:pid" of the process that polled the feed last (which one, in a cluster).
    sa.Column("polled_by", sa.Text),
    # The health last alerted (see watcher.health), and what it is judged on.
    sa.Column("health", sa.String(16), nullable=False, server_default="ok"),
    sa.Column("failing_since", UTCDateTime),
    sa.Column("quiet_since", UTCDateTime),
)

# Each change of a feed's health that alerted: what its outbox rows tell.
feed_events = sa.Table(
    "feed_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("feed_id", sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    sa.Column("health", sa.String(16), nullable=False),
    sa.Column("previous", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("since", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

entries = sa.Table(
    "entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("feed_id", sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    # Keys are guids or URLs of any length; the unique index is on their hash.
    sa.Column("key_hash", sa.String(40), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("entry_id", sa.Text),
    sa.Column("link", sa.Text),
    sa.Column("title", sa.Text, nullable=False),
    # The start of the article's text (``Article.lead``), shown by an alert on its title;
    # NULL for entries stored before it was kept.
    sa.Column("lead", sa.Text),
    # The text as matching reads it, kept for `watcher replay`; NULL for entries stored
    # before it was kept (a replay reads their title and lead).
    sa.Column("summary", sa.Text),
    sa.Column("content", sa.Text),
    sa.Column("story", sa.String(64)),
    sa.Column("published", UTCDateTime),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("first_seen_at", UTCDateTime, nullable=False, index=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # When a poll last found it in its feed: retention keeps what the feed still lists.
    sa.Column("seen_at", UTCDateTime),
    # The main text of the entry's page, when it was fetched (issue 14): what it was matched on.
    sa.Column("article_text", sa.Text),
    # Why the page was wanted and is not there ("HTTP 404 Not Found"): matched on the feed's text.
    sa.Column("article_note", sa.Text),
    sa.UniqueConstraint("feed_id", "key_hash", name="uq_entries_feed_key"),
)

# The entries waiting for their article page, each matched once: when the page comes or at
# due_at, whichever is first (the one that deletes the row matches). Kept across a crash.
article_waits = sa.Table(
    "article_waits",
    metadata,
    sa.Column("entry_id", sa.ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("page_url", sa.Text, nullable=False),
    sa.Column("public_only", sa.Boolean, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False, index=True),
    # "host:pid" of the watcher fetching its page: another takes it up only once that one is gone.
    sa.Column("owner", sa.Text),
)

hits = sa.Table(
    "hits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("entry_id", sa.ForeignKey("entries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("watch", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("statement", sa.Boolean, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    # The entry's story when the hit was made: the same in every feed that carries the story
    # (see parse.story_key). On hits, not entries: far fewer rows to index, and an entry
    # retitled later stays the story it was told as.
    sa.Column("story", sa.String(64), index=True),
    # Stored by a feed's silent first poll: never routed to any channel, now or later.
    sa.Column("silent", sa.Boolean, nullable=False, server_default=sa.false()),
    # An (entry, watch) pair alerts at most once, even when the entry is edited later.
    sa.UniqueConstraint("entry_id", "watch", name="uq_hits_entry_watch"),
)

# Every channel any watcher on this database has had, and how far its routing got: each hit
# up to ``routed_hit`` has been weighed for it (alerted or not). A channel absent from one
# watcher's config (another watcher's, or one taken out and put back) is routed the hits it
# missed by the next watcher that has it (``Store.routing``).
channels = sa.Table(
    "channels",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("routed_hit", sa.Integer, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # What it alerts: a hit, or a feed's change of health; never both.
    sa.Column("hit_id", sa.ForeignKey("hits.id", ondelete="CASCADE")),
    sa.Column("event_id", sa.ForeignKey("feed_events.id", ondelete="CASCADE")),
    sa.Column("channel", sa.Text, nullable=False),
    # What receivers drop duplicates by (webhook-id, Message-ID): a random UUID, so that no
    # other alert ever had it, in this database or in any other (a reset one, a test one).
    sa.Column("alert_id", sa.String(36), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    # A claim is a lease: "host:pid" of the sender and until when it holds the row.
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("hit_id", "channel", name="uq_outbox_hit_channel"),
    sa.UniqueConstraint("event_id", "channel", name="uq_outbox_event_channel"),
    sa.CheckConstraint("(hit_id IS NULL) <> (event_id IS NULL)", name="ck_outbox_hit_or_event"),
    sa.Index("ix_outbox_status_due", "status", "next_attempt_at"),
)


# The processes of a cluster (PostgreSQL): each procrastinate worker's host:pid and the config
# it runs (a hash of its file). Whether one is alive is procrastinate's heartbeat.
cluster_members = sa.Table(
    "cluster_members",
    metadata,
    sa.Column("worker_id", sa.BigInteger, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    # When the process last loaded a config that differed from the one it ran (or started):
    # the newest such load among the live members is the cluster's config.
    sa.Column("config_loaded_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class Member:
    """One process of a cluster, as ``watcher cluster`` lists it."""

    worker_id: int
    #: "host:pid".
    owner: str
    started_at: datetime
    config_hash: str
    config_loaded_at: datetime


@dataclass(frozen=True)
class PollRecord:
    """What one successful poll of one feed found (its alerts are decided by ``route``)."""

    #: The new and changed articles of the poll (unchanged ones are not passed).
    articles: Sequence[Article]
    #: Hits per article key.
    hits: Mapping[str, Sequence[Hit]]
    etag: str | None
    last_modified: str | None
    moved_to: str | None
    #: "ok" or "empty"; with ``problem`` set when a malformed body still gave entries.
    status: str
    problem: str | None
    next_poll_at: datetime
    #: A first poll that stores its backlog without alerting: its hits are never routed.
    silent: bool = False
    #: The keys of every article the feed lists now (changed or not).
    listed: Sequence[str] = ()
    #: The articles whose page is fetched before they are matched (none of them in ``hits``).
    waits: Sequence[PageWait] = ()
    #: Per article key, why its page was wanted and is not fetched (matched on the feed's text).
    notes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PageWait:
    """An article to match once its page is in, or at ``due``."""

    #: With the feed's own text whole.
    article: Article
    page_url: str
    public_only: bool
    due: datetime


@dataclass(frozen=True)
class Unchanged:
    """A poll that found its feed not modified (HTTP 304, or a file with the same stamp)."""

    name: str
    polled_at: datetime
    next_poll_at: datetime
    #: The validators to send next time (a server may issue new ones with a 304).
    etag: str | None
    last_modified: str | None
    #: Where a permanent redirect on the way led, if one did.
    moved_to: str | None


@dataclass(frozen=True)
class Overview:
    """Counts of the moment, for metrics (``Store.overview``)."""

    #: Feeds per status (new, ok, empty, failed, disabled).
    feeds: Mapping[str, int]
    #: Alerts not sent yet, per outbox status: due, failed and dead (each present, maybe 0).
    alerts: Mapping[str, int]
    #: Since when the longest-waiting due alert has been due; None when none is due.
    oldest_due: datetime | None
    #: Feeds per health last alerted (ok, failing, gone, silent).
    health: Mapping[str, int] = field(default_factory=dict)


def _key_hash(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()


def _evidence_json(hit: Hit) -> str:
    return json.dumps([e.as_json() for e in hit.evidence], ensure_ascii=False)


def _evidence_from_json(raw: str) -> tuple[Evidence, ...]:
    return tuple(Evidence.from_json(e) for e in json.loads(raw))


def watchers_own(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:
    """Alembic's ``include_name`` hook: the tables watcher's metadata declares are all but
    procrastinate's (the cluster's job queue, whose schema is its own, see migration 0007)."""
    return not (type_ == "table" and (name or "").startswith("procrastinate_"))


def migrations_dir() -> Path:
    """The Alembic scripts: the source tree's ``migrations/``, or the installed copy."""
    source = Path(__file__).resolve().parent.parent / "migrations"
    if (source / "env.py").is_file():
        return source
    import watcher.migrations  # type: ignore[import-not-found]  # installed by the package-dir mapping

    return Path(watcher.migrations.__file__).parent


def process_owner() -> str:
    """The claim owner tag of this process: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's claim: only its lease expiry can free it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Store:
    """All persistent state of watcher. Thread-safe: every call takes its own connection."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            self.engine: Engine = sa.create_engine(url, echo=echo, pool_pre_ping=True, future=True)
        except (exc.ArgumentError, ImportError) as e:
            raise StorageError(f"cannot open database {redact_url(url)}") from e
        self._sqlite = self.engine.dialect.name == "sqlite"
        #: Who polls through this store, as feeds.polled_by records it.
        self.owner = process_owner()
        # SQLite allows one writer at a time: threads of this process queue on a lock
        # instead of sleeping in SQLite's busy handler; other processes wait on busy_timeout.
        self._write_lock = threading.Lock()
        if self._sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction. Writes on SQLite hold the write lock from BEGIN IMMEDIATE on, so
        a transaction never fails upgrading from read to write (SQLITE_BUSY_SNAPSHOT)."""
        lock = self._write_lock if write and self._sqlite else contextlib.nullcontext()
        try:
            with lock, self.engine.connect() as conn:
                if write:
                    conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    yield conn
        except exc.SQLAlchemyError as e:
            raise StorageError(f"database error on {redact_url(self.url)}") from e

    # -- schema ----------------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> None:
        """Apply every pending migration (a quick no-op when there is none)."""
        current, head = self.revisions()
        if current == head:
            return
        from alembic import command  # here, not at the top: most starts have nothing to migrate

        try:
            command.upgrade(self._alembic_config(), "head")
        except exc.SQLAlchemyError as e:
            raise StorageError(f"migrating {redact_url(self.url)} failed") from e

    def check_schema(self) -> None:
        """Raise SchemaOutdatedError unless the database is at the latest migration."""
        current, head = self.revisions()
        if current != head:
            raise SchemaOutdatedError(
                f"database schema is at {current or 'nothing'}, not {head}",
                "run `watcher db upgrade`",
            )

    def revisions(self) -> tuple[str | None, str]:
        """The database's migration revision and the latest one this code knows.

        Read with plain SQL rather than Alembic, whose import and script scan would cost
        every short-lived command (`watcher poll` from cron) a noticeable start-up.
        """
        with self._tx(write=False) as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None, SCHEMA_HEAD
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        return current, SCHEMA_HEAD

    # -- feeds -----------------------------------------------------------------------

    def sync_feeds(self, configured: Sequence[tuple[str, str]], now: datetime) -> None:
        """Make sure every configured (name, url) has a row.

        A changed URL (the operator following a 301, say) clears the fetch state but keeps
        the feed's history, so its entries already seen do not alert again and its next
        new ones do. A new name for the URL of a feed no longer configured is a rename: the
        feed keeps its row, history and state under the new name (issue 12: a rename was a
        silent "first poll" and duplicate hits).
        """
        with self._tx() as conn:
            rows = {r.name: r for r in conn.execute(sa.select(feeds.c.name, feeds.c.url))}
            names = {name for name, _ in configured}
            retired = {r.url: r.name for r in rows.values() if r.name not in names}
            for name, url in configured:
                row = rows.get(name)
                if row is None and url in retired:
                    conn.execute(feeds.update().where(feeds.c.name == retired.pop(url)).values(name=name))
                elif row is None:
                    # Another process starting on the same new database may add it first.
                    conn.execute(_insert_new(conn, feeds, "name").values(name=name, url=url, next_poll_at=now))
                elif row.url != url:
                    conn.execute(
                        feeds.update()
                        .where(feeds.c.name == name)
                        .values(
                            url=url,
                            moved_to=None,
                            etag=None,
                            last_modified=None,
                            status=sa.case((feeds.c.last_success_at.is_(None), "new"), else_="ok"),
                            consecutive_failures=0,
                            last_error=None,
                            next_poll_at=now,
                        )
                    )

    def retry_feed(self, name: str, now: datetime) -> bool:
        """Poll a failing or disabled feed at the next chance; False if there is no such feed."""
        with self._tx() as conn:
            result = conn.execute(
                feeds.update()
                .where(feeds.c.name == name)
                .values(
                    status=sa.case(
                        (feeds.c.status.not_in(("failed", "disabled")), feeds.c.status),
                        (feeds.c.last_success_at.is_(None), "new"),
                        else_="ok",
                    ),
                    consecutive_failures=0,
                    next_poll_at=now,
                )
            )
        return bool(result.rowcount)

    def feed_states(self, names: Sequence[str] | None = None) -> list[FeedState]:
        query = sa.select(feeds).order_by(feeds.c.name)
        if names is not None:
            query = query.where(feeds.c.name.in_(list(names)))
        with self._tx(write=False) as conn:
            return [_feed_state(r) for r in conn.execute(query)]

    def feed_state(self, name: str) -> FeedState:
        states = self.feed_states([name])
        if not states:
            raise StorageError(f"no feed named {name!r} in the database", "run `watcher poll` once")
        return states[0]

    def record_not_modified(self, polls: Sequence[Unchanged]) -> None:
        """Record polls that found their feed unchanged, in one transaction.

        One transaction for a whole poll's 304s: per-feed transactions were most of the cost
        of polling a thousand unchanged feeds.
        """
        if not polls:
            return
        with self._tx() as conn:
            conn.execute(
                feeds.update()
                .where(feeds.c.name == sa.bindparam("b_name"))
                .values(
                    last_polled_at=sa.bindparam("b_now", type_=UTCDateTime()),
                    last_success_at=sa.bindparam("b_now", type_=UTCDateTime()),
                    next_poll_at=sa.bindparam("b_next", type_=UTCDateTime()),
                    etag=sa.bindparam("b_etag"),
                    last_modified=sa.bindparam("b_last_modified"),
                    moved_to=sa.func.coalesce(sa.bindparam("b_moved_to"), feeds.c.moved_to),
                    consecutive_failures=0,
                    failing_since=None,
                    quiet_since=sa.func.coalesce(feeds.c.quiet_since, sa.bindparam("b_now", type_=UTCDateTime())),
                    last_error=None,
                    status=sa.case((feeds.c.status == "failed", "ok"), else_=feeds.c.status),
                    polled_by=self.owner,
                ),
                [
                    {
                        "b_name": p.name,
                        "b_now": p.polled_at,
                        "b_next": p.next_poll_at,
                        "b_etag": p.etag,
                        "b_last_modified": p.last_modified,
                        "b_moved_to": p.moved_to,
                    }
                    for p in polls
                ],
            )

    def record_failure(
        self, name: str, reason: str, now: datetime, next_poll_at: datetime, *, disable: bool = False
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                feeds.update()
                .where(feeds.c.name == name)
                .values(
                    status="disabled" if disable else "failed",
                    last_error=reason,
                    last_polled_at=now,
                    next_poll_at=next_poll_at,
                    consecutive_failures=feeds.c.consecutive_failures + 1,
                    polled_by=self.owner,
                    failing_since=sa.func.coalesce(feeds.c.failing_since, now),
                )
            )

    def record_health(self, change: HealthChange, channels: Sequence[str], now: datetime) -> bool:
        """Store a change of a feed's health and its alert to each of ``channels``, in one
        transaction, if the feed still has the health ``change`` was judged from; return
        whether it did. The condition makes each change alert once, however many processes
        (two daemons, a daemon and `watcher poll`) judge it at the same time."""
        with self._tx() as conn:
            moved = conn.execute(
                feeds.update()
                .where(feeds.c.name == change.feed, feeds.c.health == change.previous)
                .values(health=change.health)
            )
            if moved.rowcount != 1:
                return False
            feed_id = conn.execute(sa.select(feeds.c.id).where(feeds.c.name == change.feed)).scalar_one()
            event_id = conn.execute(
                feed_events.insert()
                .values(
                    feed_id=feed_id,
                    health=change.health,
                    previous=change.previous,
                    reason=change.reason,
                    since=change.since,
                    created_at=now,
                )
                .returning(feed_events.c.id)
            ).scalar_one()
            if channels:
                conn.execute(
                    outbox.insert(),
                    [
                        dict(
                            event_id=event_id,
                            channel=channel,
                            alert_id=str(uuid.uuid4()),
                            status="due",
                            next_attempt_at=now,
                            created_at=now,
                        )
                        for channel in channels
                    ],
                )
        return True

    # -- entries and hits ------------------------------------------------------------

    def changed_articles(self, name: str, articles: Sequence[Article]) -> list[Article]:
        """The articles not stored yet, or whose content changed since stored.

        Looks up only the keys given, so the cost follows the feed's size, not the table's.
        """
        if not articles:
            return []
        by_hash = {_key_hash(a.key): a for a in articles}
        with self._tx(write=False) as conn:
            feed_id = conn.execute(sa.select(feeds.c.id).where(feeds.c.name == name)).scalar_one()
            query = sa.select(entries.c.key_hash, entries.c.content_hash).where(entries.c.feed_id == feed_id)
            known = {r.key_hash: r.content_hash for r in _select_in(conn, query, entries.c.key_hash, list(by_hash))}
        return [a for h, a in by_hash.items() if known.get(h) != a.content_hash]

    def rekeyed(self, name: str, articles: Sequence[Article]) -> set[str]:
        """The keys of ``articles`` the feed has not stored, whose very content (title, summary
        and content) it has stored under another key: its entries back under new ids."""
        by_hash = {_key_hash(a.key): a for a in articles}
        if not by_hash:
            return set()
        with self._tx(write=False) as conn:
            feed_id = conn.execute(sa.select(feeds.c.id).where(feeds.c.name == name)).scalar_one()
            of_feed = sa.select(entries.c.key_hash).where(entries.c.feed_id == feed_id)
            stored = {r.key_hash for r in _select_in(conn, of_feed, entries.c.key_hash, list(by_hash))}
            fresh = [a for h, a in by_hash.items() if h not in stored]
            if not fresh:
                return set()
            contents = sa.select(entries.c.content_hash).where(entries.c.feed_id == feed_id)
            hashes = sorted({a.content_hash for a in fresh})
            known = {r.content_hash for r in _select_in(conn, contents, entries.c.content_hash, hashes)}
        return {a.key for a in fresh if a.content_hash in known}

    @contextmanager
    def saving_poll(self, name: str, record: PollRecord, now: datetime) -> Iterator[PollWrite]:
        """One transaction for everything a successful poll writes: its new and changed
        entries and their hits on entering (``PollWrite.new_hits``), the alerts the caller
        then enqueues, and the feed's fetch state on leaving. A crash loses all or nothing."""
        with self._tx() as conn:
            feed_id = conn.execute(sa.select(feeds.c.id).where(feeds.c.name == name)).scalar_one()
            entry_ids, inserted = _write_entries(conn, feed_id, record.articles, now)
            found = [
                (entry_ids[_key_hash(a.key)], a, hit) for a in record.articles for hit in record.hits.get(a.key, ())
            ]
            write = PollWrite(conn, _write_hits(conn, name, found, now, silent=record.silent), now)
            write.waiting = _write_waits(conn, name, entry_ids, record)
            yield write
            values: dict[str, Any] = dict(
                status=record.status,
                last_error=record.problem,
                etag=record.etag,
                last_modified=record.last_modified,
                last_polled_at=now,
                last_success_at=now,
                next_poll_at=record.next_poll_at,
                consecutive_failures=0,
                failing_since=None,
                quiet_since=now if inserted else sa.func.coalesce(feeds.c.quiet_since, now),
                entries_seen=feeds.c.entries_seen + inserted,
                polled_by=self.owner,
            )
            if record.moved_to:
                values["moved_to"] = record.moved_to
            conn.execute(feeds.update().where(feeds.c.id == feed_id).values(**values))
            listed = sorted({_key_hash(key) for key in record.listed})
            for i in range(0, len(listed), _IN_CHUNK):
                conn.execute(
                    entries.update()
                    .where(entries.c.feed_id == feed_id, entries.c.key_hash.in_(listed[i : i + _IN_CHUNK]))
                    .values(seen_at=now)
                )

    def article_pages(self, name: str, articles: Sequence[Article]) -> dict[str, tuple[str | None, str | None]]:
        """For the ``articles`` the feed has stored: their key -> (stored link, stored article text)."""
        by_hash = {_key_hash(a.key): a.key for a in articles}
        if not by_hash:
            return {}
        with self._tx(write=False) as conn:
            feed_id = conn.execute(sa.select(feeds.c.id).where(feeds.c.name == name)).scalar_one()
            query = sa.select(entries.c.key_hash, entries.c.link, entries.c.article_text).where(
                entries.c.feed_id == feed_id
            )
            rows = _select_in(conn, query, entries.c.key_hash, list(by_hash))
            return {by_hash[r.key_hash]: (r.link, r.article_text) for r in rows}

    def waiting(self, *, due_by: datetime | None = None) -> list[Waiting]:
        """The entries waiting for their article page (only those due by ``due_by``), oldest due first."""
        with self._tx(write=False) as conn:
            return [_waiting(r) for r in conn.execute(_waiting_select(due_by))]

    def adopt_waits(self) -> list[Waiting]:
        """The entries left waiting for their page by a watcher that is gone (crashed, killed),
        made this process's to fetch."""
        with self._tx(write=False) as conn:
            owners = set(conn.execute(sa.select(article_waits.c.owner).distinct()).scalars())
        gone = {o for o in owners if o is None or _owner_is_dead(o)}
        if not gone:
            return []  # the common case, every `watcher poll`: no write at all
        with self._tx() as conn:
            left = [r for r in conn.execute(_waiting_select()) if r.owner in gone]
            ids = [r.entry_id for r in left]
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                conn.execute(
                    article_waits.update().where(article_waits.c.entry_id.in_(chunk)).values(owner=process_owner())
                )
        return [_waiting(r) for r in left]

    @contextmanager
    def finishing_article(
        self, wait: Waiting, article: Article, hits: Sequence[Hit], note: str | None, now: datetime
    ) -> Iterator[PollWrite | None]:
        """One transaction that ends ``wait``: the entry keeps ``article``'s text when it came
        from the page (``note`` None) or ``note`` when it did not, and its ``hits`` are stored
        (``PollWrite.new_hits``) for the caller to route. None, writing nothing, when the wait
        was ended already (its page came as its time ran out, or another watcher ended it)."""
        with self._tx() as conn:
            ended = conn.execute(article_waits.delete().where(article_waits.c.entry_id == wait.entry)).rowcount
            if ended != 1:
                yield None
                return
            values: dict[str, Any] = {"article_note": note}
            if note is None:
                values |= {"article_text": article.content, "lead": article.lead}
            conn.execute(entries.update().where(entries.c.id == wait.entry).values(**values))
            found = [(wait.entry, article, hit) for hit in hits]
            yield PollWrite(conn, _write_hits(conn, wait.feed, found, now, silent=False), now)

    @contextmanager
    def routing(self, channel: str, since: datetime, now: datetime) -> Iterator[PollWrite | None]:
        """One transaction that routes to ``channel`` the hits it missed; None when it missed none.

        The hits it missed (``PollWrite.new_hits``, oldest first) are those stored since it was
        last routed, by a watcher that did not have it, and made at ``since`` or later; not
        silent ones, nor those with a row for it already. The caller enqueues their alerts;
        on leaving, the channel is routed up to the newest hit. A channel new to the database
        starts at the newest hit: it gets no backlog.
        """
        newest_hit = sa.select(sa.func.coalesce(sa.func.max(hits.c.id), 0)).scalar_subquery()
        mark = sa.select(channels.c.routed_hit).where(channels.c.name == channel).scalar_subquery()
        with self._tx(write=False) as conn:
            routed, newest = conn.execute(sa.select(mark, newest_hit)).one()
        if routed is not None and newest <= routed:
            yield None  # the common case, every delivery round: nothing to write
            return
        with self._tx() as conn:
            _route_lock(conn, shared=False)
            routed, newest = conn.execute(sa.select(mark, newest_hit)).one()
            if routed is None:
                conn.execute(_insert_new(conn, channels, "name").values(name=channel, routed_hit=newest))
                yield None
                return
            yield PollWrite(conn, _missed_hits(conn, channel, routed, newest, since), now)
            conn.execute(channels.update().where(channels.c.name == channel).values(routed_hit=newest))

    def articles_since(self, since: datetime, *, after: int = 0, limit: int = 500) -> list[tuple[int, str, Article]]:
        """Up to ``limit`` stored articles first seen at ``since`` or later, with row ids above
        ``after``, in id order: (row id, feed, article). An entry matched on its article page
        has that page's text for content (and no summary), as when it was matched; one stored
        before its text was kept has its lead for summary."""
        query = (
            sa.select(entries, feeds.c.name.label("feed"))
            .join(feeds, feeds.c.id == entries.c.feed_id)
            .where(entries.c.first_seen_at >= since, entries.c.id > after)
            .order_by(entries.c.id)
            .limit(limit)
        )
        with self._tx(write=False) as conn:
            return [
                (
                    r.id,
                    r.feed,
                    Article(
                        key=r.key,
                        entry_id=r.entry_id,
                        link=r.link,
                        title=r.title,
                        summary="" if r.article_text else r.summary if r.summary is not None else (r.lead or ""),
                        content=r.article_text or r.content or "",
                        published=r.published,
                        content_hash=r.content_hash,
                        story=r.story,
                    ),
                )
                for r in conn.execute(query)
            ]

    @contextmanager
    def replaying(
        self, watch: str, found: Sequence[tuple[int, str, Article, Hit]], since: datetime, now: datetime, *, alert: bool
    ) -> Iterator[PollWrite]:
        """One transaction for what a replay of ``watch`` found among the articles stored
        since ``since``: ``found`` holds (entry row id, feed, article, hit).

        The hits no (entry, watch) pair has yet are recorded, silent unless ``alert`` (never
        routed, like a first poll's). With ``alert``, ``PollWrite.new_hits`` also holds the
        hits of ``watch`` stored silently since ``since`` that no alert was made for (an
        earlier replay's without ``alert``), for the caller to enqueue."""
        with self._tx() as conn:
            earlier = _silent_hits(conn, watch, since) if alert else []
            by_feed: dict[str, list[tuple[int, Article, Hit]]] = {}
            for entry, feed, article, hit in found:
                by_feed.setdefault(feed, []).append((entry, article, hit))
            fresh = [
                new
                for feed, of_feed in by_feed.items()
                for new in _write_hits(conn, feed, of_feed, now, silent=not alert)
            ]
            yield PollWrite(conn, earlier + fresh, now, recorded=len(fresh))

    def prune(self, before: datetime) -> int:
        """Delete the entries first seen before ``before``, with their hits and sent or dead
        alerts; return how many. Kept: an entry its feed listed at its last poll (deleted, it
        would come back as new and alert again) and one whose alert is still to be sent."""
        listed = entries.alias("listed")
        latest = sa.select(sa.func.max(listed.c.seen_at)).where(listed.c.feed_id == entries.c.feed_id).scalar_subquery()
        pending = sa.exists().where(
            hits.c.entry_id == entries.c.id, outbox.c.hit_id == hits.c.id, outbox.c.status.in_(("due", "failed"))
        )
        with self._tx() as conn:
            result = conn.execute(
                entries.delete().where(
                    entries.c.first_seen_at < before,
                    sa.or_(entries.c.seen_at.is_(None), entries.c.seen_at < latest),
                    ~pending,
                )
            )
        return int(result.rowcount)

    def list_hits(self, since: datetime | None = None, limit: int | None = None) -> list[StoredHit]:
        """Stored hits, newest first."""
        query = _stored_hit_select().order_by(hits.c.created_at.desc(), hits.c.id.desc())
        if since is not None:
            query = query.where(hits.c.created_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self._tx(write=False) as conn:
            return [_stored_hit(r) for r in conn.execute(query)]

    def hits_per_day(self, since: datetime) -> list[tuple[str, str, int]]:
        """(UTC day as YYYY-MM-DD, watch, hits recorded that day) since ``since``."""
        day = sa.func.date(hits.c.created_at)
        query = (
            sa.select(day, hits.c.watch, sa.func.count()).where(hits.c.created_at >= since).group_by(day, hits.c.watch)
        )
        with self._tx(write=False) as conn:
            # SQLite's date() is text and PostgreSQL's a date: both print as YYYY-MM-DD.
            return [(str(d), watch, int(n)) for d, watch, n in conn.execute(query)]

    def overview(self, now: datetime) -> Overview:
        """Feeds by status, the alerts not sent yet by status, and since when the oldest due
        one has been due: read at every metrics scrape, so index-backed and quick."""
        undelivered = ("due", "failed", "dead")
        due = sa.and_(outbox.c.status.in_(("due", "failed")), outbox.c.next_attempt_at <= now)
        with self._tx(write=False) as conn:
            by_status: dict[str, int] = dict(
                conn.execute(sa.select(feeds.c.status, sa.func.count()).group_by(feeds.c.status)).tuples().all()
            )
            by_health: dict[str, int] = dict(
                conn.execute(sa.select(feeds.c.health, sa.func.count()).group_by(feeds.c.health)).tuples().all()
            )
            alerts: dict[str, int] = dict(
                conn.execute(
                    sa.select(outbox.c.status, sa.func.count())
                    .where(outbox.c.status.in_(undelivered))
                    .group_by(outbox.c.status)
                )
                .tuples()
                .all()
            )
            oldest = conn.execute(sa.select(sa.func.min(outbox.c.next_attempt_at)).where(due)).scalar_one()
        return Overview(
            feeds={str(k): int(v) for k, v in by_status.items()},
            alerts={status: int(alerts.get(status, 0)) for status in undelivered},
            oldest_due=oldest,
            health={str(k): int(v) for k, v in by_health.items()},
        )

    # -- cluster ---------------------------------------------------------------------

    @property
    def clustered(self) -> bool:
        """True on PostgreSQL: every `watcher run` on this database joins one cluster."""
        return self.engine.dialect.name == "postgresql"

    def join_cluster(self, worker_id: int, config_hash: str, now: datetime) -> None:
        """Record this process as the cluster member behind procrastinate worker ``worker_id``."""
        with self._tx() as conn:
            conn.execute(
                cluster_members.insert().values(
                    worker_id=worker_id, owner=self.owner, started_at=now, config_hash=config_hash, config_loaded_at=now
                )
            )

    def loaded_config(self, worker_id: int, config_hash: str, now: datetime) -> None:
        """Record that member ``worker_id`` now runs the config of ``config_hash``."""
        with self._tx() as conn:
            conn.execute(
                cluster_members.update()
                .where(cluster_members.c.worker_id == worker_id)
                .values(config_hash=config_hash, config_loaded_at=now)
            )

    def members(self, live: Collection[int]) -> list[Member]:
        """The members whose worker is among ``live``, oldest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(cluster_members).order_by(cluster_members.c.started_at)).all()
        return [
            Member(r.worker_id, r.owner, r.started_at, r.config_hash, r.config_loaded_at)
            for r in rows
            if r.worker_id in live
        ]

    def forget_members(self, live: Collection[int], started_before: datetime) -> None:
        """Delete the members started before ``started_before`` whose worker is not among ``live``
        (killed: procrastinate pruned their worker); those younger may not be listed yet."""
        with self._tx() as conn:
            conn.execute(
                cluster_members.delete().where(
                    cluster_members.c.worker_id.not_in(sorted(live)), cluster_members.c.started_at < started_before
                )
            )

    def leave_cluster(self, worker_id: int) -> None:
        with self._tx() as conn:
            conn.execute(cluster_members.delete().where(cluster_members.c.worker_id == worker_id))

    # -- outbox ----------------------------------------------------------------------

    def release_dead_claims(self) -> int:
        """Free the rows claimed by processes of this host that no longer exist (crashed)."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(outbox.c.id, outbox.c.claimed_by).where(outbox.c.claimed_by.is_not(None))
            ).all()
            dead = [r.id for r in rows if _owner_is_dead(r.claimed_by)]
            if dead:
                conn.execute(outbox.update().where(outbox.c.id.in_(dead)).values(claimed_by=None, claimed_until=None))
        return len(dead)

    def claim_due(
        self, now: datetime, *, owner: str, lease: timedelta, channels: Collection[str], limit: int = 100
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due rows of ``channels`` for ``owner`` until ``now + lease``.

        A claim survives a crash only until its lease ends (or until the next start on the
        same host sees its owner is gone), so every row is eventually sent or still due.
        """
        if not channels:
            return []
        claimable = (
            outbox.c.channel.in_(sorted(channels)),
            outbox.c.status.in_(("due", "failed")),
            outbox.c.next_attempt_at <= now,
            sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
        )
        due = sa.select(outbox.c.id).where(*claimable).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit)
        claimed: list[int] = []
        with self._tx() as conn:
            for row_id in conn.execute(due).scalars().all():
                # The whole condition again in the UPDATE: under PostgreSQL's READ COMMITTED
                # another sender may have claimed, sent and released the row since the SELECT.
                result = conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row_id, *claimable)
                    .values(claimed_by=owner, claimed_until=now + lease, attempts=outbox.c.attempts + 1)
                )
                if result.rowcount == 1:
                    claimed.append(row_id)
        return self._outbox_items(claimed)

    def renew_claims(self, ids: Sequence[int], *, owner: str, until: datetime) -> int:
        """Extend ``owner``'s claims on ``ids`` to ``until``; return how many it still held."""
        with self._tx() as conn:
            result = conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(list(ids)), outbox.c.claimed_by == owner)
                .values(claimed_until=until)
            )
        return int(result.rowcount)

    def mark_sent(self, ids: Sequence[int], now: datetime) -> None:
        self._set_outbox(ids, status="sent", sent_at=now, last_error=None)

    def revive(self, channel: str, now: datetime) -> int:
        """Make ``channel``'s failed rows due at once, oldest first (their next attempt becomes
        when they were made); return how many. A row a sender holds right now is left to it."""
        with self._tx() as conn:
            result = conn.execute(
                outbox.update()
                .where(
                    outbox.c.channel == channel,
                    outbox.c.status == "failed",
                    outbox.c.next_attempt_at > now,
                    sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                )
                .values(next_attempt_at=outbox.c.created_at)
            )
        return int(result.rowcount)

    def mark_failed(self, ids: Sequence[int], error: str, next_attempt_at: datetime) -> None:
        self._set_outbox(ids, status="failed", last_error=error, next_attempt_at=next_attempt_at)

    def mark_dead(self, ids: Sequence[int], error: str) -> None:
        self._set_outbox(ids, status="dead", last_error=error)

    def release(self, ids: Sequence[int], *, owner: str) -> None:
        """Give ``owner``'s claimed rows back untouched (shutdown before they were sent)."""
        with self._tx() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(list(ids)), outbox.c.claimed_by == owner)
                .values(claimed_by=None, claimed_until=None, attempts=outbox.c.attempts - 1)
            )

    def retry(self, ids: Sequence[int] | None, now: datetime) -> int:
        """Make failed or dead rows due now (all of them when ``ids`` is None).

        A failed row that a sender holds right now is left to that sender.
        """
        query = outbox.update().where(
            outbox.c.status.in_(("failed", "dead")),
            sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
        )
        if ids is not None:
            query = query.where(outbox.c.id.in_(list(ids)))
        with self._tx() as conn:
            # A fresh start: the retry schedule begins again from its first attempt.
            result = conn.execute(
                query.values(status="due", next_attempt_at=now, attempts=0, claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount)

    def list_outbox(self, status: OutboxStatus | None = None, limit: int | None = None) -> list[OutboxItem]:
        query = sa.select(outbox.c.id).order_by(outbox.c.id.desc())
        if status is not None:
            query = query.where(outbox.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self._tx(write=False) as conn:
            ids = list(conn.execute(query).scalars())
        return self._outbox_items(ids)

    def outbox_items(self, ids: Sequence[int]) -> list[OutboxItem]:
        """The outbox rows with these ids, in that order; unknown ids are left out."""
        return self._outbox_items(ids)

    def _set_outbox(self, ids: Sequence[int], **values: Any) -> None:
        with self._tx() as conn:
            conn.execute(
                outbox.update().where(outbox.c.id.in_(list(ids))).values(claimed_by=None, claimed_until=None, **values)
            )

    def _outbox_items(self, ids: Sequence[int]) -> list[OutboxItem]:
        if not ids:
            return []
        columns = (
            outbox.c.id.label("outbox_id"),
            outbox.c.channel,
            outbox.c.alert_id,
            outbox.c.status.label("outbox_status"),
            outbox.c.attempts,
            outbox.c.next_attempt_at,
            outbox.c.last_error,
            outbox.c.sent_at,
        )
        of_hits = _stored_hit_select().add_columns(*columns).join_from(hits, outbox, outbox.c.hit_id == hits.c.id)
        of_events = (
            sa.select(
                feed_events,
                feeds.c.name.label("feed"),
                sa.func.coalesce(feeds.c.moved_to, feeds.c.url).label("url"),
                *columns,
            )
            .select_from(outbox)
            .join(feed_events, feed_events.c.id == outbox.c.event_id)
            .join(feeds, feeds.c.id == feed_events.c.feed_id)
        )
        with self._tx(write=False) as conn:
            rows: dict[int, tuple[Any, StoredHit | None, HealthEvent | None]] = {
                r.outbox_id: (r, _stored_hit(r), None) for r in _select_in(conn, of_hits, outbox.c.id, ids)
            }
            rows.update(
                (r.outbox_id, (r, None, _health_event(r))) for r in _select_in(conn, of_events, outbox.c.id, ids)
            )
        return [
            OutboxItem(
                id=r.outbox_id,
                channel=r.channel,
                alert_id=r.alert_id,
                status=r.outbox_status,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at,
                last_error=r.last_error,
                stored=stored,
                sent_at=r.sent_at,
                health=health,
            )
            for r, stored, health in (rows[i] for i in ids if i in rows)
        ]


def _insert_new(conn: Connection, table: sa.Table, *unique: str) -> Any:
    """An INSERT into ``table`` that skips rows whose ``unique`` columns are taken already.

    For rows that several processes may add at once: PostgreSQL lets each one read that the
    row is missing before the other commits, and a plain INSERT would then fail.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=list(unique))


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")


_SQLITE_BUSY_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN; pysqlite's own BEGIN would be DEFERRED.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # The busy timeout turns "database is locked" into a short wait.
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    # WAL lets the daemon and `watcher poll`/`hits` use one file at once. Switching a new file
    # to it does not wait on the busy timeout when another process starting on the same new
    # file holds it, so that is retried here (a file already in WAL mode never is).
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _feed_state(r: Any) -> FeedState:
    return FeedState(
        name=r.name,
        url=r.url,
        fetch_url=r.moved_to or r.url,
        status=r.status,
        etag=r.etag,
        last_modified=r.last_modified,
        last_polled_at=r.last_polled_at,
        last_success_at=r.last_success_at,
        next_poll_at=r.next_poll_at,
        last_error=r.last_error,
        consecutive_failures=r.consecutive_failures,
        entries_seen=r.entries_seen,
        polled_by=r.polled_by,
        health=r.health,
        failing_since=r.failing_since,
        quiet_since=r.quiet_since,
    )


#: Values per ``IN (...)``: old SQLite builds allow 999 parameters in one statement.
_IN_CHUNK = 500


def _select_in(
    conn: Connection, query: sa.Select[Any], column: sa.ColumnElement[Any], values: Sequence[Any]
) -> Iterator[Any]:
    """The rows of ``query`` whose ``column`` is one of ``values``, however many they are."""
    for i in range(0, len(values), _IN_CHUNK):
        yield from conn.execute(query.where(column.in_(values[i : i + _IN_CHUNK])))


def _existing_entries(conn: Connection, feed_id: int, key_hashes: Sequence[str]) -> dict[str, int]:
    query = sa.select(entries.c.key_hash, entries.c.id).where(entries.c.feed_id == feed_id)
    return {r.key_hash: r.id for r in _select_in(conn, query, entries.c.key_hash, key_hashes)}


def _write_entries(
    conn: Connection, feed_id: int, articles: Sequence[Article], now: datetime
) -> tuple[dict[str, int], int]:
    """Insert new and update changed entries in bulk; return {key hash: row id} and the count inserted."""
    rows = {
        _key_hash(a.key): dict(
            entry_id=a.entry_id,
            link=a.link,
            title=a.title,
            lead=a.lead,
            summary=a.summary,
            content=a.content,
            story=a.story,
            published=a.published,
            content_hash=a.content_hash,
            updated_at=now,
            key=a.key,
        )
        for a in articles
    }
    ids = _existing_entries(conn, feed_id, list(rows))
    changed = [(ids[h], row) for h, row in rows.items() if h in ids]
    if changed:
        columns = (
            "entry_id",
            "link",
            "title",
            "lead",
            "summary",
            "content",
            "story",
            "published",
            "content_hash",
            "updated_at",
        )
        # Bind names must differ from column names in an executemany UPDATE.
        conn.execute(
            entries.update()
            .where(entries.c.id == sa.bindparam("b_pk"))
            .values({c: sa.bindparam(f"b_{c}", type_=entries.c[c].type) for c in columns}),
            [{"b_pk": pk, **{f"b_{c}": row[c] for c in columns}} for pk, row in changed],
        )
    new = [{"feed_id": feed_id, "key_hash": h, "first_seen_at": now, **row} for h, row in rows.items() if h not in ids]
    if new:
        inserted = conn.execute(entries.insert().returning(entries.c.key_hash, entries.c.id), new)
        ids.update({r.key_hash: r.id for r in inserted})
    return ids, len(new)


def _waiting_select(due_by: datetime | None = None) -> sa.Select[Any]:
    """The waits (with their entry and feed), due by ``due_by`` if given, oldest due first."""
    query = (
        sa.select(
            article_waits,
            feeds.c.name,
            entries.c.key,
            entries.c.entry_id.label("guid"),
            entries.c.link,
            entries.c.title,
            entries.c.published,
            entries.c.content_hash,
            entries.c.summary,
            entries.c.content,
            entries.c.story,
        )
        .select_from(article_waits)
        .join(entries, entries.c.id == article_waits.c.entry_id)
        .join(feeds, feeds.c.id == entries.c.feed_id)
        .order_by(article_waits.c.due_at, article_waits.c.entry_id)
    )
    return query if due_by is None else query.where(article_waits.c.due_at <= due_by)


def _waiting(r: Any) -> Waiting:
    article = Article(
        key=r.key,
        entry_id=r.guid,
        link=r.link,
        title=r.title,
        summary=r.summary or "",
        content=r.content or "",
        published=r.published,
        content_hash=r.content_hash,
        story=r.story,
    )
    return Waiting(r.entry_id, r.name, article, r.page_url, bool(r.public_only), r.due_at)


def _write_waits(conn: Connection, feed: str, entry_ids: Mapping[str, int], record: PollRecord) -> list[Waiting]:
    """Record the notes of the poll's articles whose page is not fetched, and the articles
    left waiting for theirs (an edited entry waiting again starts afresh)."""
    if record.notes:
        conn.execute(
            entries.update().where(entries.c.id == sa.bindparam("b_id")).values(article_note=sa.bindparam("b_note")),
            [{"b_id": entry_ids[_key_hash(key)], "b_note": note} for key, note in record.notes.items()],
        )
    if not record.waits:
        return []
    ids = [entry_ids[_key_hash(w.article.key)] for w in record.waits]
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i : i + _IN_CHUNK]
        conn.execute(article_waits.delete().where(article_waits.c.entry_id.in_(chunk)))
        conn.execute(entries.update().where(entries.c.id.in_(chunk)).values(article_text=None, article_note=None))
    conn.execute(
        article_waits.insert(),
        [
            dict(
                entry_id=entry,
                page_url=w.page_url,
                public_only=w.public_only,
                due_at=w.due,
                owner=process_owner(),
            )
            for entry, w in zip(ids, record.waits, strict=True)
        ],
    )
    return [
        Waiting(entry, feed, w.article, w.page_url, w.public_only, w.due)
        for entry, w in zip(ids, record.waits, strict=True)
    ]


def _write_hits(
    conn: Connection, feed: str, found: Sequence[tuple[int, Article, Hit]], now: datetime, *, silent: bool
) -> list[NewHit]:
    """Insert the hits no (entry, watch) pair has yet (an edited entry never alerts twice)."""
    if not found:
        return []
    entry_ids = sorted({entry for entry, _, _ in found})
    query = sa.select(hits.c.entry_id, hits.c.watch)
    seen = {(r.entry_id, r.watch) for r in _select_in(conn, query, hits.c.entry_id, entry_ids)}
    fresh = []
    for entry, article, hit in found:
        if (entry, hit.watch) not in seen:
            seen.add((entry, hit.watch))
            fresh.append((entry, article, hit))
    if not fresh:
        return []
    _route_lock(conn, shared=True)
    ids = (
        conn.execute(
            hits.insert().returning(hits.c.id, sort_by_parameter_order=True),
            [
                dict(
                    entry_id=entry,
                    watch=hit.watch,
                    kind=hit.kind,
                    statement=hit.statement,
                    score=hit.score,
                    evidence=_evidence_json(hit),
                    created_at=now,
                    story=article.story,
                    silent=silent,
                )
                for entry, article, hit in fresh
            ],
        )
        .scalars()
        .all()
    )
    return [
        NewHit(id=hit_id, feed=feed, hit=hit, story=article.story, published=article.published)
        for hit_id, (_, article, hit) in zip(ids, fresh, strict=True)
    ]


def _route_lock(conn: Connection, *, shared: bool) -> None:
    """Take the routing lock (PostgreSQL) until commit: shared by saves, alone by a router."""
    if conn.dialect.name == "postgresql":
        kind = "_shared" if shared else ""
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock{kind}(:space, 0)"), {"space": _ROUTE_LOCK})


def _missed_hits(conn: Connection, channel: str, after: int, upto: int, since: datetime) -> list[NewHit]:
    """The hits ``after`` < id <= ``upto`` made at ``since`` or later, not silent, without a row for ``channel``."""
    has_row = sa.exists().where(outbox.c.hit_id == hits.c.id, outbox.c.channel == channel)
    return _new_hits(
        conn, hits.c.id > after, hits.c.id <= upto, hits.c.created_at >= since, hits.c.silent.is_(False), ~has_row
    )


def _silent_hits(conn: Connection, watch: str, since: datetime) -> list[NewHit]:
    """The silent hits of ``watch`` on entries first seen at ``since`` or later that have no alert."""
    has_row = sa.exists().where(outbox.c.hit_id == hits.c.id)
    return _new_hits(conn, hits.c.watch == watch, entries.c.first_seen_at >= since, hits.c.silent.is_(True), ~has_row)


def _new_hits(conn: Connection, *where: sa.ColumnElement[bool]) -> list[NewHit]:
    """The hits meeting ``where`` (on hits and their entries), oldest first, as routing weighs them."""
    query = (
        sa.select(
            hits.c.id,
            feeds.c.name,
            hits.c.watch,
            hits.c.kind,
            hits.c.statement,
            hits.c.score,
            hits.c.evidence,
            hits.c.story,
            entries.c.published,
        )
        .select_from(hits)
        .join(entries, entries.c.id == hits.c.entry_id)
        .join(feeds, feeds.c.id == entries.c.feed_id)
        .where(*where)
        .order_by(hits.c.id)
    )
    return [
        NewHit(
            id=r.id,
            feed=r.name,
            hit=Hit(
                watch=r.watch,
                kind=r.kind,
                statement=bool(r.statement),
                score=r.score,
                evidence=_evidence_from_json(r.evidence),
            ),
            story=r.story,
            published=r.published,
        )
        for r in conn.execute(query)
    ]


class PollWrite:
    """The transaction of one poll's save (``Store.saving_poll``), or of the hits a channel
    missed (``Store.routing``), between its hits and its end."""

    def __init__(self, conn: Connection, new_hits: list[NewHit], now: datetime, *, recorded: int = 0) -> None:
        self._conn = conn
        self._now = now
        #: The hits to route: those the poll added (no (entry, watch) pair had them), or
        #: those the channel missed.
        self.new_hits = new_hits
        #: How many hits this transaction recorded (a replay's; its ``new_hits`` may hold older ones).
        self.recorded = recorded
        #: The entries the poll left waiting for their article page.
        self.waiting: list[Waiting] = []

    def alerts_for(self, stories: Collection[str], since: datetime) -> list[StoryAlert]:
        """The alerts made for any of ``stories`` since ``since``, and those not sent yet.

        On PostgreSQL each story is locked first (until commit), so two feeds saving one story
        at once take turns and the second sees the first's alert; SQLite's writes take turns
        already (BEGIN IMMEDIATE).
        """
        if not stories:
            return []
        if self._conn.dialect.name == "postgresql":
            for story in sorted(stories):  # one order everywhere: no deadlock between two savers
                self._conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:story))"),
                    {"space": _STORY_LOCK, "story": story},
                )
        query = (
            sa.select(
                hits.c.story,
                feeds.c.name,
                hits.c.watch,
                outbox.c.channel,
                hits.c.statement,
                entries.c.published,
                hits.c.created_at,
                outbox.c.status,
            )
            .select_from(outbox)
            .join(hits, hits.c.id == outbox.c.hit_id)
            .join(entries, entries.c.id == hits.c.entry_id)
            .join(feeds, feeds.c.id == entries.c.feed_id)
            .where(hits.c.story.in_(sorted(stories)), sa.or_(hits.c.created_at >= since, outbox.c.status != "sent"))
        )
        return [StoryAlert(*row) for row in self._conn.execute(query)]

    def enqueue(self, alerts: Sequence[Alert]) -> None:
        """Write one outbox row per alert."""
        if alerts:
            self._conn.execute(
                outbox.insert(),
                [
                    dict(
                        hit_id=a.hit.id,
                        channel=a.channel,
                        alert_id=str(uuid.uuid4()),
                        status="due",
                        next_attempt_at=a.due,
                        created_at=self._now,
                    )
                    for a in alerts
                ],
            )


def _stored_hit_select() -> sa.Select[Any]:
    return (
        sa.select(
            hits.c.id.label("hit_id"),
            hits.c.watch,
            hits.c.kind,
            hits.c.statement,
            hits.c.score,
            hits.c.evidence,
            hits.c.created_at,
            entries.c.entry_id,
            entries.c.link,
            entries.c.title,
            entries.c.published,
            entries.c.lead,
            entries.c.article_note,
            entries.c.article_text.is_not(None).label("full_text"),
            feeds.c.name.label("feed"),
        )
        .select_from(hits)
        .join(entries, entries.c.id == hits.c.entry_id)
        .join(feeds, feeds.c.id == entries.c.feed_id)
    )


def _health_event(r: Any) -> HealthEvent:
    return HealthEvent(
        id=r.id,
        feed=r.feed,
        url=redact_url(r.url),
        health=r.health,
        previous=r.previous,
        reason=r.reason,
        since=r.since,
        created=r.created_at,
    )


def _stored_hit(r: Any) -> StoredHit:
    return StoredHit(
        id=r.hit_id,
        feed=r.feed,
        entry_id=r.entry_id,
        link=r.link,
        title=r.title,
        published=r.published,
        created=r.created_at,
        lead=r.lead or "",
        article_note=r.article_note,
        full_text=bool(r.full_text),
        hit=Hit(
            watch=r.watch,
            kind=r.kind,
            statement=bool(r.statement),
            score=r.score,
            evidence=_evidence_from_json(r.evidence),
        ),
    )
