"""Faults outside watcher's control: a locked or failing database, a PostgreSQL server that
drops its connections, a bad config at start or on reload, and SIGKILL at random points.

What is proven:

* a SQLite write lock held by another process makes ``watcher poll`` wait, then succeed;
* the daemon keeps polling when one poll's transaction fails (the feed is redone later),
  and an unexpected exception on one feed fails that feed only;
* after PostgreSQL terminates every connection of the store, the next operation succeeds;
* ``watcher run`` refuses a bad config with one line and exit 1; SIGHUP with a bad config
  keeps the last good one running, SIGHUP with a good one adds its new feed;
* a daemon SIGKILLed again and again during polls and deliveries, then restarted, loses no
  entry and no alert: every hit has exactly one sent outbox row per channel, every alert
  arrived, and the only duplicates are resends of one alert with the same Message-ID /
  webhook-id, at most one per kill.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, wait_for, watcher_cmd, write_config
from tests.httpserver import LoopbackServer
from watcher.config import load_config
from watcher.errors import StorageError
from watcher.mailsink import MailSink
from watcher.service import Daemon, make_watcher
from watcher.store import PollRecord, PollWrite, Store
from watcher.workers import InlineWorkers

DEMO = ROOT / "watcher" / "demo_feeds"


@pytest.fixture
def demo_server() -> Iterator[LoopbackServer]:
    with LoopbackServer(root=DEMO) as server:
        yield server


# -- database ----------------------------------------------------------------------------


def test_poll_waits_for_a_sqlite_write_lock_held_by_another_process(
    tmp_path: Path, demo_server: LoopbackServer
) -> None:
    """Another connection holds the write lock (BEGIN IMMEDIATE, with a write) for 2.5 s
    while `watcher poll` runs: the poll waits on the busy timeout and stores everything."""
    db = tmp_path / "watcher.db"
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{db}",
        {
            "forum": demo_server.url("/forum-wire.xml"),
            "notes": demo_server.url("/policy-notes.xml"),
        },
    )
    store = Store(f"sqlite:///{db}")
    store.upgrade()
    store.close()

    # A poll of two loopback feeds takes about 1 s: one that ends after 2.7 s had to wait.
    locked, release = threading.Event(), 3.0

    def hold_lock() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE lock_probe (x)")
        conn.execute("INSERT INTO lock_probe VALUES (1)")
        locked.set()
        time.sleep(release)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(5)
    started = time.monotonic()
    result = subprocess.run(
        watcher_cmd(config, "poll", "--json"), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    elapsed = time.monotonic() - started
    holder.join()
    assert result.returncode == 0, result.stderr
    assert elapsed >= release - 0.3, "the poll did not have to wait: the lock was not in its way"
    assert '"error": null' in result.stdout and '"error": "' not in result.stdout, result.stdout
    store = Store(f"sqlite:///{db}")
    try:
        states = {s.name: s for s in store.feed_states()}
    finally:
        store.close()
    assert states["forum"].status == states["notes"].status == "ok"
    assert states["forum"].entries_seen == 4 and states["notes"].entries_seen >= 1


class FlakyStore(Store):
    """A real Store whose poll transaction fails once for one feed, as a lost one would."""

    def __init__(self, url: str, fail_feed: str) -> None:
        super().__init__(url)
        self.fail_feed = fail_feed
        self.failed = False
        self.saved: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def saving_poll(self, name: str, record: PollRecord, now: Any) -> Iterator[PollWrite]:
        if name == self.fail_feed and not self.failed:
            self.failed = True
            raise StorageError("database error on sqlite:///test: disk I/O error (injected)")
        with super().saving_poll(name, record, now) as tx:
            yield tx
        self.saved[name] += 1


def test_daemon_keeps_running_when_one_poll_transaction_fails(
    tmp_path: Path, demo_server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler's first poll of one feed fails in the database: the daemon logs it,
    keeps polling the other feed, and stores the failed feed's entries on its next poll."""
    config_path = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {
            "forum": demo_server.url("/forum-wire.xml"),
            "notes": demo_server.url("/policy-notes.xml"),
        },
        interval="1s",
    )
    store = FlakyStore(f"sqlite:///{tmp_path}/watcher.db", fail_feed="forum")
    daemon = Daemon(make_watcher(load_config(config_path), store=store, channels={}), str(config_path))

    def stop_when_done() -> None:
        try:
            wait_for(lambda: store.failed and store.saved["forum"] >= 1, "the failed feed stored on a later poll", 30)
        finally:
            daemon.stop.set()

    threading.Thread(target=stop_when_done, daemon=True).start()
    assert daemon.run() == 0
    assert store.failed and store.saved["forum"] >= 1 and store.saved["notes"] >= 1
    assert "not stored" in caplog.text and "injected" in caplog.text
    check = Store(f"sqlite:///{tmp_path}/watcher.db")
    try:
        assert check.feed_state("forum").entries_seen == 4
    finally:
        check.close()


class BuggyMatcher:
    """The real matcher, except that one entry trips a bug in it (an unexpected exception)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def match(self, article: Any) -> Any:
        if "bakery" in article.title:
            raise KeyError("bakery")
        return self.real.match(article)


def test_a_bug_on_one_feed_fails_only_that_feed(
    tmp_path: Path, demo_server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception while polling one feed (here the matcher, on one entry) is
    that feed's failure, recorded with a one-line reason and logged with its traceback;
    the other feeds of the same poll are stored (STYLE rule 4: the run carries on)."""
    config = load_config(
        write_config(
            tmp_path / "feeds.yaml",
            f"sqlite:///{tmp_path}/watcher.db",
            {
                "forum": demo_server.url("/forum-wire.xml"),
                "notes": demo_server.url("/policy-notes.xml"),
            },
        )
    )
    workers = InlineWorkers(config.speakers, config.themes)
    workers.matcher = BuggyMatcher(workers.matcher)  # type: ignore[assignment]
    watcher = make_watcher(config, channels={}, workers=workers)
    try:
        results = {r.feed: r for r in watcher.poll()}
        states = {s.name: s for s in watcher.store.feed_states()}
    finally:
        watcher.close()
    assert results["notes"].error is None and states["notes"].status == "ok"
    assert results["forum"].error is not None and "internal error" in results["forum"].error
    assert states["forum"].status == "failed" and states["forum"].entries_seen == 0
    assert states["forum"].last_error is not None and "\n" not in states["forum"].last_error
    assert "KeyError" in states["forum"].last_error
    assert "Traceback" in caplog.text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_store_recovers_when_postgresql_drops_its_connections(
    database_url: str, demo_server: LoopbackServer, tmp_path: Path
) -> None:
    """pg_terminate_backend on every connection of the store's pool, between operations:
    the next read, write and a whole poll succeed (pool pre-ping reconnects)."""
    import psycopg

    from tests.conftest import POSTGRES_URL

    app = f"watcher-test-{uuid.uuid4().hex[:8]}"
    url = f"{database_url}&application_name={app}"
    config = load_config(write_config(tmp_path / "feeds.yaml", url, {"forum": demo_server.url("/forum-wire.xml")}))
    watcher = make_watcher(config)

    def terminate() -> int:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchall()
        return len(rows)

    try:
        assert watcher.store.feed_state("forum").status == "new"
        assert terminate() >= 1
        assert watcher.store.feed_state("forum").status == "new"  # a read after the drop
        assert terminate() >= 1
        [result] = watcher.poll()  # reads and writes after the drop
        assert result.error is None and result.new == 4
        assert terminate() >= 1
        assert len(watcher.store.list_hits()) >= 1
    finally:
        watcher.close()


# -- config at start and on reload --------------------------------------------------------


def test_daemon_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    """`watcher run` on a config with a bad duration exits 1 with one line naming file,
    line, key and fix, and never starts."""
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/w.db",
        {"forum": "http://127.0.0.1:9/forum.xml"},
        interval="often",
    )
    result = subprocess.run(
        watcher_cmd(config, "run"), capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {config}:") and "interval" in lines[0] and "duration" in lines[0]
    assert not (tmp_path / "w.db").exists()


def test_sighup_keeps_the_last_good_config_and_picks_up_a_good_one(tmp_path: Path, demo_server: LoopbackServer) -> None:
    """SIGHUP with broken YAML: the error is logged and the daemon keeps polling its feed.
    SIGHUP with a good config naming a new feed: the new feed is polled."""
    database = f"sqlite:///{tmp_path}/watcher.db"
    feeds = {"forum": demo_server.url("/forum-wire.xml")}
    config = write_config(tmp_path / "feeds.yaml", database, feeds, interval="1s")
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(watcher_cmd(config, "run"), cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for(lambda: len(demo_server.requests_for("/forum-wire.xml")) >= 2, "the first polls", 30)

        config.write_text(config.read_text() + "\nfeeds: [oops\n", encoding="utf-8")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload failed" in log_path.read_text(), "the reload error", 10)
        polled = len(demo_server.requests_for("/forum-wire.xml"))
        wait_for(
            lambda: len(demo_server.requests_for("/forum-wire.xml")) >= polled + 2, "polls after the failed reload", 10
        )
        assert daemon.poll() is None

        write_config(config, database, {**feeds, "notes": demo_server.url("/policy-notes.xml")}, interval="1s")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: len(demo_server.requests_for("/policy-notes.xml")) >= 1, "the new feed's poll", 15)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = log_path.read_text()
    assert "config reload failed, keeping the last good config" in text
    assert "config reloaded: 2 feeds" in text


# -- SIGKILL at random points ---------------------------------------------------------------


class SlowSink(MailSink):
    """An SMTP server that takes a while to accept each message, so kills land mid-delivery.

    ``on_message`` runs when a message is received, before the server answers 250.
    """

    delay = 0.08
    on_message: Callable[[], None] | None = None

    def _store(self, session: Any, envelope: Any) -> None:
        if self.on_message is not None:
            self.on_message()
        time.sleep(self.delay)
        super()._store(session, envelope)


class Wire:
    """A feed where entries keep appearing: each request publishes a few more, and the feed
    always carries every entry published so far."""

    def __init__(self, name: str, per_request: int = 3) -> None:
        self.name = name
        self.per_request = per_request
        self.published: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        with self._lock:
            start = len(self.published)
            self.published += [f"{self.name}-{i}" for i in range(start, start + self.per_request)]
            guids = list(self.published)
        items = "".join(
            f"<item><guid>{g}</guid><title>Jen Zhu Scott said item {g}</title><link>http://wire.invalid/{g}</link></item>"
            for g in guids
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{self.name}</title>{items}</channel></rss>'
        data = body.encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/rss+xml")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def published(wires: list[Wire]) -> int:
    return sum(len(w.published) for w in wires)


def grows(count: Callable[[], int]) -> Callable[[], bool]:
    """A condition: ``count()`` is above what it is now."""
    start = count()
    return lambda: count() > start


def slow_hook(request: Any) -> None:
    time.sleep(0.02)
    request.send_response(200)
    request.send_header("Content-Length", "0")
    request.end_headers()


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing_and_duplicates_only_in_the_window(tmp_path: Path) -> None:
    """`watcher run` is SIGKILLed 5 times at random moments (fixed seed) while entries keep
    appearing and alerts go to a slow SMTP server and a webhook, and restarted each time;
    a final `watcher poll` drains. Nothing published is lost, every hit has one sent row
    per channel and arrived, and duplicates are only resends with the same id."""
    rng = random.Random(20261125)
    wires = [Wire("alpha"), Wire("beta")]
    with LoopbackServer() as server, SlowSink() as sink:
        for wire in wires:
            server.route(f"/{wire.name}.xml", wire)
        server.route("/hook", slow_hook)
        database = f"sqlite:///{tmp_path}/watcher.db"
        config = write_config(
            tmp_path / "feeds.yaml",
            database,
            {w.name: server.url(f"/{w.name}.xml") for w in wires},
            interval="1s",
            smtp_port=sink.port,
            hooks={"hook": server.url("/hook")},
        )
        kills = 5
        log_path = tmp_path / "daemon.log"
        published_before_last_kill: list[str] = []
        for run in range(kills):
            with log_path.open("a") as log:
                daemon = subprocess.Popen(watcher_cmd(config, "run"), cwd=ROOT, stdout=log, stderr=log)
            try:
                if run == 0:
                    # Issue 4's window, hit on purpose: the server has the message and the
                    # sender is killed before it hears 250, so the row is claimed, not sent.
                    sink.on_message = functools.partial(daemon.send_signal, signal.SIGKILL)
                    wait_for(functools.partial(daemon.poll), "a kill mid-delivery", 30)
                    sink.on_message = None
                else:
                    # Killed at a random moment once it is polling again (a start on a loaded
                    # machine may take longer than any fixed pause).
                    wait_for(grows(functools.partial(published, wires)), "a poll after the restart")
                    time.sleep(rng.uniform(1.0, 3.0))
            finally:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(timeout=10)
            published_before_last_kill = [g for w in wires for g in w.published]
        during = (len(sink.messages), len(server.requests_for("/hook")))

        # --force: a fetch that timed out on this loaded machine must not hold a feed back.
        drain = subprocess.run(
            watcher_cmd(config, "poll", "--force", "--json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        assert drain.returncode == 0, drain.stderr
        emails = sink.messages
        hooks = server.requests_for("/hook")

    store = Store(database)
    try:
        hits = store.list_hits()
        rows = store.list_outbox(limit=None)
    finally:
        store.close()
    stored = {h.entry_id for h in hits}
    assert len(published_before_last_kill) > 20, "the daemon hardly ran: the test proves little"
    assert set(published_before_last_kill) <= stored, "an entry published before a kill was lost"

    per_hit = collections.defaultdict(list)
    for row in rows:
        assert row.stored is not None
        per_hit[row.stored.id].append(row)
    assert set(per_hit) == {h.id for h in hits}
    for hit_rows in per_hit.values():
        assert sorted(r.channel for r in hit_rows) == ["desk", "hook"]
        assert all(r.status == "sent" for r in hit_rows), [(r.channel, r.status, r.last_error) for r in hit_rows]

    by_alert = collections.defaultdict(list)
    for mail in emails:
        by_alert[mail.message["X-Watcher-Alert-Id"]].append(mail.message["Message-ID"])
    hook_ids = collections.Counter(r.headers["webhook-id"] for r in hooks)
    assert {r.alert_id for r in rows if r.channel == "desk"} == set(by_alert), "an email alert never arrived"
    assert {r.alert_id for r in rows if r.channel == "hook"} == set(hook_ids), "a webhook alert never arrived"
    assert all(len(set(ids)) == 1 for ids in by_alert.values()), "a resent email changed its Message-ID"
    email_dups = sum(len(ids) - 1 for ids in by_alert.values())
    hook_dups = sum(n - 1 for n in hook_ids.values())
    print(
        f"\ncrash loop: {kills} kills, {len(published_before_last_kill)} entries published before the last, "
        f"{len(hits)} hits; during the kills {during[0]} emails and {during[1]} webhooks arrived; "
        f"after draining {len(emails)} emails ({email_dups} duplicates), {len(hooks)} webhooks ({hook_dups} duplicates)"
    )
    # One send is in flight at a time per channel: a kill can leave at most one
    # accepted-but-unmarked alert on each channel.
    assert email_dups <= kills and hook_dups <= kills
    assert email_dups >= 1, "the kill between the server's acceptance and the mark resends that alert"
