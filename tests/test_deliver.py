"""Delivery through real servers on loopback: an aiosmtpd mail sink and an HTTP receiver.

The outbox is a real Store on a SQLite file; the clock is a parameter, so retries are
driven by jumping ``now`` to the next due time instead of sleeping.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import responses
import standardwebhooks
import trustme

from tests.conftest import body_of, store_poll
from tests.httpserver import LoopbackServer
from watcher.config import ChannelSettings, Config, Defaults, SmtpSettings
from watcher.deliver import (
    MAX_ATTEMPTS,
    Channel,
    EmailChannel,
    WebhookChannel,
    flush_outbox,
    make_channels,
    retry_delay,
    send_test,
    signing_key,
)
from watcher.errors import ConfigError, DeliveryError
from watcher.mailsink import MailSink
from watcher.render import message_id
from watcher.store import Store
from watcher.types import Article, Evidence, Hit, OutboxItem

pytestmark = [
    # aiosmtpd warns whenever AUTH is offered without STARTTLS; the plain and implicit-TLS
    # test servers do that on purpose.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OWNER = "test-host:1"
SENDER = "watcher@watcher.example"
SECRET = "correct horse battery staple"


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/watcher.db")
    s.upgrade()
    s.sync_feeds([("wire", "https://news.example/rss")], NOW)
    yield s
    s.close()


def add_hits(
    store: Store,
    count: int,
    *,
    channels: tuple[str, ...] = ("desk",),
    due: datetime = NOW,
    prefix: str = "a",
    watch: str = "Jen Zhu Scott",
    age: timedelta = timedelta(0),
) -> None:
    """Record ``count`` articles with one hit each, routed to ``channels``, due at ``due``."""
    articles = [
        Article(
            key=f"{prefix}{i}",
            entry_id=f"{prefix}{i}",
            link=f"https://news.example/{prefix}{i}?a=1&b=2",
            title=f"Story {prefix}{i} <b>&</b>",
            summary="",
            content="x",
            published=NOW - age - timedelta(minutes=i),
            content_hash=f"h{prefix}{i}",
        )
        for i in range(count)
    ]
    hit = Hit(
        watch=watch,
        kind="speaker",
        statement=True,
        score=100,
        evidence=(Evidence("content", "Jen Zhu Scott said <script>x</script>.", ((0, 13),)),),
    )
    store_poll(store, "wire", articles, {a.key: [hit] for a in articles}, NOW, channels=channels, due=due)


def email_settings(name: str = "desk", digest: timedelta | None = None) -> ChannelSettings:
    return ChannelSettings(
        name=name,
        type="email",
        to=("analyst@example.org",),
        digest=digest,
        watches=None,
        statements_only=False,
        url=None,
        secret=None,
    )


def smtp_settings(sink: MailSink, **kw: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": sink.host,
        "port": sink.port,
        "security": "none",
        "username": None,
        "password": None,
        "sender": SENDER,
        "timeout": timedelta(seconds=5),
    }
    values.update(kw)
    return SmtpSettings(**values)


def webhook_settings(url: str, name: str = "hook", secret: str = SECRET) -> ChannelSettings:
    return ChannelSettings(
        name=name, type="webhook", to=(), digest=None, watches=None, statements_only=False, url=url, secret=secret
    )


def status_of(store: Store) -> dict[int, str]:
    return {i.id: i.status for i in store.list_outbox()}


def drain(
    store: Store,
    channels: dict[str, Any],
    start: datetime = NOW,
    before: Callable[[int], None] | None = None,
    limit: int = 50,
) -> list[datetime]:
    """Flush at ``start``, then at each next due time, until nothing is pending; return the times."""
    times: list[datetime] = []
    now: datetime | None = start
    while now is not None and len(times) < limit:
        if before is not None:
            before(len(times))
        flush_outbox(store, channels, now=now, owner=OWNER)
        times.append(now)
        pending = [i.next_attempt_at for i in store.list_outbox() if i.status in ("due", "failed")]
        now = min(pending, default=None)
    return times


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as s:
        yield s


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


# -- a loopback webhook receiver -------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server that records every request and answers from a script, then 200."""

    url: str
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def verified(self, secret: str = SECRET) -> list[dict[str, Any]]:
        """Every request body, each checked with standardwebhooks' own verifier."""
        webhook = standardwebhooks.Webhook(signing_key(secret))
        return [webhook.verify(r.body, r.headers) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.requests.append(Received(dict(self.headers.items()), body))
            status, headers = state.script.pop(0) if state.script else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            reply = b"" if status < 300 else f"status {status} <details>".encode()
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=s3cr3t-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- email: immediate and digest -------------------------------------------------------


def test_immediate_alerts_arrive_as_proper_emails(store: Store, sink: MailSink) -> None:
    add_hits(store, 2)
    channels = {"desk": EmailChannel(email_settings(), smtp_settings(sink))}
    report = flush_outbox(store, channels, now=NOW, owner=OWNER)
    assert (report.sent, report.failed, report.dead) == (2, 0, 0)
    assert set(status_of(store).values()) == {"sent"}
    assert len(sink.messages) == 2
    for mail in sink.messages:
        msg = mail.message
        assert mail.mail_from == SENDER and mail.rcpt_tos == ("analyst@example.org",)
        assert msg["Subject"].startswith("[watcher] Jen Zhu Scott said: Story a") or "(statement)" in msg["Subject"]
        assert msg["X-Watcher-Watch"] == "Jen Zhu Scott" and msg["X-Watcher-Feed"] == "wire"
        assert msg["List-ID"] == "watcher desk <desk.watcher.watcher.example>"
        assert msg["Date"] == "Wed, 25 Nov 2026 12:00:00 +0000"
        text = body_of(msg, "plain")
        html = body_of(msg, "html")
        assert "*Jen Zhu Scott* said <script>x</script>." in text
        assert "<mark>Jen Zhu Scott</mark> said &lt;script&gt;x&lt;/script&gt;." in html
        assert "<script>" not in html and "&lt;b&gt;&amp;&lt;/b&gt;" in html
        assert 'href="https://news.example/a' in html and "&amp;b=2" in html
    ids = {i.alert_id for i in store.list_outbox()}
    assert {m.message["Message-ID"] for m in sink.messages} == {message_id(i, SENDER) for i in ids}
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).sent == 0


def test_digest_rows_go_out_together_as_one_email_when_the_period_ends(store: Store, sink: MailSink) -> None:
    end = NOW + timedelta(hours=1)
    add_hits(store, 2, channels=("daily",), due=end)
    add_hits(
        store, 1, channels=("daily",), due=end, prefix="t", watch="US-China AI collaboration", age=timedelta(hours=1)
    )
    channels = {"daily": EmailChannel(email_settings("daily", digest=timedelta(hours=1)), smtp_settings(sink))}
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).sent == 0
    assert sink.messages == []
    report = flush_outbox(store, channels, now=end, owner=OWNER)
    assert report.sent == 3 and len(report.deliveries) == 1
    [mail] = sink.messages
    assert (
        mail.message["Subject"].lstrip() == "[watcher] 3 new alerts: Jen Zhu Scott (2), US-China AI collaboration (1)"
    )
    text = body_of(mail.message, "plain")
    assert text.index("== Jen Zhu Scott (2) ==") < text.index("Story a0") < text.index("Story a1")
    assert text.index("Story a1") < text.index("== US-China AI collaboration (1) ==") < text.index("Story t0")
    assert flush_outbox(store, channels, now=end + timedelta(hours=1), owner=OWNER).sent == 0
    assert len(sink.messages) == 1


def test_eml_files_are_written_when_the_sink_has_a_directory(store: Store, tmp_path: Path) -> None:
    add_hits(store, 2)
    with MailSink(tmp_path / "mail") as sink:
        flush_outbox(store, {"desk": EmailChannel(email_settings(), smtp_settings(sink))}, now=NOW, owner=OWNER)
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 2 and {m.path for m in sink.messages} == set(files)
    assert files[0].read_bytes() == sink.messages[0].raw


# -- email: TLS and AUTH ---------------------------------------------------------------


def test_starttls_then_auth(store: Store, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    add_hits(store, 1)
    with MailSink(tls_context=server_tls, require_starttls=True, auth=("watcher", "pw")) as sink:
        smtp = smtp_settings(sink, security="starttls", username="watcher", password="pw")
        channel = EmailChannel(email_settings(), smtp, ssl_context=client_tls)
        assert flush_outbox(store, {"desk": channel}, now=NOW, owner=OWNER).sent == 1
    [mail] = sink.messages
    assert mail.tls and mail.login == "watcher"


def test_implicit_tls_with_auth(store: Store, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    add_hits(store, 1)
    with MailSink(tls_context=server_tls, implicit_tls=True, auth=("watcher", "pw")) as sink:
        smtp = smtp_settings(sink, security="ssl", username="watcher", password="pw")
        channel = EmailChannel(email_settings(), smtp, ssl_context=client_tls)
        assert send_test(channel, NOW).startswith("250 ")
    [mail] = sink.messages
    assert mail.tls and mail.login == "watcher" and mail.message["X-Watcher-Test"] == "yes"


def test_wrong_password_is_a_permanent_error(
    store: Store, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    add_hits(store, 1)
    with MailSink(tls_context=server_tls, auth=("watcher", "pw")) as sink:
        smtp = smtp_settings(sink, security="starttls", username="watcher", password="wrong")
        channel = EmailChannel(email_settings(), smtp, ssl_context=client_tls)
        assert flush_outbox(store, {"desk": channel}, now=NOW, owner=OWNER).dead == 1
    [row] = store.list_outbox()
    assert "535" in (row.last_error or "") and "wrong" not in (row.last_error or "")


def test_starttls_is_never_skipped_when_the_server_lacks_it(sink: MailSink) -> None:
    channel = EmailChannel(email_settings(), smtp_settings(sink, security="starttls"))
    with pytest.raises(DeliveryError) as caught:
        send_test(channel, NOW)
    assert not caught.value.transient and "STARTTLS" in str(caught.value)
    assert sink.messages == []


def test_an_untrusted_certificate_is_refused(server_tls: ssl.SSLContext) -> None:
    with MailSink(tls_context=server_tls) as sink:
        channel = EmailChannel(email_settings(), smtp_settings(sink, security="starttls"))  # system trust only
        with pytest.raises(DeliveryError) as caught:
            send_test(channel, NOW)
    assert caught.value.transient and "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert sink.messages == []


# -- email: outages and refusals -------------------------------------------------------


def test_smtp_down_then_refusing_then_up_every_alert_arrives_exactly_once(store: Store, sink: MailSink) -> None:
    add_hits(store, 3)
    channels = {"desk": EmailChannel(email_settings(), smtp_settings(sink))}
    sink.stop()

    def world(step: int) -> None:
        if step == 2:  # the server comes back, but still busy for one message
            sink.start()
            sink.fail_next(1, "421 4.3.2 busy, try later")

    times = drain(store, channels, before=world)
    assert set(status_of(store).values()) == {"sent"}
    assert len(sink.messages) == 3
    assert len({m.message["Message-ID"] for m in sink.messages}) == 3
    assert times[1] - times[0] >= timedelta(minutes=4 * 0.8)  # backoff, not a busy loop
    assert all(row.attempts >= 2 for row in store.list_outbox())  # every one failed first


def test_first_failure_reason_and_backoff_are_recorded(store: Store, sink: MailSink) -> None:
    add_hits(store, 2)
    sink.stop()
    report = flush_outbox(store, {"desk": EmailChannel(email_settings(), smtp_settings(sink))}, now=NOW, owner=OWNER)
    assert report.failed == 2
    rows = store.list_outbox("failed")
    assert all(NOW + timedelta(minutes=3.2) <= r.next_attempt_at <= NOW + timedelta(minutes=4.8) for r in rows)
    reasons = sorted(r.last_error or "" for r in rows)
    assert "cannot talk to the server" in reasons[0] and "ConnectionRefusedError" in reasons[0]
    assert "not tried: the channel failed earlier in this run" in reasons[1]


def test_a_5xx_reply_is_permanent_and_retry_makes_it_due_again(store: Store, sink: MailSink) -> None:
    add_hits(store, 1)
    channels = {"desk": EmailChannel(email_settings(), smtp_settings(sink))}
    sink.fail_next(1, "554 5.7.1 message rejected")
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).dead == 1
    [row] = store.list_outbox("dead")
    assert "554 5.7.1 message rejected" in (row.last_error or "")
    assert sink.messages == []
    assert store.retry(None, NOW) == 1
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).sent == 1
    assert len(sink.messages) == 1


def test_retries_give_up_after_about_a_day(store: Store) -> None:
    add_hits(store, 1)
    down = SmtpSettings(
        host="127.0.0.1",
        port=free_port(),
        security="none",
        username=None,
        password=None,
        sender=SENDER,
        timeout=timedelta(seconds=2),
    )
    times = drain(store, {"desk": EmailChannel(email_settings(), down)})
    [row] = store.list_outbox()
    assert row.status == "dead" and row.attempts == MAX_ATTEMPTS == len(times)
    assert (row.last_error or "").startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert timedelta(hours=18) < times[-1] - times[0] < timedelta(hours=30)


def test_backoff_schedule() -> None:
    minutes = [retry_delay(n).total_seconds() / 60 for n in range(1, MAX_ATTEMPTS)]
    assert minutes == [4, 8, 16, 32, 64, 128, 256, 480, 480]
    assert retry_delay(1, jitter=0) == timedelta(minutes=3.2) and retry_delay(1, jitter=0.999) < timedelta(minutes=4.8)
    assert retry_delay(3, retry_after=90) == retry_delay(3), "a short Retry-After never shortens the backoff"
    assert retry_delay(3, retry_after=7200) == timedelta(hours=2)
    assert retry_delay(3, retry_after=10**9) == timedelta(days=1)


def test_rows_of_a_channel_this_sender_lacks_wait_for_one_that_has_it(store: Store, sink: MailSink) -> None:
    # Another watcher's channel, or one a reload took out: its rows are not this sender's.
    add_hits(store, 1, channels=("gone",))
    desk = EmailChannel(email_settings(), smtp_settings(sink))
    report = flush_outbox(store, {"desk": desk}, now=NOW, owner=OWNER)
    assert report.deliveries == ()
    [row] = store.list_outbox()
    assert (row.status, row.attempts, row.last_error) == ("due", 0, None)
    back = {"gone": EmailChannel(email_settings("gone"), smtp_settings(sink))}
    assert flush_outbox(store, back, now=NOW + timedelta(days=3), owner=OWNER).sent == 1
    assert len(sink.messages) == 1


# -- at-least-once ---------------------------------------------------------------------


def dead_owner() -> str:
    """A claim owner tag of this host whose process has exited, as after a SIGKILL."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return f"{socket.gethostname()}:{int(child.stdout)}"


def test_a_crash_after_claiming_loses_nothing(store: Store, sink: MailSink) -> None:
    add_hits(store, 3)
    store.claim_due(NOW, owner=dead_owner(), lease=timedelta(minutes=5), channels=["desk"])  # then the process died
    report = flush_outbox(
        store,
        {"desk": EmailChannel(email_settings(), smtp_settings(sink))},
        now=NOW + timedelta(seconds=1),
        owner=OWNER,
    )
    assert report.sent == 3 and len(sink.messages) == 3


def test_a_crash_after_sending_resends_with_the_same_message_id(store: Store, sink: MailSink) -> None:
    add_hits(store, 1)
    channel = EmailChannel(email_settings(), smtp_settings(sink))
    claimed = store.claim_due(NOW, owner=dead_owner(), lease=timedelta(minutes=5), channels=["desk"])
    channel.send(claimed, NOW)  # the server accepted; the process died before mark_sent
    assert flush_outbox(store, {"desk": channel}, now=NOW + timedelta(seconds=1), owner=OWNER).sent == 1
    first, second = sink.messages
    assert first.message["Message-ID"] == second.message["Message-ID"]  # the documented duplicate


def test_stop_releases_claimed_rows_untouched(store: Store) -> None:
    add_hits(store, 3)
    stop = threading.Event()

    class Stopping:
        name, digest = "desk", False

        def send(self, items: list[OutboxItem], now: datetime, *, test: bool = False) -> str:
            stop.set()  # a signal arrives while the first alert is being sent
            return "250 ok"

    report = flush_outbox(store, {"desk": cast(Channel, Stopping())}, now=NOW, owner=OWNER, stop=stop)
    assert (report.sent, report.released) == (1, 2)
    rows = store.list_outbox("due")
    assert len(rows) == 2 and all(r.attempts == 0 for r in rows)
    assert store.claim_due(NOW, owner=OWNER, lease=timedelta(minutes=5), channels=["desk"]) != []


def test_an_unexpected_error_keeps_the_alert_and_spares_other_channels(store: Store, sink: MailSink) -> None:
    add_hits(store, 1, channels=("buggy", "desk"))

    class Buggy:
        name, digest = "buggy", False

        def send(self, items: list[OutboxItem], now: datetime, *, test: bool = False) -> str:
            raise KeyError("oops")

    channels = {"buggy": cast(Channel, Buggy()), "desk": EmailChannel(email_settings(), smtp_settings(sink))}
    report = flush_outbox(store, channels, now=NOW, owner=OWNER)
    assert (report.sent, report.failed) == (1, 1)
    [row] = store.list_outbox("failed")
    assert row.channel == "buggy" and "internal error: KeyError" in (row.last_error or "")


# -- webhook ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
def test_webhook_posts_a_signed_payload(store: Store, receiver: Receiver, secret: str) -> None:
    add_hits(store, 2, channels=("hook",))
    channels = {"hook": WebhookChannel(webhook_settings(receiver.url, secret=secret))}
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).sent == 2
    payloads = receiver.verified(secret)
    assert [p["type"] for p in payloads] == ["watcher.hit.v1"] * 2
    assert [r.headers["webhook-id"] for r in receiver.requests] == [p["id"] for p in payloads]
    assert {p["id"] for p in payloads} == {i.alert_id for i in store.list_outbox()}
    assert payloads[0]["entry"]["link"].startswith("https://news.example/a")
    assert payloads[0]["evidence"][0]["spans"] == [[0, 13]]


def test_a_plain_secret_verifies_as_raw_key_bytes(receiver: Receiver) -> None:
    send_test(WebhookChannel(webhook_settings(receiver.url)), NOW)
    [request] = receiver.requests
    payload = standardwebhooks.Webhook(SECRET.encode()).verify(request.body, request.headers)
    assert payload["type"] == "watcher.test.v1"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(signing_key("another secret")).verify(request.body, request.headers)


def test_webhook_503_then_200_is_accepted_exactly_once(store: Store, receiver: Receiver) -> None:
    add_hits(store, 1, channels=("hook",))
    receiver.script = [(503, {}), (503, {})]
    drain(store, {"hook": WebhookChannel(webhook_settings(receiver.url))})
    assert set(status_of(store).values()) == {"sent"}
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # retries keep the id


def test_a_success_makes_the_channels_failed_alerts_due_oldest_first(store: Store, receiver: Receiver) -> None:
    # An outage's backlog goes out with the first alert that gets through, not hours later.
    add_hits(store, 3, channels=("hook",))
    receiver.script = [(503, {})]
    channels = {"hook": WebhookChannel(webhook_settings(receiver.url))}
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).failed == 3
    add_hits(store, 1, channels=("hook",), prefix="new", due=NOW + timedelta(minutes=1))
    assert flush_outbox(store, channels, now=NOW + timedelta(minutes=1), owner=OWNER).sent == 4
    by_alert = {i.alert_id: s.entry_id for i in store.list_outbox() if (s := i.stored)}
    received = [by_alert[r.headers["webhook-id"]] for r in receiver.requests]
    assert received == ["a0", "new0", "a0", "a1", "a2"]


def trickle_status(request: Any) -> None:
    """Answers one byte of its status line every half second, until the server stops."""
    request.close_connection = True
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
        if request.server.owner.stopping.wait(0.5):
            return
        request.wfile.write(bytes([byte]))
        request.wfile.flush()


def test_a_send_ends_at_its_deadline_and_one_hanging_send_is_enough(store: Store) -> None:
    # Each byte comes well within the read timeout: only a total deadline ends the send.
    with LoopbackServer() as server:
        server.route("/hook", trickle_status)
        add_hits(store, 2, channels=("hook",))
        channels = {"hook": WebhookChannel(webhook_settings(server.url("/hook")))}
        report = flush_outbox(store, channels, now=NOW, owner=OWNER, deadline=timedelta(seconds=1))
        assert report.failed == 2
        first, second = sorted(store.list_outbox(), key=lambda i: i.id)
        assert first.last_error == "channel 'hook': no complete answer within 1s"
        assert "not tried" in (second.last_error or "")
        later = NOW + timedelta(hours=1)
        assert flush_outbox(store, channels, now=later, owner=OWNER, deadline=timedelta(seconds=1)).failed == 2
        assert "an earlier send has had no complete answer" in (store.list_outbox()[-1].last_error or "")
        assert len(server.requests_for("/hook")) == 1, "a second send was started while the first hangs"
    # Once the receiver lets go, the abandoned send ends too (and stops blocking the channel).
    deadline = time.monotonic() + 30
    while any(t.name == "send-hook" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the abandoned send outlived its receiver"
        time.sleep(0.05)


def test_webhook_429_retry_after_is_honoured(store: Store, receiver: Receiver) -> None:
    add_hits(store, 1, channels=("hook",))
    receiver.script = [(429, {"Retry-After": "3600"})]
    channels = {"hook": WebhookChannel(webhook_settings(receiver.url))}
    assert flush_outbox(store, channels, now=NOW, owner=OWNER).failed == 1
    [row] = store.list_outbox("failed")
    assert NOW + timedelta(seconds=3600) <= row.next_attempt_at < NOW + timedelta(seconds=3660)
    assert flush_outbox(store, channels, now=NOW + timedelta(seconds=3599), owner=OWNER).sent == 0
    assert flush_outbox(store, channels, now=NOW + timedelta(seconds=3661), owner=OWNER).sent == 1
    assert len(receiver.requests) == 2


def test_a_short_retry_after_does_not_burn_the_attempts(store: Store, receiver: Receiver) -> None:
    add_hits(store, 1, channels=("hook",))
    receiver.script = [(503, {"Retry-After": "5"})] * 20
    channels = {"hook": WebhookChannel(webhook_settings(receiver.url))}
    for seconds in range(0, 300, 5):  # the daemon's delivery tick, for five minutes
        flush_outbox(store, channels, now=NOW + timedelta(seconds=seconds), owner=OWNER)
    [row] = store.list_outbox("failed")
    assert row.attempts <= 2, "one try, then the first backoff of about 4 minutes, not a try every 5 s"


def test_webhook_4xx_is_dead_with_the_answer(store: Store, receiver: Receiver) -> None:
    add_hits(store, 1, channels=("hook",))
    receiver.script = [(422, {})]
    assert flush_outbox(store, {"hook": WebhookChannel(webhook_settings(receiver.url))}, now=NOW, owner=OWNER).dead == 1
    [row] = store.list_outbox("dead")
    assert "HTTP 422" in (row.last_error or "") and "status 422 <details>" in (row.last_error or "")
    assert "s3cr3t-token" not in (row.last_error or "")


@pytest.mark.parametrize("where", ["/hook?token=s3cr3t-token", "/services/T0001/B0001/s3cr3t-token"])
def test_webhook_network_errors_never_show_the_token(store: Store, where: str) -> None:
    """Tokens ride in the query or, as with Slack and Discord hooks, in the path."""
    add_hits(store, 1, channels=("hook",))
    url = f"http://127.0.0.1:{free_port()}{where}"
    assert flush_outbox(store, {"hook": WebhookChannel(webhook_settings(url))}, now=NOW, owner=OWNER).failed == 1
    [row] = store.list_outbox("failed")
    assert "ConnectionError" in (row.last_error or "") and "http://127.0.0.1:" in (row.last_error or "")
    assert "s3cr3t-token" not in (row.last_error or "")


def test_webhook_tls_is_verified(server_tls: ssl.SSLContext, ca: trustme.CA, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        channel = WebhookChannel(webhook_settings(f"https://127.0.0.1:{server.server_address[1]}/hook"))
        with pytest.raises(DeliveryError) as caught:
            send_test(channel, NOW)
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.transient and "SSLError" in str(caught.value)


# -- webhook: request-level cases (responses) ------------------------------------------

HOOK = "https://hooks.example/in"


@pytest.mark.parametrize(
    ("answer", "transient", "retry_after"),
    [
        ({"status": 204}, None, None),
        ({"status": 408}, True, None),
        ({"status": 500}, True, None),
        ({"status": 503, "headers": {"Retry-After": "Wed, 25 Nov 2026 12:10:00 GMT"}}, True, 600.0),
        ({"status": 429, "headers": {"Retry-After": "soon"}}, True, None),
        ({"status": 302, "headers": {"Location": "https://elsewhere.example/?key=k"}}, False, None),
        ({"status": 401}, False, None),
        ({"status": 410}, False, None),
        ({"body": requests.ConnectTimeout("connect timed out")}, True, None),
        ({"body": requests.ReadTimeout("read timed out")}, True, None),
        ({"body": requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED")}, True, None),
    ],
)
@responses.activate
def test_webhook_answers_map_to_the_table(
    answer: dict[str, Any], transient: bool | None, retry_after: float | None
) -> None:
    responses.add(responses.POST, HOOK, **answer)
    channel = WebhookChannel(webhook_settings(HOOK), clock=lambda: NOW)
    if transient is None:
        assert send_test(channel, NOW) == "HTTP 204 No Content"
        return
    with pytest.raises(DeliveryError) as caught:
        send_test(channel, NOW)
    assert caught.value.transient is transient
    assert caught.value.retry_after == retry_after
    assert "key=k" not in str(caught.value)


@responses.activate
def test_webhook_request_is_bounded_and_tls_verified() -> None:
    responses.add(responses.POST, HOOK, status=200)
    send_test(WebhookChannel(webhook_settings(HOOK)), NOW)
    [call] = responses.calls
    sent = vars(call.request)["req_kwargs"]  # responses keeps the arguments of the call here
    assert sent["timeout"] == (5.0, 15.0)
    assert sent["verify"] not in (False, None)  # a CA bundle from the environment is fine
    assert json.loads(cast(bytes, call.request.body))["type"] == "watcher.test.v1"


# -- wiring ----------------------------------------------------------------------------


def config(channels: tuple[ChannelSettings, ...], smtp: SmtpSettings | None) -> Config:
    return Config(
        path="feeds.yaml",
        database_url="sqlite://",
        defaults=Defaults(),
        feeds=(),
        speakers=(),
        themes=(),
        smtp=smtp,
        channels=channels,
    )


def test_make_channels_builds_one_channel_per_configured_channel(sink: MailSink) -> None:
    channels = make_channels(config((email_settings(), webhook_settings(HOOK)), smtp_settings(sink)))
    assert isinstance(channels["desk"], EmailChannel) and isinstance(channels["hook"], WebhookChannel)
    assert send_test(channels["desk"], NOW).startswith("250 ")


def test_an_email_channel_without_smtp_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs an `smtp` section"):
        make_channels(config((email_settings(),), None))


def test_an_unusable_whsec_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="secret"):
        make_channels(config((webhook_settings(HOOK, secret="whsec_"),), None))


class SlowFirstSend:
    """A channel whose first send outlasts the claim lease: while it hangs, another sender
    flushes six (simulated) minutes later."""

    digest = False

    def __init__(self, name: str, on_first_send: Callable[[], object] | None) -> None:
        self.name, self.on_first_send = name, on_first_send
        self.sent: list[str] = []

    def send(self, items: Sequence[OutboxItem], now: datetime, *, test: bool = False) -> str:
        if not self.sent and self.on_first_send is not None:
            hook, self.on_first_send = self.on_first_send, None
            hook()
        self.sent.extend(i.alert_id for i in items)
        return "250 OK"


def test_a_flush_that_outlives_its_lease_leaves_rows_another_sender_took_over(store: Store) -> None:
    add_hits(store, 5)
    other = SlowFirstSend("desk", lambda: None)
    slow = SlowFirstSend(
        "desk", lambda: flush_outbox(store, {"desk": other}, now=NOW + timedelta(minutes=6), owner="other:2")
    )
    flush_outbox(store, {"desk": slow}, now=NOW, owner=OWNER)
    sent = slow.sent + other.sent
    # Only the one send that was already under way when its lease ran out can repeat.
    assert sorted(set(sent)) == sorted(i.alert_id for i in store.list_outbox())
    assert len(sent) - len(set(sent)) <= 1
    assert all(i.status == "sent" for i in store.list_outbox())
