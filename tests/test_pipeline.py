"""The pipeline: failure backoff, and what a poll stores and alerts on real databases."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import wait_for
from watcher.config import ChannelSettings, Config, Speaker
from watcher.pages import Page
from watcher.pipeline import Articles, failure_delay, route_missed, save_poll
from watcher.route import MISSED_WINDOW, STORY_WINDOW
from watcher.store import PageWait, PollRecord, Store
from watcher.types import Article, ArticleMatch, Hit
from watcher.workers import InlineWorkers

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)


def test_failure_backoff_doubles_from_the_interval_up_to_a_day() -> None:
    interval = timedelta(minutes=15)
    delays = [failure_delay(interval, n, None) for n in range(12)]
    assert timedelta(minutes=13) < delays[0] < timedelta(minutes=17)
    assert timedelta(minutes=54) < delays[2] < timedelta(minutes=66)
    assert all(d <= timedelta(days=1, hours=3) for d in delays)
    assert delays[-1] > timedelta(hours=21)


def test_retry_after_is_never_undercut_but_is_capped() -> None:
    assert failure_delay(timedelta(minutes=5), 0, 3600) >= timedelta(hours=1)
    assert failure_delay(timedelta(minutes=5), 0, 10 * 86400) <= timedelta(days=1)


# -- save_poll on real databases: one story in several feeds alerts once ----------------


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.upgrade()
    s.sync_feeds([("wire", "https://news.example/rss"), ("search", "https://search.example/rss")], NOW)
    yield s
    s.close()


DESK = ChannelSettings(name="desk", type="email", to=("a@example.org",))
WEEKLY = ChannelSettings(name="weekly", type="email", to=("a@example.org",), digest=timedelta(days=7))


def copy(key: str, story: str | None = "s1") -> Article:
    return Article(
        key=key,
        entry_id=key,
        link=f"https://news.example/{key}",
        title=f"Title {key}",
        summary="",
        content="body",
        published=NOW,
        content_hash="hash",
        story=story,
    )


def hit(watch: str = "Jen Zhu Scott") -> Hit:
    return Hit(watch=watch, kind="speaker", statement=True, score=100)


def save(
    store: Store, feed: str, article: Article, now: datetime, channels: Sequence[ChannelSettings] = (DESK,)
) -> int:
    record = PollRecord([article], {article.key: [hit()]}, None, None, None, "ok", None, now + timedelta(minutes=15))
    return len(save_poll(store, feed, record, channels, now).new_hits)


def told(store: Store) -> list[tuple[str, str | None]]:
    """(channel, entry) of every alert, sorted."""
    return sorted((i.channel, s.entry_id) for i in store.list_outbox() if (s := i.stored))


def test_a_story_already_told_from_another_feed_is_stored_but_not_alerted_again(store: Store) -> None:
    save(store, "wire", copy("w1"), NOW)
    assert save(store, "search", copy("g1"), NOW + timedelta(hours=5)) == 1, "the hit is recorded"
    assert {(h.feed, h.entry_id) for h in store.list_hits()} == {("wire", "w1"), ("search", "g1")}
    assert told(store) == [("desk", "w1")]


def test_the_earlier_alerts_read_are_those_that_may_still_tell_their_story(store: Store) -> None:
    # A silent first poll made no alert; an alert refused for good reached no one; a sent
    # one tells its story for the window, a digest still waiting past it.
    save(store, "wire", copy("w1"), NOW, channels=())
    save(store, "search", copy("g1"), NOW)
    [refused] = store.list_outbox()
    store.mark_dead([refused.id], "554 rejected")
    save(store, "wire", copy("w2"), NOW)
    store.mark_sent([i.id for i in store.list_outbox("due")], NOW)
    save(store, "wire", copy("w3", story="s2"), NOW, channels=(WEEKLY,))
    later = NOW + STORY_WINDOW + timedelta(hours=1)
    save(store, "search", copy("g2"), later)
    save(store, "search", copy("g3", story="s2"), later, channels=(WEEKLY,))
    assert told(store) == [("desk", "g1"), ("desk", "g2"), ("desk", "w2"), ("weekly", "w3")]


def test_a_retitled_entry_stays_the_story_it_was_told_as(store: Store) -> None:
    save(store, "wire", copy("w1"), NOW)
    retitled = dataclasses.replace(copy("w1", story="s2"), content_hash="edited")
    save_poll(store, "wire", PollRecord([retitled], {}, None, None, None, "ok", None, NOW), (DESK,), NOW)
    save(store, "search", copy("g1"), NOW + timedelta(hours=1))
    assert told(store) == [("desk", "w1")]


def test_two_feeds_saving_one_story_at_once_alert_once(database_url: str) -> None:
    # poll_feeds saves feeds from several threads; on PostgreSQL (READ COMMITTED) each
    # transaction could miss the other's alert without the per-story lock.
    stores = [Store(database_url) for _ in range(2)]
    stores[0].upgrade()
    names = [f"feed{i}" for i in range(8)]
    stores[0].sync_feeds([(n, f"https://{n}.example/rss") for n in names], NOW)
    for round_ in range(5):
        barrier = threading.Barrier(len(names))

        def one(name: str, store: Store, story: str = f"story-{round_}", barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            save(store, name, copy(f"{name}-{story}", story=story), NOW)

        threads = [threading.Thread(target=one, args=(n, stores[i % 2])) for i, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(stores[0].list_outbox()) == 5
    for s in stores:
        s.close()


# -- route_missed: the hits a channel missed while a watcher lacked it --------------------

HOOK = ChannelSettings(name="hook", type="email", to=("b@example.org",))


def test_a_channel_gets_the_hits_it_missed_by_the_rules_of_a_save(store: Store) -> None:
    save(store, "wire", copy("w0", story="s0"), NOW)  # before any watcher had "hook"
    assert route_missed(store, HOOK, NOW) == 0, "a channel new to the database gets no backlog"
    save(store, "wire", copy("w1", story="s1"), NOW)  # by a watcher without "hook"
    save(store, "wire", copy("w2", story="s2"), NOW, channels=(DESK, HOOK))  # by one with it
    save(store, "search", copy("g2", story="s2"), NOW)  # a copy of a story "hook" was told
    first = PollRecord([copy("f1", story="s3")], {"f1": [hit()]}, None, None, None, "ok", None, NOW, silent=True)
    save_poll(store, "wire", first, (DESK,), NOW)  # a silent first poll
    save(store, "wire", copy("old", story="s4"), NOW - MISSED_WINDOW - timedelta(hours=1))
    save(store, "wire", copy("w3", story="s5"), NOW, channels=())  # taken by no channel of its watcher
    assert route_missed(store, HOOK, NOW) == 2
    assert [e for c, e in told(store) if c == "hook"] == ["w1", "w2", "w3"]
    assert route_missed(store, HOOK, NOW + timedelta(minutes=1)) == 0, "a missed hit is routed once"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_routing_waits_for_a_save_still_committing(database_url: str) -> None:
    # Hit ids are handed out before commit, and commits come in any order: a router reading
    # the newest hit while an older one is uncommitted would pass over it for good.
    stores = [Store(database_url) for _ in range(3)]
    stores[0].upgrade()
    stores[0].sync_feeds([("wire", "https://news.example/rss"), ("search", "https://search.example/rss")], NOW)
    route_missed(stores[0], HOOK, NOW)  # "hook" is known from here on
    saving, release = threading.Event(), threading.Event()

    def slow_save() -> None:  # a watcher without "hook" whose save takes a while after its hit
        record = PollRecord([copy("slow", story=None)], {"slow": [hit()]}, None, None, None, "ok", None, NOW)
        with stores[1].saving_poll("wire", record, NOW):
            saving.set()
            release.wait(30)

    saver = threading.Thread(target=slow_save)
    saver.start()
    assert saving.wait(30)
    save(stores[2], "search", copy("quick", story=None), NOW)  # a newer hit, committed first
    router = threading.Thread(target=route_missed, args=(stores[0], HOOK, NOW))
    router.start()

    def router_waits_or_is_done() -> bool:
        if not router.is_alive():
            return True
        with stores[0].engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE NOT granted").scalar())

    deadline = time.monotonic() + 30
    while not router_waits_or_is_done():
        assert time.monotonic() < deadline, "the router neither waited nor finished"
        time.sleep(0.01)
    release.set()
    saver.join()
    router.join()
    route_missed(stores[0], HOOK, NOW)
    assert [e for c, e in told(stores[0]) if c == "hook"] == ["quick", "slow"]
    for s in stores:
        s.close()


# -- Articles: an entry waiting for its page is matched once ----------------------------


class HeldPages:
    """Pages whose every request stays in flight until the test answers it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Future[Page]]] = []

    def get(self, url: str, *, timeout: float, public_only: bool) -> Future[Page]:
        future: Future[Page] = Future()
        self.requests.append((url, future))
        return future

    def close(self) -> None:
        """Nothing to stop."""


HOUSER = Speaker("Trevor Houser")
SALON = (Path(__file__).resolve().parent / "data" / "articles" / "salon.com.emissions.html").read_bytes()


class CountingWorkers(InlineWorkers):
    """Inline workers that count the pages they read."""

    pages_read = 0

    def match_article(
        self, article: Article, *, page: bytes | None = None, url: str = "", content_type: str | None = None
    ) -> ArticleMatch:
        matched = super().match_article(article, page=page, url=url, content_type=content_type)
        self.pages_read += page is not None
        return matched


def waiting_entry(
    store: Store, clock: list[datetime], pages: HeldPages, workers: InlineWorkers
) -> tuple[Articles, int]:
    """A headline stored waiting for its page (due in 2 minutes), whose page is requested."""
    config = Config(path="feeds.yaml", speakers=(HOUSER,), channels=(DESK,))
    articles = Articles(config, store=store, pages=pages, workers=workers, now=lambda: clock[0])
    headline = dataclasses.replace(copy("gas"), title="Trevor Houser on gas", content="")
    wait = PageWait(headline, "https://news.example/gas", public_only=True, due=NOW + timedelta(minutes=2))
    record = PollRecord([headline], {}, None, None, None, "ok", None, NOW + timedelta(minutes=15), waits=[wait])
    saved = save_poll(store, "wire", record, (DESK,), NOW)
    assert saved.new_hits == [] and len(saved.waiting) == 1, "not matched before its page comes"
    articles.fetch(saved.waiting)
    assert [url for url, _ in pages.requests] == ["https://news.example/gas"]
    return articles, saved.waiting[0].entry


def test_a_page_in_time_is_what_the_entry_is_matched_on(store: Store) -> None:
    pages, clock = HeldPages(), [NOW]
    articles, entry = waiting_entry(store, clock, pages, InlineWorkers((HOUSER,), ()))
    pages.requests[0][1].set_result(Page("https://news.example/gas", SALON, "text/html"))
    [hit] = articles.wait_for([entry])
    assert hit.hit.statement and "said Trevor Houser" in hit.hit.evidence_text
    assert articles.finish_overdue() == [] and store.waiting() == []
    [stored] = store.list_hits()
    assert stored.full_text and stored.article_note is None


def test_a_wait_that_ends_before_the_page_matches_the_headline_once(store: Store) -> None:
    pages, clock, workers = HeldPages(), [NOW], CountingWorkers((HOUSER,), ())
    articles, _ = waiting_entry(store, clock, pages, workers)
    assert articles.finish_overdue() == [], "not before its time"
    clock[0] = NOW + timedelta(minutes=2)
    [hit] = articles.finish_overdue()
    assert (hit.hit.watch, hit.hit.statement) == ("Trevor Houser", False)
    # The page comes late: the entry was matched already, and nothing is recorded again.
    pages.requests[0][1].set_result(Page("https://news.example/gas", SALON, "text/html"))
    wait_for(lambda: workers.pages_read == 1, "the late page read")
    [stored] = store.list_hits()
    assert (stored.full_text, stored.article_note) == (False, "its page did not come within 2m")
    assert store.waiting() == []
