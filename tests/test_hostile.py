"""Hostile and broken input through the real service: one ``watcher poll`` subprocess over a
loopback HTTP(S) server serving every case below next to two good feeds, an aiosmtpd sink
for the alerts, and ``watcher feeds`` to read what the operator sees.

What is proven, case by case (the ``CASES`` table): the feed ends in the expected status
with a one-line reason that says what is wrong, shown as such by ``watcher feeds``; and in
the same poll the good feeds are stored and alerted as if nothing happened. Also: no XXE
reads a file or a URL; Retry-After and 410 change what the next poll does; entries dated
in 2999, 1900 or not at all are stored and alerted; strangers' CR/LF, markup and
``javascript:``/``data:`` links never become headers, live HTML or clickable links.
"""

from __future__ import annotations

import gzip
import random
import re
import socket
import sqlite3
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from tests.conftest import ROOT, body_of, run_watcher
from tests.httpserver import LoopbackServer, endless, trickle
from watcher.config import load_config
from watcher.mailsink import MailSink, ReceivedMail
from watcher.service import Daemon, make_watcher
from watcher.store import Store
from watcher.types import FeedState

HOSTILE = ROOT / "tests" / "data" / "hostile"
DEMO = ROOT / "watcher" / "demo_feeds"
SECRET = "MARKER-SECRET-7f3a9c"
RETRY_AFTER = 7200


def rss(title: str, *, guid: str = "e-1", prolog: str = '<?xml version="1.0"?>') -> str:
    return (
        f'{prolog}\n<rss version="2.0"><channel><title>T</title><link>http://t.invalid/</link>'
        f"<description>d</description><item><guid>{guid}</guid><title>{title}</title>"
        f"<link>http://t.invalid/{guid}</link></item></channel></rss>\n"
    )


def quadratic_blowup() -> bytes:
    """One 50 kB internal entity referenced 50,000 times: ~2.5 GB if expanded."""
    prolog = f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "{"A" * 50_000}">]>'
    return rss("Jen Zhu Scott said " + "&a;" * 50_000, guid="blowup-1", prolog=prolog).encode()


@dataclass
class Env:
    """What a case's setup may use: the servers and the XXE targets."""

    http: LoopbackServer
    https: LoopbackServer
    secret_file: Path
    closed_port: int


@dataclass(frozen=True)
class Case:
    #: Feed name in the config.
    name: str
    #: Serves the case and returns the feed URL.
    setup: Callable[[Env], str]
    #: The feed's status after the poll.
    status: str
    #: A regex the one-line ``last_error`` must match (None: no error expected).
    reason: str | None
    #: Per-feed timeout (the total deadline of one fetch).
    timeout: str = "10s"


def canned(path: str, body: bytes, status: int = 200, **headers: str) -> Callable[[Env], str]:
    def setup(env: Env) -> str:
        env.http.respond(path, body, status=status, headers={k.replace("_", "-"): v for k, v in headers.items()})
        return env.http.url(path)

    return setup


def routed(path: str, handler: Callable[..., None]) -> Callable[[Env], str]:
    def setup(env: Env) -> str:
        env.http.route(path, handler)
        return env.http.url(path)

    return setup


def redirect_loop(env: Env) -> str:
    env.http.respond("/loop-a", status=302, headers={"Location": "/loop-b"})
    env.http.respond("/loop-b", status=302, headers={"Location": "/loop-a"})
    return env.http.url("/loop-a")


def xxe(env: Env) -> str:
    body = f"""<?xml version="1.0"?>
<!DOCTYPE rss [
  <!ENTITY file SYSTEM "file://{env.secret_file}">
  <!ENTITY ping SYSTEM "{env.http.url("/xxe-ping")}">
  <!ENTITY % remote SYSTEM "{env.http.url("/xxe.dtd")}">
  %remote;
]>
<rss version="2.0"><channel><title>XXE &file;</title><link>http://xxe.invalid/</link><description>&file;</description>
<item><guid>xxe-1</guid><title>Jen Zhu Scott said &file; &ping;</title><description>&file; &ping;</description></item>
</channel></rss>
"""
    env.http.respond("/xxe-ping", f"{SECRET}-via-url".encode())
    env.http.respond("/xxe.dtd", f'<!ENTITY leak "{SECRET}-via-dtd">'.encode())
    env.http.respond("/xxe.xml", body.encode(), headers={"Content-Type": "application/rss+xml"})
    return env.http.url("/xxe.xml")


#: How a feed's XML error starts (feedparser's exception name, or watcher's own wording).
XML_ERROR = r"(SAXParseException: |XML error )"
LATIN1_RSS = rss("Caf\xe9 cr\xe8me: Jen Zhu Scott said bonjour", guid="latin-1").encode("latin-1")
#: A UTF-8 feed with one stray byte: the good UTF-8 around it must survive.
BAD_BYTE_RSS = (
    rss("Caf\xe9 cr\xe8me: Jen Zhu Scott said bonjour \xff", guid="bad-byte")
    .encode("utf-8")
    .replace(b"\xc3\xbf", b"\xff")
)
GARBAGE = bytes(random.Random(5).getrandbits(8) for _ in range(20_000))
#: A 64 MiB run of zeros gzipped to ~64 kB: 1000 times its size once decompressed.
BOMB = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
#: Bigger than the parser's cap for a gzip body sent without Content-Encoding.
BIG_BOMB = gzip.compress(b"\0" * (80 << 20), compresslevel=9)

CASES = [
    Case(
        "billion laughs",
        canned("/laughs.xml", (HOSTILE / "billion_laughs.xml").read_bytes()),
        "ok",
        rf"^{XML_ERROR}.*undefined entity$",
    ),
    Case("quadratic blowup", canned("/blowup.xml", quadratic_blowup()), "ok", rf"^{XML_ERROR}"),
    Case("xxe", xxe, "ok", rf"^{XML_ERROR}.*undefined entity$"),
    Case(
        "gzip bomb",
        canned("/bomb.xml", BOMB, Content_Encoding="gzip", Content_Type="application/rss+xml"),
        "failed",
        r"^response larger than 10 MiB$",
    ),
    Case(
        "gzip bomb unlabelled",
        canned("/bomb2.xml", BIG_BOMB, Content_Type="application/rss+xml"),
        "failed",
        r"^not a feed: gzip body expands beyond \d+ bytes$",
    ),
    Case("huge body", routed("/endless.xml", endless()), "failed", r"^response larger than 10 MiB$"),
    Case(
        "huge declared length",
        canned("/declared.xml", b"<rss>", Content_Length=str(10**10)),
        "failed",
        r"^response larger than 10 MiB$",
    ),
    Case(
        "trickle",
        routed("/trickle.xml", trickle(rss("slow").encode(), interval=1.0)),
        "failed",
        r"^timed out after 2s$",
        timeout="2s",
    ),
    Case(
        "redirect loop",
        lambda env: redirect_loop(env),
        "failed",
        r"^redirect loop at http://127\.0\.0\.1:\d+/loop-a$",
    ),
    Case(
        "html page",
        canned("/page", (HOSTILE / "html_page.html").read_bytes(), Content_Type="text/html"),
        "failed",
        r"^not a feed: looks like an HTML page$",
    ),
    Case(
        "binary garbage",
        canned("/garbage.xml", GARBAGE, Content_Type="application/octet-stream"),
        "failed",
        r"^not a feed: ",
    ),
    Case(
        "missing charset",
        canned("/latin1.xml", LATIN1_RSS, Content_Type="text/xml"),
        "ok",
        r"CharacterEncodingOverride: document declared as us-ascii, but parsed as windows-1252",
    ),
    Case(
        "wrong charset",
        canned("/wrong-charset.xml", LATIN1_RSS, Content_Type="application/rss+xml; charset=utf-8"),
        "ok",
        r"CharacterEncodingOverride",
    ),
    Case(
        "one bad byte",
        canned("/bad-byte.xml", BAD_BYTE_RSS, Content_Type="application/rss+xml; charset=utf-8"),
        "ok",
        r"^invalid UTF-8: 1 bad byte sequence replaced$",
    ),
    Case(
        "bogus charset",
        canned("/bogus-charset.xml", rss("Caf\xe9 x").encode(), Content_Type="text/xml; charset=klingon"),
        "ok",
        r"CharacterEncodingOverride: document declared as klingon, but parsed as utf-8",
    ),
    Case(
        "lying utf-16 charset",
        canned("/utf16-lie.xml", rss("x").encode(), Content_Type="text/xml; charset=utf-16"),
        "ok",
        r"CharacterEncodingOverride: document declared as utf-16, but parsed as utf-8",
    ),
    Case("empty 200", canned("/empty.xml", b""), "failed", r"^empty body$"),
    Case("whitespace 200", canned("/blank.xml", b" \r\n\t\n"), "failed", r"^empty body$"),
    Case("dns failure", lambda env: "http://feed.invalid/rss.xml", "failed", r"^could not resolve host feed\.invalid$"),
    Case("refused", lambda env: f"http://127.0.0.1:{env.closed_port}/rss.xml", "failed", r"^connection refused$"),
    Case("tls error", lambda env: env.https.url("/feed.xml"), "failed", r"^TLS error: certificate verify failed"),
    Case("404", canned("/missing.xml", b"nope", status=404), "failed", r"^HTTP 404 Not Found$"),
    Case(
        "500",
        canned("/broken.xml", b"Traceback (most recent call last): ...", status=500),
        "failed",
        r"^HTTP 500 Internal Server Error$",
    ),
    Case(
        "429",
        canned("/limited.xml", b"slow down", status=429, Retry_After=str(RETRY_AFTER)),
        "failed",
        rf"^HTTP 429 Too Many Requests \(retry after {RETRY_AFTER}s\)$",
    ),
    Case("410", canned("/gone.xml", b"gone", status=410), "disabled", r"^HTTP 410 Gone$"),
]


@dataclass
class Polled:
    """The state after one `watcher poll` over every case."""

    config: Path
    database_url: str
    http: LoopbackServer
    sink: MailSink
    states: dict[str, FeedState]
    feeds_output: str
    poll_stderr: str


def free_port_refusing() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: connecting is refused


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Polled]:
    tmp = tmp_path_factory.mktemp("hostile")
    secret_file = tmp / "secret.txt"
    secret_file.write_text(SECRET + "-via-file\n")
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with LoopbackServer(root=DEMO) as http, LoopbackServer(root=DEMO, tls=tls) as https, MailSink(tmp / "mail") as sink:
        env = Env(http, https, secret_file, free_port_refusing())
        http.respond("/clock.xml", (HOSTILE / "clock.xml").read_bytes())
        http.respond(
            "/strangers.atom",
            (HOSTILE / "strangers.atom").read_bytes(),
            headers={"Content-Type": "application/atom+xml"},
        )
        feeds = [f'  - {{name: "{c.name}", url: "{c.setup(env)}", timeout: {c.timeout}}}' for c in CASES] + [
            f'  - {{name: forum, url: "{http.url("/forum-wire.xml")}"}}',
            f'  - {{name: notes, url: "{http.url("/policy-notes.xml")}"}}',
            f'  - {{name: clock, url: "{http.url("/clock.xml")}"}}',
            f'  - {{name: strangers, url: "{http.url("/strangers.atom")}"}}',
        ]
        database_url = f"sqlite:///{tmp}/watcher.db"
        config = tmp / "feeds.yaml"
        config.write_text(
            f"""
database: {database_url}
defaults: {{interval: 15m, timeout: 10s, alert_on_first_poll: true}}
feeds:
{chr(10).join(feeds)}
speakers:
  - name: Jen Zhu Scott
themes:
  - name: Semiconductor export controls
    all_of: [["export control", "export controls"], ["GPU", "chip", "semiconductor"]]
smtp: {{host: 127.0.0.1, port: {sink.port}, security: none, from: watcher@example.org}}
channels:
  - {{name: desk, type: email, to: [analyst@example.org]}}
""",
            encoding="utf-8",
        )
        poll = run_watcher(config, "poll", ok=False)
        assert poll.returncode == 3, poll.stderr  # some feeds failed, as they should
        store = Store(database_url)
        try:
            states = {s.name: s for s in store.feed_states()}
        finally:
            store.close()
        print("\nhostile feeds after one poll (status: last error):")
        for case in CASES:
            print(f"  {case.name}: {states[case.name].status}: {states[case.name].last_error}")
        yield Polled(config, database_url, http, sink, states, run_watcher(config, "feeds").stdout, poll.stderr)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_hostile_feed_ends_with_a_clear_one_line_state(polled: Polled, case: Case) -> None:
    """The feed's status and reason, as stored and as `watcher feeds` prints them."""
    state = polled.states[case.name]
    assert state.status == case.status, (state.status, state.last_error)
    if case.reason is None:
        assert state.last_error is None
        return
    assert state.last_error is not None and "\n" not in state.last_error and "\r" not in state.last_error
    assert re.search(case.reason, state.last_error), state.last_error
    assert len(state.last_error) < 300, state.last_error
    [row] = [line for line in polled.feeds_output.splitlines() if re.search(rf"\b{re.escape(case.name)}\s*│", line)]
    assert state.status in row, row
    problem = f"{case.name}: {state.last_error}"  # the reason in full, below the table
    assert any(line.startswith(problem) for line in polled.feeds_output.splitlines()), polled.feeds_output


def test_good_feeds_in_the_same_poll_are_unharmed(polled: Polled) -> None:
    """Next to all of the above, the two good feeds are stored and alerted normally."""
    for name, entries in (("forum", 4), ("notes", 3)):
        state = polled.states[name]
        assert (state.status, state.last_error) == ("ok", None)
        assert state.entries_seen >= entries
    feeds = {m.message["X-Watcher-Feed"] for m in polled.sink.messages}
    assert {"forum", "notes"} <= feeds
    assert "Traceback" not in polled.poll_stderr


def test_no_external_entity_is_read(polled: Polled) -> None:
    """XXE: neither the local file nor the loopback URLs named by the DTD are read; the
    marker secret is nowhere in the stored entries, hits or sent mail."""
    assert polled.http.requests_for("/xxe-ping") == []
    assert polled.http.requests_for("/xxe.dtd") == []
    db = sqlite3.connect(polled.database_url.removeprefix("sqlite:///"))
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert "xxe-1" in dump, "the XXE entry itself is stored"
    assert SECRET not in dump
    assert all(SECRET.encode() not in m.raw for m in polled.sink.messages)


def test_entity_bombs_are_not_expanded(polled: Polled) -> None:
    """Billion laughs and quadratic blowup: the entry is stored with its references left
    unexpanded (at most the size of the body), not gigabytes of text."""
    store = Store(polled.database_url)
    try:
        hits = {h.feed: h for h in store.list_hits() if h.feed in ("billion laughs", "quadratic blowup")}
    finally:
        store.close()
    assert set(hits) == {"billion laughs", "quadratic blowup"}
    assert "lollol" not in hits["billion laughs"].title
    assert len(hits["quadratic blowup"].title) <= len(quadratic_blowup())


def test_retry_after_is_honoured_by_the_next_poll(polled: Polled) -> None:
    """429 Retry-After: 7200 puts the next poll two hours out (not the 15m interval), and the
    daemon's poll job does not touch the feed before then."""
    state = polled.states["429"]
    assert state.next_poll_at is not None and state.last_polled_at is not None
    assert state.next_poll_at - state.last_polled_at >= timedelta(seconds=RETRY_AFTER)
    before = len(polled.http.requests_for("/limited.xml"))
    daemon = Daemon(make_watcher(load_config(polled.config), upgrade=False), str(polled.config))
    try:
        daemon.poll_if_due("429")
    finally:
        daemon.watcher.close()
    assert len(polled.http.requests_for("/limited.xml")) == before


def test_gone_feed_is_disabled_and_not_fetched_again(polled: Polled) -> None:
    """410 Gone disables the feed: a later poll does not request it and says why."""
    before = len(polled.http.requests_for("/gone.xml"))
    watcher_ = make_watcher(load_config(polled.config), upgrade=False)
    try:
        [result] = watcher_.poll(["410"])
        state = watcher_.store.feed_state("410")
    finally:
        watcher_.close()
    assert len(polled.http.requests_for("/gone.xml")) == before
    assert result.error is not None and result.error.startswith("disabled: HTTP 410 Gone")
    assert state.status == "disabled"


def test_entries_dated_far_future_distant_past_or_undated_are_stored_and_alerted(polled: Polled) -> None:
    """Clock cases: 2999, 1900 and no date at all are stored as such, matched, and alerted."""
    store = Store(polled.database_url)
    try:
        hits = {h.entry_id: h for h in store.list_hits() if h.feed == "clock"}
    finally:
        store.close()
    assert set(hits) == {"clock-future", "clock-past", "clock-none"}
    assert hits["clock-future"].published == datetime(2999, 1, 1, tzinfo=UTC)
    assert hits["clock-past"].published == datetime(1900, 1, 1, tzinfo=UTC)
    assert hits["clock-none"].published is None
    assert all(h.hit.watch == "Jen Zhu Scott" for h in hits.values())
    mailed = [m for m in polled.sink.messages if m.message["X-Watcher-Feed"] == "clock"]
    assert len(mailed) == 3
    assert polled.states["clock"].status == "ok"


def _header_block(mail: ReceivedMail) -> str:
    return mail.raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")


def test_strangers_text_cannot_inject_headers_markup_or_links(polled: Polled) -> None:
    """CR/LF in a title never starts a header (no Bcc: added, no extra recipient), markup
    from titles and summaries arrives escaped, and javascript:/data: links are not anchors."""
    mails = [m for m in polled.sink.messages if m.message["X-Watcher-Feed"] == "strangers"]
    assert len(mails) == 2
    for mail in mails:
        headers = _header_block(mail)
        assert not re.search(r"(?im)^(bcc|x-injected|subject: fake)", headers.replace("\r\n ", " ")), headers
        assert mail.message["Bcc"] is None and mail.message["X-Injected"] is None
        assert mail.rcpt_tos == ("analyst@example.org",)
        assert "\n" not in str(mail.message["Subject"]) and "\r" not in str(mail.message["Subject"])
        html = body_of(mail.message, "html")
        assert "<script" not in html.lower() and "<img" not in html.lower()
        assert not re.search(r"""href\s*=\s*["']?\s*(javascript|data):""", html, flags=re.IGNORECASE), html
    first = next(m for m in mails if "hello" in str(m.message["Subject"]))
    html = body_of(first.message, "html")
    assert "&lt;script&gt;" in html, "the title's markup is shown as text, escaped"


def test_undeclared_or_wrong_charset_still_reads_the_text(polled: Polled) -> None:
    """Latin-1 bytes with no charset, or labelled UTF-8, are read as Windows-1252: the stored
    title has its accents (and the hit its evidence), not mojibake or a failure."""
    store = Store(polled.database_url)
    try:
        titles = {h.feed: h.title for h in store.list_hits() if h.feed in ("missing charset", "wrong charset")}
    finally:
        store.close()
    assert titles == dict.fromkeys(("missing charset", "wrong charset"), "Café crème: Jen Zhu Scott said bonjour")


def test_one_bad_byte_keeps_the_rest_of_a_utf8_feed(polled: Polled) -> None:
    """One stray byte in a UTF-8 feed becomes U+FFFD; the accents around it stay as sent,
    not decoded as Windows-1252 (mojibake)."""
    store = Store(polled.database_url)
    try:
        [title] = [h.title for h in store.list_hits() if h.feed == "one bad byte"]
    finally:
        store.close()
    assert title == "Café crème: Jen Zhu Scott said bonjour \ufffd"
