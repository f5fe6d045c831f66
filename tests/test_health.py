"""Source health: a feed failing, gone (410) or silent alerts once, and once more when it
recovers, through the outbox to the channels with ``health: true``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import Clock, json_lines, run_watcher
from tests.httpserver import LoopbackServer
from watcher import health
from watcher.cli import cli
from watcher.config import ChannelSettings, FeedSettings, parse_config
from watcher.mailsink import MailSink
from watcher.pipeline import check_health
from watcher.service import Daemon, make_watcher
from watcher.store import Store
from watcher.types import FeedState, HealthChange
from watcher.workers import InlineWorkers

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "watcher" / "demo_feeds" / "forum-wire.xml"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FEED = FeedSettings("https://news.example/rss", "wire", timedelta(minutes=15), timedelta(seconds=20), False)


def state(**kw: object) -> FeedState:
    values: dict[str, object] = dict(
        name="wire",
        url=FEED.url,
        fetch_url=FEED.url,
        status="ok",
        etag=None,
        last_modified=None,
        last_polled_at=T0,
        last_success_at=T0,
        next_poll_at=T0,
        last_error=None,
        consecutive_failures=0,
        entries_seen=3,
        quiet_since=T0,
    )
    return FeedState(**(values | kw))  # type: ignore[arg-type]


HOUR = timedelta(hours=1)
SILENT = FeedSettings(FEED.url, "wire", FEED.interval, FEED.timeout, False, expect_every=timedelta(days=2))


@pytest.mark.parametrize(
    ("feed", "seen", "after", "expected"),
    [
        (FEED, state(consecutive_failures=5, failing_since=T0, status="failed"), 23 * HOUR, "ok"),
        (FEED, state(consecutive_failures=5, failing_since=T0, status="failed"), 24 * HOUR, "failing"),
        # Failing for less than the threshold changes nothing yet, whatever was alerted before.
        (FEED, state(consecutive_failures=1, failing_since=T0, status="failed", health="silent"), HOUR, "silent"),
        (FEED, state(consecutive_failures=1, status="disabled", health="failing"), HOUR, "gone"),
        (FEED, state(quiet_since=T0 - 30 * 24 * HOUR), HOUR, "ok"),  # expect_every is off by default
        (SILENT, state(), 47 * HOUR, "ok"),
        (SILENT, state(), 49 * HOUR, "silent"),
        (SILENT, state(health="silent"), 0 * HOUR, "ok"),  # a new entry: recovered
        (FEED, state(health="failing"), HOUR, "ok"),
        # Retried after a 410 (`watcher feeds --retry`): gone until a poll works.
        (FEED, state(health="gone", status="new", failing_since=T0), HOUR, "gone"),
    ],
)
def test_health_is_judged_on_the_thresholds(
    feed: FeedSettings, seen: FeedState, after: timedelta, expected: str
) -> None:
    assert health.assess(seen, feed, T0 + after) == expected


def test_a_change_alerts_once_even_when_two_watchers_judge_it_at_once(database_url: str) -> None:
    """Two daemons on one database: both see the feed failing; one alert goes out."""
    first, second = Store(database_url), Store(database_url)
    first.upgrade()
    first.sync_feeds([("wire", FEED.url)], T0)
    first.record_failure("wire", "HTTP 500", T0, T0 + HOUR)
    channels = [ChannelSettings("hook", "webhook", url="https://hooks.example/x", secret="s", health=True)]
    later = T0 + 25 * HOUR
    seen = [s.feed_states(["wire"]) for s in (first, second)]
    changes = [health.changes(states, [FEED], later) for states in seen]
    assert changes[0] == changes[1] == [HealthChange("wire", "ok", "failing", changes[0][0].reason, T0)]
    assert [s.record_health(c[0], ["hook"], later) for s, c in zip((first, second), changes, strict=True)] == [
        True,
        False,
    ]
    assert check_health(second, [FEED], channels, later + HOUR) == []
    [alert] = first.list_outbox()
    assert alert.health is not None and alert.health.event == "feed.failing" and alert.watch == "feed.failing"
    assert "HTTP 500" in alert.title
    for store in (first, second):
        store.close()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as s:
        yield s


def test_failing_gone_and_silent_feeds_alert_once_and_recover_once(tmp_path: Path, server: LoopbackServer) -> None:
    server.respond("/flaky.xml", b"<html>oops</html>", status=500)
    server.respond("/dead.xml", b"gone", status=410)
    server.respond("/quiet.xml", SAMPLE.read_bytes(), headers={"Content-Type": "application/rss+xml"})
    server.respond("/health", status=204)
    server.respond("/hits", status=204)
    with MailSink() as sink:
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path}/w.db\n"
            "defaults: {failing_after: 1s}\n"
            "feeds:\n"
            f"  - {{name: flaky, url: '{server.url('/flaky.xml')}'}}\n"
            f"  - {{name: dead, url: '{server.url('/dead.xml')}'}}\n"
            f"  - {{name: quiet, url: '{server.url('/quiet.xml')}', expect_every: 1s}}\n"
            "speakers: [{name: Jen Zhu Scott}]\n"
            f"smtp: {{host: 127.0.0.1, port: {sink.port}, from: watcher@example.org}}\n"
            "channels:\n"
            "  - {name: desk, type: email, to: [ops@example.org], digest: daily, health: true}\n"
            f"  - {{name: ops-hook, type: webhook, url: '{server.url('/health')}', secret: s, health: true}}\n"
            f"  - {{name: hits-hook, type: webhook, url: '{server.url('/hits')}', secret: s}}\n",
            encoding="utf-8",
        )

        def told() -> list[tuple[str, str]]:
            return sorted(
                (p["type"], p["feed"]["name"])
                for p in map(json.loads, (r.body for r in server.requests_for("/health")))
            )

        # Polls from cron, every one judging health afterwards, until a second has passed for
        # the thresholds; then more, which must alert nothing new.
        polls = 0
        while len(told()) < 3:
            assert polls < 15, told()
            run_watcher(config, "poll", "--force", ok=False)
            polls += 1
        for _ in range(3):
            run_watcher(config, "poll", "--force", ok=False)
        assert told() == [
            ("watcher.feed.failing.v1", "flaky"),
            ("watcher.feed.gone.v1", "dead"),
            ("watcher.feed.silent.v1", "quiet"),
        ]
        assert polls + 3 >= 4 and len(server.requests_for("/dead.xml")) == 1  # 410: never fetched again
        # Health alerts go at once, even on a digest channel, one email each.
        subjects = sorted(m.message["Subject"] for m in sink.messages)
        assert subjects == [
            "[watcher] feed failing: flaky",
            "[watcher] feed gone: dead",
            "[watcher] feed silent: quiet",
        ]
        assert server.requests_for("/hits") == []

        feeds = {f["feed"]: f for f in json_lines(run_watcher(config, "feeds", "--json").stdout)}
        assert {name: f["health"] for name, f in feeds.items()} == {
            "flaky": "failing",
            "dead": "gone",
            "quiet": "silent",
        }
        table = run_watcher(config, "feeds").stdout
        assert "failing" in table and "silent" in table
        assert "health:       failing, since" in run_watcher(config, "feeds", "flaky").stdout

        server.respond("/flaky.xml", SAMPLE.read_bytes(), headers={"Content-Type": "application/rss+xml"})
        for _ in range(3):
            run_watcher(config, "poll", "--force", ok=False)
        assert told().count(("watcher.feed.recovered.v1", "flaky")) == 1
        assert len(told()) == 4
        assert "[watcher] feed recovered: flaky" in [m.message["Subject"] for m in sink.messages]
        [recovered] = [json.loads(r.body) for r in server.requests_for("/health")][-1:]
        assert recovered["health"] == "ok" and recovered["previous"] == "failing"


def test_the_daemons_health_job_alerts_a_failing_feed_once_and_wakes_its_sender(tmp_path: Path) -> None:
    clock = Clock(T0)
    text = (
        f"database: sqlite:///{tmp_path}/w.db\n"
        f"feeds: [{{name: wire, url: '{FEED.url}'}}]\n"
        "channels: [{name: hook, type: webhook, url: 'https://hooks.example/x', secret: s, health: true}]\n"
    )
    watcher = make_watcher(
        parse_config(text, str(tmp_path / "feeds.yaml"), {}), workers=InlineWorkers((), ()), now=clock
    )
    daemon = Daemon(watcher, watcher.config.path)
    daemon._schedule_upkeep()  # as run() does (the scheduler is not started)
    assert {job.id for job in daemon.scheduler.get_jobs()} >= {"health", "retention"}
    daemon.wake["hook"] = woken = threading.Event()
    watcher.store.record_failure("wire", "HTTP 500 Internal Server Error", T0, T0 + HOUR)
    for hours in (1, 25, 26, 27):
        clock.time = T0 + hours * HOUR
        daemon.check_health()
        assert woken.is_set() == (hours == 25)
        woken.clear()
    assert [i.watch for i in watcher.store.list_outbox()] == ["feed.failing"]
    watcher.close()


def test_validate_says_when_each_feed_alerts_and_which_channels_take_health_alerts(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "defaults: {failing_after: 6h}\n"
        f"feeds: [{{name: wire, url: '{FEED.url}', expect_every: 2d}}]\n"
        "channels: [{name: hook, type: webhook, url: 'https://hooks.example/x', secret: s, health: true}]\n",
        encoding="utf-8",
    )
    shown = CliRunner().invoke(cli, ["-c", str(config), "validate"], obj={}).output
    assert "wire: https://news.example/rss every 15m, failing after 6h, silent after 2d" in shown
    assert "hook: webhook to https://hooks.example/…, immediate, all watches, feed health alerts" in shown
