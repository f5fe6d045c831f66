"""The daemon's HTTP endpoint (issue 13): each route on loopback, the token rule, and
/metrics parsed as Prometheus reads it, its counters moving after a poll that finds hits."""

from __future__ import annotations

import base64
import socket
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FAKE_NOW, ROOT, Clock, run_watcher, serving, wait_for, write_config
from tests.httpserver import LoopbackServer
from watcher.config import HttpSettings, parse_config
from watcher.deliver import Delivery, DeliveryReport
from watcher.metrics import Metrics
from watcher.pipeline import PollResult
from watcher.service import Daemon, Watcher, make_watcher
from watcher.store import Overview
from watcher.web import StatusServer
from watcher.workers import InlineWorkers

SAMPLES = ROOT / "watcher" / "demo_feeds"
QUIET = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title>
<item><guid>urn:quiet:1</guid><title>Bakery opens a second shop</title><description>Bread.</description></item>
</channel></rss>"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, by name and labels, parsed as Prometheus does."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def feeds() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.respond("/wire.xml", QUIET, headers={"Content-Type": "application/rss+xml"})
        server.respond("/missing.xml", b"gone fishing", status=404)
        yield server


def test_each_route_answers_and_metrics_count_a_poll_that_finds_hits(tmp_path: Path, feeds: LoopbackServer) -> None:
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/w.db",
        {"wire": feeds.url("/wire.xml"), "missing": feeds.url("/missing.xml")},
        interval="1s",
    )
    with serving(config) as daemon:
        get = requests.Session().get
        wait_for(lambda: len(feeds.requests_for("/missing.xml")) >= 1, "the failing feed's first poll")

        health = get(daemon.url + "healthz", timeout=10)
        assert health.status_code == 200 and health.headers["content-type"] == "application/json"
        body = health.json()
        assert body["status"] == "ok" and body["cycle_interval"] == "1s"
        assert {"version", "started", "last_cycle", "seconds_since_cycle"} <= set(body)

        ready = get(daemon.url + "readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready" and ready.json()["schema"] == ready.json()["schema_head"]

        assert get(daemon.url + "nothing-here", timeout=10).status_code == 404

        def scrape() -> str:
            answer = get(daemon.url + "metrics", timeout=10)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
            return answer.text

        def first_polls_counted() -> bool:
            text = scrape()
            failed = value(text, "watcher_polls_total", outcome="failed", reason="http_4xx")
            ok = value(text, "watcher_polls_total", outcome="ok", reason="")
            return value(text, "watcher_feeds", health="failed") == 1 and failed >= 1 and ok >= 1

        wait_for(first_polls_counted, "both feeds' first polls counted")
        before = scrape()
        assert value(before, "watcher_hits_total", watch="Jen Zhu Scott", kind="statement") == 0
        assert value(before, "watcher_database_up") == 1
        assert value(before, "process_resident_memory_bytes") > 0
        assert not any("127.0.0.1" in str(labels) for _, labels in samples(before)), "a URL became a label"

        # The feed now carries statements by the watched speaker: the next poll records hits.
        feeds.respond("/wire.xml", (SAMPLES / "forum-wire.xml").read_bytes())
        wait_for(
            lambda: value(scrape(), "watcher_hits_total", watch="Jen Zhu Scott", kind="statement") > 0,
            "the hits counted",
        )
        after = scrape()
        assert value(after, "watcher_entries_new_total") > value(before, "watcher_entries_new_total")
        assert value(after, "watcher_polls_total", outcome="ok", reason="") > value(
            before, "watcher_polls_total", outcome="ok", reason=""
        )
        assert value(after, "watcher_poll_duration_seconds_count") > value(
            before, "watcher_poll_duration_seconds_count"
        )
        assert value(after, "watcher_fetch_duration_seconds_count") > 0

        page = get(daemon.url, timeout=10)
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none' forbids scripts
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # Which process polled each feed last (host:pid): in a cluster, one of several.
        assert f'<td class="polled-by">{socket.gethostname()}:{daemon.process.pid}</td>' in page.text


def test_a_token_guards_every_route(tmp_path: Path, feeds: LoopbackServer) -> None:
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/w.db",
        {"wire": feeds.url("/wire.xml")},
        extra="http: {token: '${WATCHER_HTTP_TOKEN}'}",
    )
    token = "s3cret-token-of-some-length"
    with serving(config, env={"WATCHER_HTTP_TOKEN": token}) as daemon:
        log = daemon.log.read_text(encoding="utf-8")
        assert "token required" in log and token not in log
        basic = base64.b64encode(f"anyone:{token}".encode()).decode()
        for route in ("", "healthz", "readyz", "metrics"):
            bare = requests.get(daemon.url + route, timeout=10)
            assert bare.status_code == 401, route
            assert bare.headers["www-authenticate"].startswith("Basic ")
            wrong = requests.get(daemon.url + route, headers={"Authorization": "Bearer nope"}, timeout=10)
            assert wrong.status_code == 401, route
            bearer = requests.get(daemon.url + route, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert bearer.status_code == 200, route
            password = requests.get(daemon.url + route, headers={"Authorization": f"Basic {basic}"}, timeout=10)
            assert password.status_code == 200, route


def test_the_daemon_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    config = write_config(tmp_path / "feeds.yaml", f"sqlite:///{tmp_path}/w.db", {"wire": "https://example.org/x"})
    flag = run_watcher(config, "run", "--http", "0.0.0.0:0", ok=False)
    assert flag.returncode == 1
    assert "--http 0.0.0.0:0: http.token: required to listen on 0.0.0.0:0 (not loopback)" in flag.stderr

    config.write_text(config.read_text() + "\nhttp: {listen: 0.0.0.0:8080}\n")
    configured = run_watcher(config, "run", ok=False)
    assert configured.returncode == 1
    assert "http.token: required to listen on 0.0.0.0:8080 (not loopback)" in configured.stderr
    assert not (tmp_path / "w.db").exists(), "the daemon started before refusing"


def test_the_daemon_says_so_when_its_address_is_taken(tmp_path: Path) -> None:
    config = write_config(tmp_path / "feeds.yaml", f"sqlite:///{tmp_path}/w.db", {"wire": "https://example.org/x"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_watcher(config, "run", "--http", f"127.0.0.1:{port}", ok=False)
    assert result.returncode == 1
    assert (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use: change http.listen or --http"
        in result.stderr
    )


# -- in process: health and readiness decisions ------------------------------------------


NOW = FAKE_NOW


@pytest.fixture
def watcher(tmp_path: Path, clock: Clock) -> Iterator[Watcher]:
    text = f"database: sqlite:///{tmp_path}/w.db\ndefaults: {{interval: 10m}}\nfeeds:\n  - {{name: wire, url: 'https://wire.example/rss'}}\n"
    config = parse_config(text, str(tmp_path / "feeds.yaml"), {})
    w = make_watcher(config, channels={}, workers=InlineWorkers((), ()), now=clock, metrics=Metrics())
    yield w
    w.close()


@pytest.fixture
def endpoint(watcher: Watcher) -> Iterator[tuple[Daemon, str]]:
    daemon = Daemon(watcher, watcher.config.path, http=HttpSettings(listen=("127.0.0.1", 0)))
    daemon._schedule_feeds()  # the cycle job's interval, as run() sets it (the scheduler is not started)
    server = StatusServer(daemon.http, daemon)
    try:
        yield daemon, server.url
    finally:
        server.close()


def test_healthz_fails_when_the_scheduler_has_not_cycled_for_two_intervals(
    endpoint: tuple[Daemon, str], clock: Clock
) -> None:
    daemon, url = endpoint
    clock.time = NOW + timedelta(minutes=20)
    assert requests.get(url + "healthz", timeout=10).status_code == 200
    daemon._log_cycle()
    clock.time = NOW + timedelta(minutes=40, seconds=1)
    stalled = requests.get(url + "healthz", timeout=10)
    assert stalled.status_code == 503
    body = stalled.json()
    assert body["status"] == "stalled" and body["cycle_interval"] == "10m"
    assert body["last_cycle"] == "2031-01-01T12:20:00Z" and body["seconds_since_cycle"] == 1201


def test_readyz_fails_when_the_schema_is_behind_or_the_database_is_gone(
    endpoint: tuple[Daemon, str], watcher: Watcher, tmp_path: Path
) -> None:
    _, url = endpoint
    with sqlite3.connect(tmp_path / "w.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0004'")
    behind = requests.get(url + "readyz", timeout=10)
    assert behind.status_code == 503
    assert behind.json()["schema"] == "0004" and "watcher db upgrade" in behind.json()["database"]

    (tmp_path / "w.db").unlink()
    (tmp_path / "w.db").mkdir()  # a database that cannot be opened at all
    watcher.store.close()
    gone = requests.get(url + "readyz", timeout=10)
    assert gone.status_code == 503 and gone.json()["status"] == "not ready"
    assert "database error" in gone.json()["database"]
    metrics = requests.get(url + "metrics", timeout=10)
    assert metrics.status_code == 200 and value(metrics.text, "watcher_database_up") == 0


# -- the metrics themselves --------------------------------------------------------------


def test_polls_count_by_outcome_and_reason_and_hits_by_watch_and_kind() -> None:
    metrics = Metrics()
    metrics.polled(
        PollResult("a", "https://a.example/rss", error="HTTP 503", error_kind="http_5xx", timings={"fetch": 0.2})
    )
    metrics.polled(PollResult("a", "https://a.example/rss", not_modified=True, timings={"fetch": 0.01}))
    found = (("Jen Zhu Scott", "statement"), ("Jen Zhu Scott", "statement"), ("AI race", "theme"))
    metrics.polled(
        PollResult("b", "https://b.example/rss", new=5, hits=3, found=found, timings={"fetch": 0.1, "store": 0.1})
    )
    # Neither fetched nor failed: a feed backing off, and a poll abandoned at a stop.
    metrics.polled(PollResult("c", "https://c.example/rss", error="HTTP 503", waiting_until=NOW))
    metrics.polled(PollResult("c", "https://c.example/rss", error="abandoned", error_kind="abandoned"))
    text = metrics.exposition(
        Overview({"ok": 2, "failed": 1}, {"due": 3, "failed": 1, "dead": 0}, NOW, health={"ok": 2, "silent": 1}),
        NOW + timedelta(minutes=16),
    ).decode()
    assert value(text, "watcher_polls_total", outcome="failed", reason="http_5xx") == 1
    assert value(text, "watcher_polls_total", outcome="not_modified", reason="") == 1
    assert value(text, "watcher_polls_total", outcome="ok", reason="") == 1
    assert sum(v for (name, _), v in samples(text).items() if name == "watcher_polls_total") == 3
    assert value(text, "watcher_hits_total", watch="Jen Zhu Scott", kind="statement") == 2
    assert value(text, "watcher_hits_total", watch="AI race", kind="theme") == 1
    assert value(text, "watcher_entries_new_total") == 5
    assert value(text, "watcher_fetch_duration_seconds_count") == 3
    assert value(text, "watcher_poll_duration_seconds_sum") == pytest.approx(0.41)
    assert value(text, "watcher_outbox_alerts", status="due") == 3
    assert value(text, "watcher_outbox_oldest_due_age_seconds") == 960
    assert value(text, "watcher_feeds", health="failed") == 1 and value(text, "watcher_feeds", health="disabled") == 0
    assert value(text, "watcher_feed_health", health="silent") == 1
    assert value(text, "watcher_feed_health", health="failing") == 0


def test_deliveries_count_attempts_by_outcome_and_the_latency_of_those_sent() -> None:
    metrics = Metrics()
    report = DeliveryReport(
        (
            Delivery("desk", (1, 2), "sent", "250 OK", waited=(timedelta(seconds=3), timedelta(minutes=20))),
            Delivery("hook", (3,), "failed", "HTTP 503"),
            Delivery("hook", (4,), "dead", "HTTP 410"),
            Delivery("hook", (5,), "released", "stopping"),
        )
    )
    metrics.delivered(report)
    text = metrics.exposition(None, NOW).decode()
    assert value(text, "watcher_delivery_attempts_total", channel="desk", outcome="sent") == 2
    assert value(text, "watcher_delivery_attempts_total", channel="hook", outcome="failed") == 1
    assert value(text, "watcher_delivery_attempts_total", channel="hook", outcome="dead") == 1
    assert value(text, "watcher_delivery_attempts_total", channel="hook", outcome="released") == 0
    assert value(text, "watcher_alert_latency_seconds_count", channel="desk") == 2
    assert value(text, "watcher_alert_latency_seconds_bucket", channel="desk", le="5.0") == 1
    assert value(text, "watcher_alert_latency_seconds_sum", channel="desk") == 1203
    assert value(text, "watcher_database_up") == 0
