"""The faults chaos testing found (issue 10), each met the way a user meets it: `watcher run`
and `watcher poll` as processes, on loopback feed, SMTP and webhook servers.

What is proven:

* a Retry-After too large for any clock (``99999999999999999999``), from a webhook or from a
  feed, is obeyed as a bounded wait: the daemon keeps delivering on every channel, keeps
  the feed's backoff, and `watcher poll` delivers and exits 3 (some feeds failed);
* an unexpected exception in the delivery loop or in a poll job is logged, counted, and
  the loop or job carries on;
* NUL bytes and lone surrogates in entries never block a feed, on SQLite and PostgreSQL:
  the feed is stored whole and `watcher match` prints its hits; and when the database does
  refuse a feed's poll, `watcher feeds` shows that feed as failed, with the reason.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, json_lines, run_watcher, wait_for, watcher_cmd, write_config
from tests.httpserver import LoopbackServer
from watcher.config import load_config
from watcher.fetch import Fetcher, internal_address
from watcher.mailsink import MailSink
from watcher.render import message_id
from watcher.service import Daemon as ServiceDaemon
from watcher.service import make_watcher
from watcher.store import Store
from watcher.workers import InlineWorkers

DEMO = ROOT / "watcher" / "demo_feeds"
HUGE = "99999999999999999999"


class Wire:
    """A feed where entries keep appearing: each request publishes a few more, and the feed
    always carries every entry published so far."""

    def __init__(self, name: str, per_request: int = 1) -> None:
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
            f"<item><guid>{g}</guid><title>Jen Zhu Scott said item {g}</title>"
            f"<link>http://wire.invalid/{g}</link></item>"
            for g in guids
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{self.name}</title>{items}</channel></rss>'
        reply(request, 200, body.encode(), {"Content-Type": "application/rss+xml"})


def reply(request: Any, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


class Daemon:
    """`watcher run` as a process, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        with log.open("a") as out:
            self.process = subprocess.Popen(watcher_cmd(config, "run"), cwd=ROOT, stdout=out, stderr=out)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as s:
        yield s


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(root=DEMO) as s:
        yield s


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- 1: a Retry-After too large for any clock ----------------------------------------------


def test_poll_survives_a_feed_asking_to_wait_forever(tmp_path: Path, server: LoopbackServer, sink: MailSink) -> None:
    """A feed answering 503 with Retry-After: 99999999999999999999 fails alone: `watcher
    poll` stores and alerts the other feed, exits 3 (some feeds failed), and the feed waits
    at most a day."""
    server.respond("/forever.xml", b"busy", status=503, headers={"Retry-After": HUGE})
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"forever": server.url("/forever.xml"), "forum": server.url("/forum-wire.xml")},
        smtp_port=sink.port,
    )
    started = datetime.now(UTC)
    poll = run_watcher(config, "poll", "--json", ok=False)
    assert poll.returncode == 3, poll.stderr
    assert "Traceback" not in poll.stderr, poll.stderr
    results = {r["feed"]: r for r in json_lines(poll.stdout) if "feed" in r}
    assert results["forum"]["error"] is None and results["forum"]["hits"] >= 1
    assert results["forever"]["error"].startswith("HTTP 503")
    assert len(sink.messages) >= 1, "the good feed's alerts were not delivered"
    feeds = {f["feed"]: f for f in json_lines(run_watcher(config, "feeds", "--json").stdout)}
    assert feeds["forever"]["status"] == "failed"
    assert parse_time(feeds["forever"]["next_poll_at"]) <= started + timedelta(days=1, minutes=5)


def test_daemon_keeps_a_feeds_backoff_when_it_asks_to_wait_forever(tmp_path: Path, server: LoopbackServer) -> None:
    """In the daemon, the same feed is not polled again every interval: its failure is
    recorded with a bounded wait, while the other feed goes on being polled."""
    server.respond("/forever.xml", b"busy", status=503, headers={"Retry-After": HUGE})
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"forever": server.url("/forever.xml"), "forum": server.url("/forum-wire.xml")},
        interval="1s",
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(server.requests_for("/forum-wire.xml")) >= 5, "five polls of the good feed", 60)
    finally:
        daemon.stop()
    assert len(server.requests_for("/forever.xml")) == 1, "the feed asking to wait was polled again"
    assert "Traceback" not in daemon.log, daemon.log


def test_daemon_keeps_delivering_when_a_webhook_asks_to_wait_forever(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """A webhook answering 503 with Retry-After: 99999999999999999999: its alert waits (at
    most a day), and every other alert, on every channel, still goes out."""
    wire = Wire("wire")
    server.route("/wire.xml", wire)
    server.respond("/hook", b"busy", status=503, headers={"Retry-After": HUGE})
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"wire": server.url("/wire.xml")},
        interval="1s",
        smtp_port=sink.port,
        hooks={"hook": server.url("/hook")},
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(server.requests_for("/hook")) >= 1, "the webhook's first answer", 60)
        sent = len(sink.messages)
        wait_for(lambda: len(sink.messages) >= sent + 3, "emails of entries published after it", 60)
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log, daemon.log
    rows = json_lines(run_watcher(config, "outbox", "--json", "--status", "failed").stdout)
    hook_rows = [r for r in rows if r["channel"] == "hook"]
    assert hook_rows, "the webhook's alerts should be waiting to be retried"
    for row in hook_rows:
        assert parse_time(row["next_attempt_at"]) <= datetime.now(UTC) + timedelta(days=1, minutes=5)


# -- 2 and 3: NUL bytes and lone surrogates; a storage failure is a feed failure -----------


def poisoned_feed() -> bytes:
    """Four entries: a NUL by reference and raw, a lone surrogate, and a good one."""
    items = [
        ("nul-ref", "Jen Zhu Scott said the NUL &#0; is here"),
        ("nul-raw", "Jen Zhu Scott said the raw NUL \x00 is here"),
        ("surrogate", "Jen Zhu Scott said &#xD800; broke it"),
        ("good", "Jen Zhu Scott said all is well"),
    ]
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>http://poison.invalid/{guid}</link></item>"
        for guid, title in items
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>P</title>{body}</channel></rss>'.encode()


def test_nul_bytes_and_lone_surrogates_never_block_a_feed(
    tmp_path: Path, server: LoopbackServer, sink: MailSink, database_url: str
) -> None:
    """A NUL (by reference or raw) and a lone surrogate (&#xD800;) in entries of a feed: on
    both backends every entry is stored with the bad character dropped or replaced, each
    alerts, and `watcher match` prints the hits without a traceback."""
    server.respond("/poison.xml", poisoned_feed(), headers={"Content-Type": "application/rss+xml"})
    config = write_config(
        tmp_path / "feeds.yaml", database_url, {"poison": server.url("/poison.xml")}, smtp_port=sink.port
    )
    poll = run_watcher(config, "poll", "--json")
    [result] = [r for r in json_lines(poll.stdout) if "feed" in r]
    assert result["error"] is None and result["new"] == 4 and result["hits"] == 4, result
    feeds = {f["feed"]: f for f in json_lines(run_watcher(config, "feeds", "--json").stdout)}
    assert feeds["poison"]["status"] == "ok" and feeds["poison"]["entries_seen"] == 4
    titles = sorted(h["title"] for h in json_lines(run_watcher(config, "hits", "--json").stdout))
    assert titles == [
        "Jen Zhu Scott said all is well",
        "Jen Zhu Scott said the NUL is here",
        "Jen Zhu Scott said the raw NUL is here",
        "Jen Zhu Scott said \ufffd broke it",
    ]
    assert len(sink.messages) == 4
    match = run_watcher(config, "match", server.url("/poison.xml"), ok=False)
    assert match.returncode == 0 and "Traceback" not in match.stderr, match.stderr
    assert match.stdout.count("Jen Zhu Scott (statement") == 4, match.stdout


def refuse_title(database_url: str, word: str) -> None:
    """Make the database itself refuse any entry whose title holds ``word`` (a trigger)."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql(
                    "CREATE TRIGGER refuse BEFORE INSERT ON entries "
                    f"WHEN NEW.title LIKE '%{word}%' BEGIN SELECT RAISE(ABORT, 'entry refused'); END"
                )
            else:
                conn.exec_driver_sql(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.title LIKE '%%{word}%%' THEN RAISE EXCEPTION 'entry refused'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
                conn.exec_driver_sql(
                    "CREATE TRIGGER refuse BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
    finally:
        engine.dispose()


def test_a_feed_the_database_refuses_shows_as_failed(tmp_path: Path, server: LoopbackServer, database_url: str) -> None:
    """When the database refuses to store a feed's poll, `watcher feeds` shows the feed as
    failed with a one-line reason, and the other feeds are stored."""
    server.respond("/refused.xml", poisoned_feed().replace(b"all is well", b"forbidden words"))
    config = write_config(
        tmp_path / "feeds.yaml",
        database_url,
        {"refused": server.url("/refused.xml"), "forum": server.url("/forum-wire.xml")},
    )
    run_watcher(config, "db", "upgrade")
    refuse_title(database_url, "forbidden")
    poll = run_watcher(config, "poll", "--json", ok=False)
    assert poll.returncode == 3, poll.stderr
    results = {r["feed"]: r for r in json_lines(poll.stdout) if "feed" in r}
    assert results["forum"]["error"] is None and results["forum"]["new"] == 4
    assert results["refused"]["error"].startswith("not stored: ")
    feeds = {f["feed"]: f for f in json_lines(run_watcher(config, "feeds", "--json").stdout)}
    assert feeds["forum"]["status"] == "ok"
    refused = feeds["refused"]
    assert refused["status"] == "failed" and refused["consecutive_failures"] == 1, refused
    assert "entry refused" in refused["last_error"] and "\n" not in refused["last_error"], refused
    assert len(refused["last_error"]) <= 200
    table = run_watcher(config, "feeds").stdout
    assert any("refused" in line and "failed" in line for line in table.splitlines()), table
    assert any(line.startswith("refused: not stored: ") for line in table.splitlines()), table


class BuggyStore(Store):
    """A real Store that trips a bug (not a WatcherError) once in delivery and once in a poll job."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.tripped: set[str] = set()

    def _trip(self, where: str) -> None:
        if where not in self.tripped:
            self.tripped.add(where)
            raise RuntimeError(f"bug in {where}")

    def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        self._trip("claim_due")
        return super().claim_due(*args, **kwargs)

    def feed_state(self, name: str) -> Any:
        self._trip("feed_state")
        return super().feed_state(name)


def test_an_unexpected_error_never_ends_delivery_or_a_poll_job(
    tmp_path: Path, server: LoopbackServer, sink: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the delivery loop and in a feed's poll job, once each: both are logged with
    their traceback and counted, and the daemon goes on polling and delivering."""
    wire = Wire("wire")
    server.route("/wire.xml", wire)
    config_path = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"wire": server.url("/wire.xml")},
        interval="1s",
        smtp_port=sink.port,
    )
    config = load_config(config_path)
    store = BuggyStore(config.database_url)
    daemon = ServiceDaemon(make_watcher(config, store=store), str(config_path))

    def stop_when_delivered() -> None:
        try:
            wait_for(lambda: len(sink.messages) >= 3, "three emails", 60)
        finally:
            daemon.stop.set()

    threading.Thread(target=stop_when_delivered, daemon=True).start()
    assert daemon.run() == 0
    assert store.tripped == {"claim_due", "feed_state"}
    assert len(sink.messages) >= 3, "delivery stopped after the bug"
    assert daemon.unexpected == {"delivery": 1, "poll": 1}
    assert "channel desk: unexpected error (1 in delivery jobs so far); carrying on" in caplog.text
    assert "feed wire: unexpected error (1 in poll jobs so far); carrying on" in caplog.text
    assert "RuntimeError: bug in claim_due" in caplog.text


# -- 5: alert ids unique beyond one database -------------------------------------------------


def test_alert_ids_never_repeat_after_a_database_reset_and_survive_retries(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """Alerts of a reset database never reuse an earlier alert's id (a receiver dropping
    repeated ids would drop them all), and a retried alert keeps its id, on the webhook
    (webhook-id, payload id) and in the email (X-Watcher-Alert-Id, Message-ID)."""
    answers = [503]

    def hook(request: Any) -> None:
        reply(request, answers.pop(0) if answers else 200)

    server.route("/hook", hook)
    database = tmp_path / "watcher.db"
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{database}",
        {"forum": server.url("/forum-wire.xml")},
        smtp_port=sink.port,
        hooks={"hook": server.url("/hook")},
    )
    run_watcher(config, "poll")
    run_watcher(config, "outbox", "retry", "--all")
    run_watcher(config, "poll")
    first = server.requests_for("/hook")
    first_ids = [r.headers["webhook-id"] for r in first]
    assert len(first_ids) == len(set(first_ids)) + 1, "the retried alert should come again, once"
    assert [json.loads(r.body)["id"] for r in first] == first_ids
    mails = list(sink.messages)
    for mail in mails:
        assert mail.message["Message-ID"] == message_id(mail.message["X-Watcher-Alert-Id"], "watcher@example.org")

    database.unlink()
    server.clear_requests()
    run_watcher(config, "poll")
    again = {r.headers["webhook-id"] for r in server.requests_for("/hook")}
    assert len(again) == len(set(first_ids)) >= 1
    assert not again & set(first_ids), "a reset database reused alert ids"
    emailed = {m.message["X-Watcher-Alert-Id"] for m in sink.messages}
    assert len(emailed) == 2 * len(mails), "a reset database reused email alert ids"


def test_a_huge_title_reaches_a_webhook_cut_to_size(tmp_path: Path, server: LoopbackServer) -> None:
    """An entry with a 1 MB title and link: the webhook payload carries the title cut to
    1,000 characters, evidence cut with its spans still inside it, and no link."""
    title = "Jen Zhu Scott said " + "very " * 200_000
    link = "http://huge.invalid/" + "x" * 100_000
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>H</title>'
        f"<item><guid>huge</guid><title>{title}</title><link>{link}</link></item></channel></rss>"
    )
    server.respond("/huge.xml", feed.encode())
    server.respond("/hook", b"")
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"huge": server.url("/huge.xml")},
        hooks={"hook": server.url("/hook")},
    )
    run_watcher(config, "poll")
    [request] = server.requests_for("/hook")
    assert len(request.body) < 10_000, len(request.body)
    payload = json.loads(request.body)
    assert len(payload["entry"]["title"]) <= 1000 and payload["entry"]["title"].startswith("Jen Zhu Scott said very")
    assert payload["entry"]["title"].endswith("…") and payload["entry"]["link"] is None
    for evidence in payload["evidence"]:
        assert len(evidence["text"]) <= 1000
        assert all(0 <= a < b < len(evidence["text"]) for a, b in evidence["spans"]), evidence["spans"]


# -- 6, 7, 8, 12: channels one watcher lacks, slow receivers, the backlog of an outage ---------


class Hook:
    """A webhook receiver: answers ``status`` (changeable), and records what it got."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        #: (webhook-id, status answered), in order.
        self.answers: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        with self._lock:
            status = self.status
            self.answers.append((request.headers["webhook-id"], status))
        reply(request, status)

    def ids(self, status: int) -> list[str]:
        with self._lock:
            return [i for i, s in self.answers if s == status]


def outbox_rows(config: Path) -> list[dict[str, Any]]:
    return json_lines(run_watcher(config, "outbox", "--json", "--limit", "100000").stdout)


def hit_count(config: Path) -> int:
    return len(json_lines(run_watcher(config, "hits", "--json", "--since", "1d").stdout))


def assert_every_hit_reached_every_channel(config: Path, hook: Hook, channels: tuple[str, ...]) -> None:
    rows = outbox_rows(config)
    per_channel = {c: [r for r in rows if r["channel"] == c] for c in channels}
    hits = hit_count(config)
    for channel, channel_rows in per_channel.items():
        assert len(channel_rows) == hits, f"{channel}: {len(channel_rows)} alerts for {hits} hits"
        assert {r["status"] for r in channel_rows} == {"sent"}, [(r["status"], r["last_error"]) for r in channel_rows]
    if "hook" in per_channel:
        assert {r["alert_id"] for r in per_channel["hook"]} == set(hook.ids(200)), "a webhook alert never arrived"


def test_two_daemons_with_different_channels_lose_nothing(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """Two daemons on one database, one with an email and a webhook channel, the other with
    the email channel only, polling the same feed: every hit reaches both channels, whoever
    stored it, and no alert of the webhook is given up by the daemon that lacks it."""
    wire, hook = Wire("wire"), Hook()
    server.route("/wire.xml", wire)
    server.route("/hook", hook)
    database = f"sqlite:///{tmp_path}/watcher.db"
    feeds = {"wire": server.url("/wire.xml")}
    both = write_config(
        tmp_path / "both.yaml", database, feeds, interval="1s", smtp_port=sink.port, hooks={"hook": server.url("/hook")}
    )
    email_only = write_config(tmp_path / "email.yaml", database, feeds, interval="1s", smtp_port=sink.port)
    run_watcher(both, "db", "upgrade")
    daemons = [Daemon(both, tmp_path / "both.log"), Daemon(email_only, tmp_path / "email.log")]
    try:
        wait_for(lambda: len(wire.published) >= 8, "entries polled by the two daemons", 60)
    finally:
        for daemon in daemons:
            daemon.stop()
    run_watcher(both, "poll")  # what the last moments left due
    assert not [r for r in outbox_rows(both) if r["status"] == "dead"]
    assert_every_hit_reached_every_channel(both, hook, ("desk", "hook"))


def test_a_channel_taken_out_by_a_reload_gets_what_it_missed_when_put_back(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """SIGHUP without the webhook channel: its failed alerts wait (shown by `watcher
    outbox`, not dead). SIGHUP with it back: those alerts, and the hits matched while it
    was out, reach it."""
    wire, hook = Wire("wire"), Hook(status=503)
    server.route("/wire.xml", wire)
    server.route("/hook", hook)
    database = f"sqlite:///{tmp_path}/watcher.db"
    feeds = {"wire": server.url("/wire.xml")}
    hooks = {"hook": server.url("/hook")}
    config = write_config(tmp_path / "feeds.yaml", database, feeds, interval="1s", smtp_port=sink.port, hooks=hooks)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(hook.ids(503)) >= 2, "two failed webhook alerts", 60)
        write_config(config, database, feeds, interval="1s", smtp_port=sink.port)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.log.count("config reloaded") == 1, "the reload without the webhook", 30)
        hits_before = hit_count(config)
        wait_for(lambda: hit_count(config) >= hits_before + 2, "hits matched while the webhook is out", 60)
        rows = outbox_rows(config)
        waiting = [r for r in rows if r["channel"] == "hook"]
        assert waiting and {r["status"] for r in waiting} <= {"due", "failed"}, waiting

        hook.status = 200
        write_config(config, database, feeds, interval="1s", smtp_port=sink.port, hooks=hooks)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.log.count("config reloaded") == 2, "the reload with the webhook back", 30)

        def all_sent() -> bool:
            rows = outbox_rows(config)
            hook_rows = [r for r in rows if r["channel"] == "hook" and r["status"] == "sent"]
            return len(hook_rows) == len({r["alert_id"] for r in rows if r["channel"] == "desk"})

        wait_for(all_sent, "every hit, including those matched while it was out, sent to the webhook", 60)
    finally:
        daemon.stop()
    run_watcher(config, "poll")
    assert_every_hit_reached_every_channel(config, hook, ("desk", "hook"))


def trickle_answer(request: Any) -> None:
    """A receiver that answers one header byte per second, for as long as it is let."""
    request.close_connection = True
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
        if request.server.owner.stopping.wait(1.0):
            return
        request.wfile.write(bytes([byte]))
        request.wfile.flush()


def test_a_trickling_webhook_never_holds_up_email(tmp_path: Path, server: LoopbackServer, sink: MailSink) -> None:
    """A webhook answering one byte per second: email alerts go on arriving as entries come."""
    wire = Wire("wire")
    server.route("/wire.xml", wire)
    server.route("/hook", trickle_answer)
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"wire": server.url("/wire.xml")},
        interval="1s",
        smtp_port=sink.port,
        hooks={"hook": server.url("/hook")},
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(server.requests_for("/hook")) >= 1, "the webhook's first request", 60)
        sent = len(sink.messages)
        wait_for(lambda: len(sink.messages) >= sent + 2, "emails while the webhook trickles", 60)
    finally:
        daemon.stop()


def test_after_an_outage_the_backlog_goes_out_with_the_first_success(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """A webhook down (503) for its first alerts, then up: as soon as one alert gets through,
    the failed ones follow, oldest first, instead of waiting out their backoff."""
    wire, hook = Wire("wire"), Hook(status=503)
    server.route("/wire.xml", wire)
    server.route("/hook", hook)
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"wire": server.url("/wire.xml")},
        interval="1s",
        hooks={"hook": server.url("/hook")},
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(hook.ids(503)) >= 3, "three failed webhook alerts", 60)
        hook.status = 200
        failed = list(dict.fromkeys(hook.ids(503)))
        wait_for(lambda: set(failed) <= set(hook.ids(200)), "the failed alerts sent after recovery", 60)
    finally:
        daemon.stop()
    resent = [i for i in hook.ids(200) if i in failed]
    assert resent == failed, "the backlog did not go out oldest first"


# -- 4: a feed that makes up new ids on every request ----------------------------------------


class Churn:
    """Three stories whose guids are new on every request; with ``stamp``, the summary also
    changes on every request (a fetch counter), the title and date staying."""

    def __init__(self, name: str, stamp: bool = False) -> None:
        self.name = name
        self.stamp = stamp
        self.requests = 0

    def __call__(self, request: Any) -> None:
        self.requests += 1
        n = self.requests
        items = "".join(
            f"<item><guid>story-{i}-{n}</guid><title>Jen Zhu Scott said {self.name} story number {i}</title>"
            f"<pubDate>Wed, 02 Dec 2026 0{i}:00:00 GMT</pubDate>"
            f"<description>Story {i}{f', fetched {n} times' if self.stamp else ''}.</description></item>"
            for i in range(3)
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>C</title>{items}</channel></rss>'
        reply(request, 200, body.encode(), {"Content-Type": "application/rss+xml"})


def test_a_feed_making_up_new_ids_alerts_each_story_once_and_is_flagged(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """Two feeds that give their three stories new guids on every request (one with the same
    text, one with a summary that changes too), polled three times: each story alerts once,
    and `watcher feeds` says the feed's ids churn."""
    server.route("/same.xml", Churn("same"))
    server.route("/stamped.xml", Churn("stamped", stamp=True))
    config = write_config(
        tmp_path / "feeds.yaml",
        f"sqlite:///{tmp_path}/watcher.db",
        {"same": server.url("/same.xml"), "stamped": server.url("/stamped.xml")},
        smtp_port=sink.port,
    )
    settings = load_config(config)
    watcher = make_watcher(settings, workers=InlineWorkers(settings.speakers, settings.themes))
    try:
        for _ in range(3):
            watcher.poll()
            watcher.deliver()
    finally:
        watcher.close()
    subjects = sorted(str(m.message["Subject"]) for m in sink.messages)
    assert len(subjects) == 6, subjects
    feeds = {f["feed"]: f for f in json_lines(run_watcher(config, "feeds", "--json").stdout)}
    assert "new ids" in (feeds["same"]["last_error"] or ""), feeds["same"]
    table = run_watcher(config, "feeds").stdout
    assert "same: entry ids change between polls" in table, table


# -- 9: no request forgery through redirects -------------------------------------------------


def internal_but_127_0_0_1_is_public(address: str) -> str | None:
    return None if address == "127.0.0.1" else internal_address(address)


def test_a_redirect_to_an_internal_admin_port_is_refused_and_shown(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    """A public feed answering 301 (and another 302) to an internal admin port: nothing is
    asked of the admin port, nothing of it is emailed, the feed keeps its URL, and `watcher
    feeds` says why it failed. On loopback every address is internal, so 127.0.0.1 plays the
    public host and 127.0.0.2 the internal one (the fetcher's classification is its seam)."""
    with LoopbackServer(host="127.0.0.2") as admin:
        admin.respond("/admin/feed.xml", (DEMO / "forum-wire.xml").read_bytes())
        server.respond("/moved.xml", status=301, headers={"Location": admin.url("/admin/feed.xml")})
        server.respond("/found.xml", status=302, headers={"Location": admin.url("/admin/feed.xml")})
        config = load_config(
            write_config(
                tmp_path / "feeds.yaml",
                f"sqlite:///{tmp_path}/watcher.db",
                {"moved": server.url("/moved.xml"), "found": server.url("/found.xml")},
                smtp_port=sink.port,
            )
        )
        watcher = make_watcher(config, fetcher=Fetcher(internal=internal_but_127_0_0_1_is_public))
        try:
            results = watcher.poll()
            watcher.deliver()
        finally:
            watcher.close()
        assert admin.requests == [], "the internal server was asked"
    assert [r.error for r in results] == [
        "redirect to a loopback address refused: 127.0.0.2 is 127.0.0.2, the feed's URL is public"
    ] * 2
    assert sink.messages == []
    feeds = {f["feed"]: f for f in json_lines(run_watcher(tmp_path / "feeds.yaml", "feeds", "--json").stdout)}
    assert feeds["moved"]["url"] == server.url("/moved.xml"), "a refused 301 moved the feed"
    assert feeds["moved"]["status"] == "failed"
    table = run_watcher(tmp_path / "feeds.yaml", "feeds").stdout
    assert "moved: redirect to a loopback address refused" in table, table
