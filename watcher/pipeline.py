"""One poll of one feed, top-down: fetch → parse → dedup/store → match → record hits + outbox.

An entry that carries only a headline or a teaser (``article.wants_page``) takes a detour
between store and match: it is stored waiting for its article page, the page is fetched
politely (``pages``) and read (``article.main_text``), and only then is the entry matched,
once, on the fullest text there is (``Articles``: the page's, or the feed's when the page
fails or takes longer than the wait), its hits recorded and routed as a poll's are.

Here too: ``check_health`` (a feed's change of health, alerted through the same outbox)
and ``replay`` (a watch run over the stored articles, its hits recorded as a poll's).
Delivery of what the outbox holds is ``deliver.flush_outbox``; scheduling all of it is
``service``. A failing feed is a result, never an exception: ``poll_feed`` returns a
``PollResult`` with the reason, records it on the feed, and the other feeds go on.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, NamedTuple, Protocol

from watcher import health, route
from watcher.article import page_address
from watcher.backoff import doubling_delay
from watcher.config import ChannelSettings, Config, FeedSettings, FullTextMode, Speaker, Theme, format_duration
from watcher.errors import (
    Abandoned,
    ArticleError,
    FeedError,
    FetchError,
    StorageError,
    WatcherError,
    plural,
    redact_url,
)
from watcher.logs import event
from watcher.pages import Page
from watcher.render import iso_time
from watcher.store import PageWait, PollRecord, Store, Unchanged
from watcher.types import (
    Alert,
    Article,
    ArticleMatch,
    FeedState,
    Fetched,
    HealthChange,
    Hit,
    NewHit,
    Processed,
    Waiting,
)

log = logging.getLogger(__name__)

#: Fetches in flight at once: fetching is mostly waiting, so a thousand feeds 50 ms away take
#: about 3 s, and the bodies of feeds that changed reach the worker processes early.
POLL_THREADS = 16
#: A feed that keeps failing is retried at most this far apart.
MAX_BACKOFF = timedelta(days=1)


class Fetcher(Protocol):
    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None, timeout: float
    ) -> Fetched: ...


class Workers(Protocol):
    """Runs the CPU-bound stages, parsing and matching (see ``watcher.workers``)."""

    def process(
        self, body: bytes, *, url: str, headers: Mapping[str, str] | None = None, full_text: FullTextMode = "never"
    ) -> Processed: ...

    def match_article(
        self, article: Article, *, page: bytes | None = None, url: str = "", content_type: str | None = None
    ) -> ArticleMatch:
        """Match ``article`` on the main text of its ``page``; on its own text without one."""

    def watch(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        """Match with these watches from now on."""

    def start(self) -> None:
        """Get ready now rather than at the first body (the daemon)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class PollResult:
    """What one poll of one feed did."""

    feed: str
    url: str
    #: New or changed entries stored.
    new: int = 0
    #: New hits recorded (each alerts through the channels that route it).
    hits: int = 0
    not_modified: bool = False
    #: One-line reason when the poll failed; None on success.
    error: str | None = None
    #: The class of the failure (``FeedError.kind``, or "abandoned" when watcher stopped).
    error_kind: str | None = None
    #: (watch, kind) of each new hit, kind being "statement", "mention" or "theme".
    found: tuple[tuple[str, str], ...] = ()
    #: Seconds spent per stage: "fetch", "parse" (parsing and matching), "dedup", "store".
    timings: dict[str, float] = field(default_factory=dict)
    #: Not polled: the feed is backing off after failures (or was told to wait by
    #: Retry-After) until then.
    waiting_until: datetime | None = None
    #: Not polled: the feed answered 410 Gone and stays off until ``watcher feeds --retry``.
    disabled: bool = False
    #: The entries stored waiting for their article page (row ids): matched once it is in.
    waiting: tuple[int, ...] = ()

    @property
    def status(self) -> PollStatus:
        """One word for what happened: what ``watcher poll`` prints and its exit status counts."""
        if self.disabled:
            return "disabled"
        if self.waiting_until is not None:
            return "backing off"
        if self.error is not None:
            return "failed"
        return "not modified" if self.not_modified else "ok"

    @property
    def polled(self) -> bool:
        """True when the feed was fetched and what it brought was recorded."""
        return self.status in ("ok", "not modified")


PollStatus = Literal["ok", "not modified", "failed", "backing off", "disabled"]


def waiting_until(state: FeedState, now: datetime) -> datetime | None:
    """Until when a feed that has been failing waits before it is fetched again (backoff or
    the server's Retry-After), or None when it may be fetched now."""
    if state.consecutive_failures and state.next_poll_at and state.next_poll_at > now:
        return state.next_poll_at
    return None


def poll_feed(
    feed: FeedSettings,
    *,
    store: Store,
    fetcher: Fetcher,
    workers: Workers,
    channels: Sequence[ChannelSettings],
    now: Callable[[], datetime],
    state: FeedState | None = None,
    unchanged: list[Unchanged] | None = None,
    force: bool = False,
    articles: Articles | None = None,
) -> PollResult:
    """Poll one feed and record everything it brings. Never raises for a feed's own faults.

    With ``articles``, the new entries that carry only a headline or a teaser (per the feed's
    ``full_text``) are stored waiting for their article page, and matched when ``articles``
    has it (``PollResult.waiting``); without, every entry is matched on the feed's text.

    A feed backing off after failures is not fetched before its time (see ``waiting_until``)
    unless ``force``; a disabled (410 Gone) feed never is. ``state`` is the feed's stored
    state when the caller has already read it. With ``unchanged``, a not-modified poll is
    appended there for the caller to record in one batch instead of being recorded at once.
    """
    state = state or store.feed_state(feed.name)
    url = state.fetch_url
    if state.status == "disabled":
        return PollResult(
            feed.name, url, error=f"disabled: {state.last_error}; fix the URL in the config", disabled=True
        )
    wait = None if force else waiting_until(state, now())
    if wait is not None:
        return PollResult(feed.name, url, error=state.last_error, waiting_until=wait)
    clock = _StageClock()
    try:
        with clock("fetch"):
            fetched = fetcher.fetch(
                url, etag=state.etag, last_modified=state.last_modified, timeout=feed.timeout.total_seconds()
            )
        started = now()
        if fetched.moved_to:
            moved = redact_url(fetched.moved_to)
            log.warning(
                "feed %s moved permanently to %s; update feeds.yaml",
                feed.name,
                moved,
                extra=event("feed.moved", feed.name, to=moved),
            )
        if fetched.not_modified:
            polled = Unchanged(
                feed.name, started, _next_poll(feed, started), fetched.etag, fetched.last_modified, fetched.moved_to
            )
            if unchanged is None:
                store.record_not_modified([polled])
            else:
                unchanged.append(polled)
            return PollResult(feed.name, url, not_modified=True, timings=clock.seconds)
        assert fetched.body is not None
        with clock("parse"):
            processed = workers.process(
                fetched.body,
                url=fetched.moved_to or url,
                headers=fetched.headers,
                full_text=feed.full_text if articles is not None else "never",
            )
        with clock("dedup"):
            changed = store.changed_articles(feed.name, processed.articles)
            # A feed that makes up new ids for its entries: an entry back under a new id is
            # not news; it is dropped, and the feed is flagged (story dedup catches the copies
            # whose text changed too, see route.untold).
            rekeyed = store.rekeyed(feed.name, changed) if changed else set()
            changed = [a for a in changed if a.key not in rekeyed]
        alert = feed.alert_on_first_poll or not state.first_poll
        # The entries that carry only a headline or a teaser wait for their article page and
        # are matched once it is in (``Articles``); a silent first poll fetches no pages, as
        # its backlog alerts nothing anyway.
        pages = PagePlan([], {}, {})
        if articles is not None:
            due = started + articles.wait
            pages = plan_pages(store, workers, feed, processed, changed, due=due, internal=fetched.internal)
        waits = pages.waits if alert else []
        held = {w.article.key for w in waits}
        hits = {a.key: processed.hits[a.key] for a in changed if a.key in processed.hits and a.key not in held}
        record = PollRecord(
            articles=changed,
            hits=hits | pages.rematched,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            moved_to=fetched.moved_to,
            status="ok" if processed.articles else "empty",
            problem="; ".join(filter(None, (_churn(len(rekeyed)), processed.problem, _unfetched(pages.notes)))) or None,
            next_poll_at=_next_poll(feed, started),
            silent=not alert,
            listed=[a.key for a in processed.articles],
            waits=waits,
            notes=pages.notes,
        )
        with clock("store"):
            new_hits, waiting = save_poll(store, feed.name, record, channels, started)
        if articles is not None and waiting:
            articles.fetch(waiting)
    except Abandoned:
        # watcher is stopping: the feed did nothing wrong, and is polled afresh next time.
        return PollResult(
            feed.name, url, error="abandoned: watcher is stopping", error_kind="abandoned", timings=clock.seconds
        )
    except FeedError as e:
        _record_failure(store, feed, state, e, now())
        return PollResult(feed.name, url, error=e.reason, error_kind=e.kind, timings=clock.seconds)
    except StorageError as e:
        # The poll's transaction rolled back: its entries are seen again next time, and the
        # feed shows why meanwhile (a database that refuses one feed's text must not be
        # invisible; when the whole database is down, recording this fails too, and is logged).
        reason = _one_line(f"not stored: {e}")
        _record_failure(store, feed, state, FeedError(redact_url(url), reason, kind="storage"), now())
        return PollResult(feed.name, url, error=reason, error_kind="storage", timings=clock.seconds)
    except Exception as e:
        # A bug, not the feed (STYLE rule 4): this feed fails with its traceback logged, the
        # other feeds of the poll go on, and its entries are seen again next time.
        log.critical(
            "feed %s (%s): unexpected error",
            feed.name,
            redact_url(url),
            exc_info=True,
            extra=event("feed.internal_error", feed.name),
        )
        reason = _one_line(f"internal error: {type(e).__name__}: {e}")
        _record_failure(store, feed, state, FeedError(redact_url(url), reason), now())
        return PollResult(feed.name, url, error=reason, error_kind="internal", timings=clock.seconds)
    if new_hits and not alert:
        log.info(
            "feed %s: first poll, %s stored without alerting",
            feed.name,
            plural(len(new_hits), "hit"),
            extra=event("feed.first_poll", feed.name, hits=len(new_hits)),
        )
    found = tuple((h.hit.watch, hit_kind(h.hit)) for h in new_hits)
    return PollResult(
        feed.name,
        url,
        new=len(changed),
        hits=len(new_hits),
        found=found,
        timings=clock.seconds,
        waiting=tuple(w.entry for w in waiting),
    )


class PagePlan(NamedTuple):
    """What a poll does about its changed entries' article pages (``plan_pages``)."""

    #: The entries to match once their page is in.
    waits: list[PageWait]
    #: Per entry key, why its page is not fetched: matched on the feed's text.
    notes: dict[str, str]
    #: Hits of edited entries matched again on the article text stored with them.
    rematched: dict[str, list[Hit]]


def plan_pages(
    store: Store,
    workers: Workers,
    feed: FeedSettings,
    processed: Processed,
    changed: Sequence[Article],
    *,
    due: datetime,
    internal: bool,
) -> PagePlan:
    """Which of ``changed`` wait for their article page: the new ones that want it, and the
    edited ones whose link changed. An edited entry whose link did not is matched again on
    the article text stored with it, not fetched again."""
    wanted = [a for a in changed if a.key in processed.pages]
    stored = store.article_pages(feed.name, wanted) if wanted else {}
    plan = PagePlan([], {}, {})
    for a in wanted:
        link, text = stored.get(a.key, (None, None))
        if a.key in stored and link == a.link:
            if text:
                plan.rematched[a.key] = workers.match_article(dataclasses.replace(a, summary="", content=text)).hits
            continue
        assert a.link is not None  # wants_page: only entries with a link
        try:
            plan.waits.append(PageWait(a, page_address(a.link), public_only=not internal, due=due))
        except ArticleError as e:
            plan.notes[a.key] = e.reason
    return plan


def _unfetched(notes: Mapping[str, str]) -> str | None:
    """What `watcher feeds` says of a feed whose entries' pages cannot be fetched."""
    if not notes:
        return None
    reasons = collections.Counter(notes.values())
    return "; ".join(
        f"{plural(n, 'entry', 'entries')} matched on the feed's text, their page not fetched: {reason}"
        for reason, n in reasons.most_common()
    )


class Pages(Protocol):
    def get(self, url: str, *, timeout: float, public_only: bool) -> Future[Page]: ...

    def close(self) -> None: ...


class Articles:
    """The entries waiting for their article page: each is matched once, on the page's text
    when the page is in, or on the feed's own text when it fails or its wait is over
    (``finish_overdue``), whichever is first; its hits are then stored and routed as a poll's.

    The waits are rows in the database (``article_waits``), ended by the transaction that
    matches them: nothing alerts twice, and a crash loses none (``resume`` takes them up).
    """

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        pages: Pages,
        workers: Workers,
        now: Callable[[], datetime],
        on_hits: Callable[[list[NewHit]], None] = lambda hits: None,
        threads: int = 4,
    ) -> None:
        self.store = store
        self.pages = pages
        self.workers = workers
        self.now = now
        #: Called with the hits stored once an entry is matched (the daemon counts them and
        #: wakes its senders).
        self.on_hits = on_hits
        self.configure(config)
        self._lock = threading.Lock()
        #: Entry row id -> done when its wait has ended here (fetched in this process).
        self._pending: dict[int, Future[list[NewHit]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="article")

    def configure(self, config: Config) -> None:
        """Use this config's channels, feed timeouts and wait from now on (a reload)."""
        self.channels = config.channels
        self.wait = config.articles.wait
        self._timeouts = {f.name: f.timeout.total_seconds() for f in config.feeds}
        self._default_timeout = config.defaults.timeout.total_seconds()

    def fetch(self, waiting: Sequence[Waiting]) -> None:
        """Fetch the pages of ``waiting``; each entry is matched when its page is in."""
        for wait in waiting:
            with self._lock:
                if wait.entry in self._pending:
                    continue
                self._pending[wait.entry] = Future()
            timeout = self._timeouts.get(wait.feed, self._default_timeout)
            page = self.pages.get(wait.page_url, timeout=timeout, public_only=wait.public_only)
            page.add_done_callback(functools.partial(self._page_done, wait))

    def resume(self) -> list[int]:
        """Take up the waits a stopped watcher left: those whose time is over are matched
        now, the others' pages fetched; return the latter's entries. (Those of a watcher
        still running, on the same database, stay its own.)"""
        self.finish_overdue()
        left = self.store.adopt_waits()
        self.fetch(left)
        return [w.entry for w in left]

    def finish_overdue(self) -> list[NewHit]:
        """Match on the feed's text each entry whose wait is over; return the hits stored."""
        note = f"its page did not come within {format_duration(self.wait)}"
        new_hits = []
        for wait in self.store.waiting(due_by=self.now()):
            new_hits += self._finish(wait, self.workers.match_article(wait.article), note)
        return new_hits

    def wait_for(self, entries: Sequence[int]) -> list[NewHit]:
        """Wait until each of ``entries`` has been matched (at most until its wait is over),
        and return the hits stored: `watcher poll` waits so, and has the full-text hits."""
        with self._lock:
            futures = [self._pending[e] for e in entries if e in self._pending]
        waiting = [w for w in self.store.waiting() if w.entry in set(entries)]
        if waiting:
            last = max(w.due for w in waiting)
            wait_all(futures, timeout=max((last - self.now()).total_seconds(), 0) + 0.05)
        new_hits = [h for f in futures if f.done() and f.exception() is None for h in f.result()]
        return new_hits + self.finish_overdue()

    def close(self) -> None:
        """Stop; a wait not ended stays in the database for the next start."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _page_done(self, wait: Waiting, page: Future[Page]) -> None:
        # Off the page fetcher's thread: reading and matching the page is another stage's work.
        with contextlib.suppress(RuntimeError):  # closed: stopping; the wait stays for the next start
            self._pool.submit(self._page_in, wait, page)

    def _page_in(self, wait: Waiting, page: Future[Page]) -> None:
        new_hits: list[NewHit] = []
        try:
            try:
                got = page.result()
            except ArticleError as e:
                new_hits = self._finish(wait, self.workers.match_article(wait.article), e.reason)
            else:
                try:
                    matched = self.workers.match_article(
                        wait.article, page=got.body, url=got.url, content_type=got.content_type
                    )
                except ArticleError as e:  # the page's worker died on it, or ran out of time
                    matched = ArticleMatch(wait.article, self.workers.match_article(wait.article).hits, e.reason)
                new_hits = self._finish(wait, matched, matched.note)
        except Abandoned:
            pass  # watcher is stopping: the wait stays, for the next start
        except WatcherError as e:
            # The database, most likely: the wait stays, and is matched when its time is over.
            log.error("article %s of feed %s: %s", redact_url(wait.page_url), wait.feed, e)
        except Exception:
            log.critical("article %s of feed %s: unexpected error", redact_url(wait.page_url), wait.feed, exc_info=True)
        finally:
            with self._lock:
                done = self._pending.pop(wait.entry, None)
            if done is not None:
                done.set_result(new_hits)

    def _finish(self, wait: Waiting, matched: ArticleMatch, note: str | None) -> list[NewHit]:
        """Store ``matched``'s hits and route them, ending ``wait``; nothing if it had ended."""
        now = self.now()
        with self.store.finishing_article(wait, matched.article, matched.hits, note, now) as tx:
            if tx is None:
                return []
            alerts = route.route(tx.new_hits, self.channels, now)
            earlier = tx.alerts_for(route.stories(alerts), since=route.told_since(now))
            tx.enqueue(route.untold(alerts, earlier, now))
        if note is not None:
            log.info(
                "feed %s: %s matched on the feed's text: %s",
                wait.feed,
                redact_url(wait.page_url),
                note,
                extra=event("article.unfetched", wait.feed, reason=note),
            )
        if tx.new_hits:
            self.on_hits(tx.new_hits)
        return tx.new_hits


def poll_feeds(
    feeds: Sequence[FeedSettings],
    *,
    store: Store,
    fetcher: Fetcher,
    workers: Workers,
    channels: Sequence[ChannelSettings],
    now: Callable[[], datetime],
    threads: int = POLL_THREADS,
    force: bool = False,
    articles: Articles | None = None,
) -> list[PollResult]:
    """Poll several feeds concurrently; one slow feed holds only its own thread."""
    if not feeds:
        return []
    states = {s.name: s for s in store.feed_states([f.name for f in feeds])}
    unchanged: list[Unchanged] = []

    def one(feed: FeedSettings) -> PollResult:
        try:
            return poll_feed(
                feed,
                store=store,
                fetcher=fetcher,
                workers=workers,
                channels=channels,
                now=now,
                state=states[feed.name],
                unchanged=unchanged,
                force=force,
                articles=articles,
            )
        except Exception as e:
            # poll_feed turns a feed's own faults into results; what escapes it is a bug, and
            # it must not cost the other feeds their poll nor the delivery that follows.
            log.critical(
                "feed %s: unexpected error", feed.name, exc_info=True, extra=event("feed.internal_error", feed.name)
            )
            reason = _one_line(f"internal error: {type(e).__name__}: {e}")
            return PollResult(feed.name, feed.url, error=reason, error_kind="internal")

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(feeds))), thread_name_prefix="poll") as pool:
        results = list(pool.map(one, feeds))
    try:
        store.record_not_modified(unchanged)
    except StorageError as e:
        # Only bookkeeping is lost (when they were last polled); nothing new was in them.
        log.error("could not record %s: %s", plural(len(unchanged), "unchanged feed"), e)
    return results


class Saved(NamedTuple):
    new_hits: list[NewHit]
    #: The entries left waiting for their article page.
    waiting: list[Waiting]


def save_poll(store: Store, feed: str, record: PollRecord, channels: Sequence[ChannelSettings], now: datetime) -> Saved:
    """Store what a poll found, the alerts its new hits make through ``channels`` (none on a
    silent first poll) and the feed's state, in one transaction; return the new hits and the
    entries left waiting for their page.

    The alerts are decided between the transaction's reads and writes, so that two feeds
    saving one story at once take turns and the second sees the first's alert.
    """
    with store.saving_poll(feed, record, now) as tx:
        alerts = route.route(tx.new_hits, () if record.silent else channels, now)
        earlier = tx.alerts_for(route.stories(alerts), since=route.told_since(now))
        tx.enqueue(route.untold(alerts, earlier, now))
    return Saved(tx.new_hits, tx.waiting)


def hit_kind(hit: Hit) -> str:
    """A hit's kind as operators count them: a speaker's "statement" or "mention", or "theme"."""
    if hit.kind == "theme":
        return "theme"
    return "statement" if hit.statement else "mention"


def route_missed(store: Store, channel: ChannelSettings, now: datetime) -> int:
    """Enqueue the alerts ``channel`` missed; return how many.

    A hit goes to the channels of the watcher that stores it. A channel that watcher did
    not have (another watcher's on the same database, or one a reload took out) gets the
    hits it missed from the next watcher that has it, made within ``route.MISSED_WINDOW``,
    by the same rules and story dedup as at the save.
    """
    with store.routing(channel.name, route.missed_since(now), now) as tx:
        if tx is None:
            return 0
        alerts = route.route(tx.new_hits, [channel], now)
        earlier = tx.alerts_for(route.stories(alerts), since=route.told_since(now))
        untold = route.untold(alerts, earlier, now)
        tx.enqueue(untold)
    return len(untold)


def check_health(
    store: Store, feeds: Sequence[FeedSettings], channels: Sequence[ChannelSettings], now: datetime
) -> list[HealthChange]:
    """Alert each change of the feeds' health to the channels with ``health: true``; return
    the changes this call stored (one that another process stored first is not).

    Run by the daemon every minute and by `watcher poll` after its polls.
    """
    takers = health.health_channels(channels)
    stored = []
    for change in health.changes(store.feed_states([f.name for f in feeds]), feeds, now):
        if store.record_health(change, takers, now):
            stored.append(change)
            log.log(
                logging.INFO if change.health == "ok" else logging.WARNING,
                "feed %s: %s",
                change.feed,
                change.reason,
                extra=event(
                    "feed.recovered" if change.health == "ok" else f"feed.{change.health}",
                    change.feed,
                    health=change.health,
                    previous=change.previous,
                    alerts=len(takers),
                ),
            )
    return stored


@dataclass(frozen=True)
class ReplayResult:
    """What one replay of a watch over the stored articles did."""

    #: Articles matched against.
    articles: int
    #: Every hit found: (feed, article, hit), recorded before or not.
    found: tuple[tuple[str, Article, Hit], ...]
    #: Hits this replay recorded (no (entry, watch) pair had them).
    recorded: int
    #: Alerts it enqueued (only with ``alert``).
    alerts: int


#: Stored articles read and matched at a time.
REPLAY_BATCH = 500


def replay(
    store: Store,
    speakers: Sequence[Speaker],
    themes: Sequence[Theme],
    watch: str,
    *,
    since: datetime,
    channels: Sequence[ChannelSettings],
    now: datetime,
    alert: bool,
) -> ReplayResult:
    """Run ``watch`` (a speaker or theme among ``speakers`` and ``themes``) over the
    articles stored since ``since``, and record its hits as a poll does.

    Without ``alert`` the hits are recorded silent: nothing is sent, now or later, so a new
    theme never floods an inbox. With ``alert`` they alert through ``channels`` by the same
    rules and story dedup as a poll's (see ``save_poll``), and so do the hits a replay
    without it recorded; each once, since an (entry, watch) pair is recorded once.
    """
    from watcher.match import Matcher  # the matcher's import is heavy; only a replay needs it here

    matcher = Matcher([s for s in speakers if s.name == watch], [t for t in themes if t.name == watch])
    found: list[tuple[int, str, Article, Hit]] = []
    read, after = 0, 0
    while batch := store.articles_since(since, after=after, limit=REPLAY_BATCH):
        read += len(batch)
        after = batch[-1][0]
        found += [(row, feed, article, hit) for row, feed, article in batch for hit in matcher.match(article)]
    with store.replaying(watch, found, since, now, alert=alert) as tx:
        alerts: list[Alert] = []
        if alert:
            routed = route.route(tx.new_hits, channels, now)
            earlier = tx.alerts_for(route.stories(routed), since=route.told_since(now))
            alerts = route.untold(routed, earlier, now)
            tx.enqueue(alerts)
    return ReplayResult(read, tuple((feed, a, h) for _, feed, a, h in found), tx.recorded, len(alerts))


def failure_delay(interval: timedelta, failures: int, retry_after: float | None) -> timedelta:
    """How long to wait after the ``failures``-th failure in a row.

    Doubles from the feed's interval up to a day, with ±10% jitter so that feeds failing
    together (an outage) do not retry together; never sooner than the server's Retry-After.
    """
    delay = doubling_delay(interval, failures, MAX_BACKOFF, jitter=random.random(), spread=0.1)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=min(retry_after, MAX_BACKOFF.total_seconds())))
    return delay


class _StageClock:
    """Accumulates wall time per pipeline stage, for `watcher poll --json` and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _next_poll(feed: FeedSettings, now: datetime) -> datetime:
    return now + feed.interval


def _churn(rekeyed: int) -> str | None:
    """What `watcher feeds` says of a feed whose entries came back under new ids."""
    if not rekeyed:
        return None
    return f"entry ids change between polls: {plural(rekeyed, 'entry', 'entries')} came back under new ids (not alerted again)"


def _one_line(text: str, limit: int = 200) -> str:
    """A failure reason fit for `watcher feeds`: the first line, whitespace folded, cut to ``limit``.

    A database error's text goes on with the statement and its parameters (a whole feed).
    """
    lines = text.strip().splitlines()
    return " ".join(lines[0].split())[:limit] if lines else ""


def _record_failure(store: Store, feed: FeedSettings, state: FeedState, error: FeedError, now: datetime) -> None:
    retry_after = error.retry_after if isinstance(error, FetchError) else None
    gone = isinstance(error, FetchError) and error.gone
    next_at = now + failure_delay(feed.interval, state.consecutive_failures, retry_after)
    log.warning(
        "feed %s: %s",
        feed.name,
        error,
        extra=event(
            "feed.failed",
            feed.name,
            url=error.url,
            reason=error.reason,
            kind=error.kind,
            failures=state.consecutive_failures + 1,
            next_poll=iso_time(next_at),
        ),
    )
    try:
        store.record_failure(feed.name, error.reason, now, next_at, disable=gone)
    except StorageError as e:
        log.error("feed %s: could not record the failure: %s", feed.name, e)
