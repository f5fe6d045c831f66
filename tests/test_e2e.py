"""The whole service through its CLI, on real parts: a loopback feed server, an SMTP
server (aiosmtpd), a SQLite file and `watcher` run as a separate process."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, body_of, json_lines, run_watcher, wait_for, watcher_cmd, write_config
from tests.httpserver import LoopbackServer
from watcher.mailsink import MailSink

SAMPLES = ROOT / "watcher" / "demo_feeds"

WATCHES = """
speakers:
  - name: Jen Zhu Scott
    aliases: ["Zhu Scott", "Jen Zhu-Scott"]
themes:
  - name: Semiconductor export controls
    all_of: [["export control", "export controls"], ["GPU", "chip", "semiconductor"]]
  - name: Tech decoupling
    all_of: [["decoupling", "decouple"]]
"""


def e2e_config(tmp_path: Path, server: LoopbackServer, sink: MailSink, *, interval: str = "15m") -> Path:
    feeds = {"forum": server.url("/forum-wire.xml"), "notes": server.url("/policy-notes.xml")}
    database = f"sqlite:///{tmp_path}/watcher.db"
    return write_config(
        tmp_path / "feeds.yaml", database, feeds, interval=interval, watches=WATCHES, smtp_port=sink.port
    )


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(root=SAMPLES) as s:
        yield s


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "mail") as s:
        yield s


def test_two_polls_store_hits_send_one_email_each_and_use_conditional_get(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    config = e2e_config(tmp_path, server, sink)

    run_watcher(config, "poll")
    hits = json_lines(run_watcher(config, "hits", "--json").stdout)
    watches = {(h["title"], h["watch"]) for h in hits}
    assert ('Jen Zhu Scott calls for a "US plus China" model of AI development', "Jen Zhu Scott") in watches
    assert ("Chipmakers brace for new export controls on GPU chips", "Semiconductor export controls") in watches
    assert not any("bakery" in str(h["title"]) for h in hits)
    statement = next(h for h in hits if h["watch"] == "Jen Zhu Scott" and h["link"].endswith("/1"))
    assert statement["statement"] is True and "Jen Zhu Scott" in statement["evidence"]
    keys = {"entry_id", "link", "title", "watch", "kind", "statement", "score", "evidence", "feed"}
    assert keys | {"published", "detected_at"} <= set(statement)

    assert len(sink.messages) == len(hits)
    for message in (m.message for m in sink.messages):
        assert message["X-Watcher-Watch"] in {h["watch"] for h in hits}
        text = body_of(message, "plain")
        assert any(str(h["link"]) in text for h in hits)
    said = [m.message for m in sink.messages if m.message["Subject"].endswith("(statement)")]
    assert said and "US plus China" in body_of(said[0], "plain")

    server.clear_requests()
    run_watcher(config, "poll")
    assert len(sink.messages) == len(hits), "the second poll sent a duplicate"
    assert len(json_lines(run_watcher(config, "hits", "--json").stdout)) == len(hits)
    for path in ("/forum-wire.xml", "/policy-notes.xml"):
        [again] = server.requests_for(path)
        assert "if-none-match" in again.headers or "if-modified-since" in again.headers

    outbox = json_lines(run_watcher(config, "outbox", "--json").stdout)
    assert outbox and all(row["status"] == "sent" for row in outbox)


def test_first_poll_stores_backlog_silently_unless_asked(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    config = e2e_config(tmp_path, server, sink)
    config.write_text(config.read_text().replace("alert_on_first_poll: true", "alert_on_first_poll: false"))
    run_watcher(config, "poll")
    assert json_lines(run_watcher(config, "hits", "--json").stdout), "backlog hits are still stored"
    assert sink.messages == []


def test_the_daemon_polls_alerts_and_stops_cleanly_on_sigterm(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    config = e2e_config(tmp_path, server, sink, interval="2s")
    daemon = subprocess.Popen(
        watcher_cmd(config, "run"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: len(sink.messages) >= 4 or daemon.poll() is not None, "the daemon's alerts")
        assert len(sink.messages) >= 4, "the daemon did not alert"
        polls_before = len(server.requests)
        wait_for(lambda: len(server.requests) > polls_before, "another poll on the feeds' 2 s interval")
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, stderr
    assert "running: 2 feeds, 1 channel\n" in stderr
    # One line per poll cycle at the default level (issue 12, point 15); per feed only at -v.
    assert re.search(
        r"poll cycle: \d feeds? polled \(\d unchanged\), \d+ new entr(y|ies), \d+ hits?; next poll in \ds", stderr
    )
    assert "new or changed" not in stderr
    assert "stopping" in stderr

    hits = json_lines(run_watcher(config, "hits", "--json").stdout)
    outbox = json_lines(run_watcher(config, "outbox", "--json").stdout)
    assert len(outbox) == len(hits) == len(sink.messages)
    assert all(row["status"] == "sent" for row in outbox)
    assert len({m.message["Message-ID"] for m in sink.messages}) == len(sink.messages)


def test_a_gone_feed_is_disabled_until_the_operator_retries_it(
    tmp_path: Path, server: LoopbackServer, sink: MailSink
) -> None:
    config = e2e_config(tmp_path, server, sink)
    server.respond("/forum-wire.xml", status=410)
    assert run_watcher(config, "poll", ok=False).returncode == 3  # some feeds failed
    listing = run_watcher(config, "feeds").stdout
    assert "disabled" in listing and "HTTP 410 Gone" in listing

    server.clear_requests()
    assert run_watcher(config, "poll", ok=False).returncode == 3  # some feeds failed
    assert server.requests_for("/forum-wire.xml") == [], "a disabled feed was fetched again"

    server.respond("/forum-wire.xml", (SAMPLES / "forum-wire.xml").read_bytes())
    assert "forum: will be polled" in run_watcher(config, "feeds", "--retry", "forum").stdout
    run_watcher(config, "poll")
    assert json_lines(run_watcher(config, "feeds", "forum", "--json").stdout)[0]["status"] == "ok"
    assert any("forum-wire" in str(h["link"]) for h in json_lines(run_watcher(config, "hits", "--json").stdout))


GOOGLE_NEWS_ITEM = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>"Jen Zhu Scott" - Google News</title>
<item>
  <title>Jen Zhu Scott calls for a "US plus China" model of AI development - Forum Wire</title>
  <link>https://news.google.com/rss/articles/CBMiexample?oc=5</link>
  <guid isPermaLink="false">CBMiexample</guid>
  <description>&lt;a href="https://news.google.com/rss/articles/CBMiexample"&gt;Jen Zhu Scott calls for
  a "US plus China" model of AI development&lt;/a&gt;&amp;nbsp;&amp;nbsp;&lt;font color="#6f6f6f"&gt;Forum
  Wire&lt;/font&gt;</description>
  <source url="http://demo.invalid">Forum Wire</source>
</item></channel></rss>"""


def test_a_story_carried_by_two_feeds_alerts_once(tmp_path: Path, server: LoopbackServer, sink: MailSink) -> None:
    # The shipped feeds.yaml searches Google News and Bing News for the same name: a story in
    # both, and in the publisher's own feed, must not reach the analyst three times.
    server.respond("/google.xml", GOOGLE_NEWS_ITEM.encode(), headers={"Content-Type": "application/rss+xml"})
    config = e2e_config(tmp_path, server, sink)
    config.write_text(
        config.read_text().replace("feeds:\n", f'feeds:\n  - {{name: google, url: "{server.url("/google.xml")}"}}\n', 1)
    )
    run_watcher(config, "poll")
    hits = json_lines(run_watcher(config, "hits", "--json").stdout)
    story = [h for h in hits if str(h["title"]).startswith('Jen Zhu Scott calls for a "US plus China"')]
    assert {h["feed"] for h in story} == {"google", "forum"}, "the hit is recorded from both feeds"
    told = [m.message["X-Watcher-Watch"] for m in sink.messages if "US plus China" in m.message["Subject"]]
    assert sorted(told) == sorted({str(h["watch"]) for h in story}), "one alert per watch, not per feed"
    assert len(sink.messages) == len(hits) - 1
