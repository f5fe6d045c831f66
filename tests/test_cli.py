"""CLI output that a person or a script reads: listings survive strangers' text, JSON is complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, json_lines, store_poll, wait_for
from tests.httpserver import LoopbackServer
from watcher.cli import cli
from watcher.store import Store
from watcher.types import Article, Evidence, Hit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOSTILE = "[/] [bold red]Breaking[/bold red] [link=javascript:x]click[/link]"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path}/w.db\n"
        "feeds: [{name: wire, url: 'https://news.example/rss'}]\n"
        "speakers: [{name: Jen Zhu Scott}]\n"
        "smtp: {host: 127.0.0.1, port: 2525, from: w@example.org}\n"
        "channels: [{name: desk, type: email, to: [a@example.org]}]\n",
        encoding="utf-8",
    )
    store = Store(f"sqlite:///{tmp_path}/w.db")
    store.upgrade()
    store.sync_feeds([("wire", "https://news.example/rss")], NOW)
    article = Article(
        key="k",
        entry_id="k",
        link="https://news.example/k",
        title=HOSTILE,
        summary="",
        content="",
        published=NOW,
        content_hash="h",
    )
    hit = Hit(
        watch="Jen Zhu Scott", kind="speaker", statement=False, score=100, evidence=(Evidence("title", HOSTILE, ()),)
    )
    store_poll(store, "wire", [article], {"k": [hit]}, NOW, problem=f"XML error {HOSTILE}")
    store.close()
    return path


@pytest.mark.parametrize("command", [["hits", "--since", "3650d"], ["outbox"], ["feeds"]])
def test_listings_show_strangers_text_literally(config: Path, command: list[str]) -> None:
    result = CliRunner().invoke(cli, ["-c", str(config), *command], obj={})
    assert result.exit_code == 0, result.output
    assert "[bold red]Breaking" in result.output or "[/] [bold" in result.output


def test_feeds_json_has_each_feeds_state(config: Path) -> None:
    result = CliRunner().invoke(cli, ["-c", str(config), "feeds", "--json"], obj={})
    assert result.exit_code == 0, result.output
    [feed] = [json.loads(line) for line in result.output.splitlines()]
    assert feed["feed"] == "wire" and feed["status"] == "ok" and feed["entries_seen"] == 1
    assert feed["last_success_at"] == "2026-11-25T12:00:00Z" and feed["last_error"].startswith("XML error")


def test_validate_shows_a_webhook_by_its_host_only(tmp_path: Path) -> None:
    """Slack- and Discord-style hook URLs carry their token in the path."""
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "channels: [{name: hook, type: webhook, url: 'https://hooks.example.org/services/T01/B02/pathTok3n', "
        "secret: s}]\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["-c", str(path), "validate"], obj={})
    assert result.exit_code == 0, result.output
    assert "hook: webhook to https://hooks.example.org/…" in result.output
    assert "pathTok3n" not in result.output


MATCH_CONFIG = """\
speakers: [{name: Jen Zhu Scott}]
themes:
  - name: Semiconductor export controls
    all_of: [[chip, GPU], [export control, curb]]
"""
MATCH_FEED = """\
<rss version="2.0"><channel><title>t</title>
<item><guid>a</guid><title>New export controls hit GPU makers</title><description>Markets fell.</description></item>
<item><guid>b</guid><title>Markets fell</title><description>Officials met on Monday. The weather was fine.
 GPU makers were calm. Export controls came up later.</description></item>
</channel></rss>
"""


def test_match_explain_says_why_each_watch_hit_or_did_not(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text(MATCH_CONFIG, encoding="utf-8")
    (tmp_path / "feed.xml").write_text(MATCH_FEED, encoding="utf-8")
    args = ["-c", str(tmp_path / "feeds.yaml"), "match", "--explain", str(tmp_path / "feed.xml")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    first, second = result.output.split("== ")[1:]
    assert "Semiconductor export controls (theme): HIT, score 100" in first
    assert "site: title, one sentence, score 100" in first
    assert "Jen Zhu Scott (speaker): no hit" in first
    assert "Semiconductor export controls (theme): no hit" in second
    assert "“GPU” (summary, lead)" in second and "“Export controls” (summary, body)" in second
    assert "no hit: the groups are never met in one sentence" in second


def test_match_explain_json_and_watch_filter(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text(MATCH_CONFIG, encoding="utf-8")
    (tmp_path / "feed.xml").write_text(MATCH_FEED, encoding="utf-8")
    base = ["-c", str(tmp_path / "feeds.yaml"), "match"]
    result = CliRunner().invoke(
        cli, [*base, "--explain", "--json", "--watch", "Semiconductor export controls", str(tmp_path / "feed.xml")]
    )
    assert result.exit_code == 0, result.output
    verdicts = [json.loads(line) for line in result.output.splitlines()]
    assert [(v["entry_id"], v["hit"]) for v in verdicts] == [("a", True), ("b", False)]
    assert verdicts[0]["score"] == 100 and verdicts[1]["reasons"][-1].startswith("no hit")
    unknown = CliRunner().invoke(cli, [*base, "--watch", "Chips", str(tmp_path / "feed.xml")])
    assert unknown.exit_code == 2
    assert "no speaker or theme named 'Chips'" in unknown.output


# -- through the installed command, as a user meets it (issue 12) -------------------------

SAMPLES = ROOT / "watcher" / "demo_feeds"


def watcher_run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(root=SAMPLES) as s:
        yield s


def feeds_config(tmp_path: Path, feeds: dict[str, str], extra: str = "") -> Path:
    path = tmp_path / "feeds.yaml"
    listed = "".join(f"  - {{name: {name}, url: '{url}'}}\n" for name, url in feeds.items())
    path.write_text(
        f"database: sqlite:///{tmp_path}/w.db\n"
        "defaults: {interval: 15m, timeout: 10s}\n"
        f"feeds:\n{listed}"
        "speakers: [{name: Jen Zhu Scott, aliases: [Jen Zhu-Scott]}]\n" + extra,
        encoding="utf-8",
    )
    return path


PATHS = {"forum": "/forum-wire.xml", "notes": "/policy-notes.xml"}


@pytest.mark.parametrize(
    ("broken", "status"),
    [((), 0), (("notes",), 3), (("forum", "notes"), 1)],
    ids=["all ok", "some failed", "nothing worked"],
)
def test_poll_exit_status_tells_all_ok_from_some_failed_from_nothing_worked(
    tmp_path: Path, server: LoopbackServer, broken: tuple[str, ...], status: int
) -> None:
    for name in broken:
        server.respond(PATHS[name], b"<html>oops</html>", status=500)
    config = feeds_config(tmp_path, {name: server.url(path) for name, path in PATHS.items()})

    text = watcher_run("-c", str(config), "poll", cwd=tmp_path)
    assert text.returncode == status, text.stderr
    if broken:
        assert f"{len(broken)} of 2 feeds not polled" in text.stderr

    again = watcher_run("-c", str(config), "poll", "--json", "--force", cwd=tmp_path)
    assert again.returncode == status, again.stderr
    *feeds, delivery = json_lines(again.stdout)  # stdout stays JSON lines whatever the outcome
    assert {r["feed"]: r["status"] for r in feeds} == {
        name: "failed" if name in broken else "not modified" for name in PATHS
    }
    assert set(delivery) == {"delivery"}


def test_poll_honours_retry_after_and_backoff_until_forced(tmp_path: Path, server: LoopbackServer) -> None:
    """Cron runs `watcher poll` every few minutes: a server asking for an hour's rest gets it."""
    server.respond("/busy.xml", b"busy", status=503, headers={"Retry-After": "3600"})
    config = feeds_config(tmp_path, {"busy": server.url("/busy.xml"), "forum": server.url("/forum-wire.xml")})
    for _ in range(3):
        result = watcher_run("-c", str(config), "poll", cwd=tmp_path)
        assert result.returncode == 3, result.stderr
    assert len(server.requests_for("/busy.xml")) == 1
    assert len(server.requests_for("/forum-wire.xml")) == 3
    assert "backing off until" in result.stdout and "poll --force" in result.stdout

    forced = watcher_run("-c", str(config), "poll", "--force", "--feed", "busy", cwd=tmp_path)
    assert forced.returncode == 1, forced.stderr
    assert len(server.requests_for("/busy.xml")) == 2


def on_terminal(*args: str, cwd: Path, columns: int = 80) -> str:
    """Run watcher with its output on a terminal ``columns`` wide; return what it showed."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "watcher", *args],
        stdout=child_fd,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT), "TERM": "xterm"},
    )
    os.close(child_fd)
    shown = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    assert process.wait(timeout=60) == 0
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode()).replace("\r\n", "\n")


def test_feeds_fits_80_columns_and_says_everything(tmp_path: Path, server: LoopbackServer) -> None:
    server.respond("/busy.xml", b"busy", status=503, headers={"Retry-After": "3600"})
    long_name = "Ars Technica - Tech Policy and Everything Else"
    config = feeds_config(tmp_path, {long_name: server.url("/busy.xml"), "forum": server.url("/forum-wire.xml")})
    watcher_run("-c", str(config), "poll", cwd=tmp_path)

    shown = on_terminal("-c", str(config), "feeds", cwd=tmp_path)
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), shown
    assert "…" not in shown, "something was cut"
    flat = " ".join(shown.split())
    assert "HTTP 503 Service Unavailable (retry after 3600s) (1 failure in a row)" in flat
    assert "in 1h" in flat or "in 59m" in flat  # when it is polled next, readable

    story = watcher_run("-c", str(config), "feeds", long_name, cwd=tmp_path).stdout
    assert f"url:          {server.url('/busy.xml')}" in story
    assert "last error:   HTTP 503 Service Unavailable (retry after 3600s)" in story
    assert "backing off after 1 failure in a row" in story and "last success: never" in story
    forum = watcher_run("-c", str(config), "feeds", "forum", cwd=tmp_path).stdout
    assert 'validators:   ETag "' in forum and "Last-Modified" in forum
    assert "its interval, 15m, after the last poll" in forum


def test_read_only_commands_need_only_the_database(config: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # no feeds.yaml here
    env = {"WATCHER_DATABASE_URL": f"sqlite:///{tmp_path}/w.db", "WATCHER_CONFIG": ""}
    for command in (["hits", "--since", "3650d"], ["outbox"], ["feeds"], ["feeds", "wire"]):
        result = watcher_run(*command, cwd=elsewhere, env=env)
        assert result.returncode == 0, (command, result.stderr)
        assert "wire" in result.stdout or "Jen Zhu Scott" in result.stdout


def test_hits_show_when_published_and_when_found(config: Path, tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path}/w.db").close()
    shown = watcher_run("-c", str(config), "hits", "--since", "3650d", cwd=tmp_path).stdout
    assert "published 2026-11-25 12:00 UTC, found 2026-11-25 12:00 UTC" in shown
    [hit] = json_lines(watcher_run("-c", str(config), "hits", "--since", "3650d", "--json", cwd=tmp_path).stdout)
    assert hit["published"] == hit["detected_at"] == "2026-11-25T12:00:00Z"


def test_outbox_retry_refuses_unknown_and_sent_rows_and_shows_when_sent(config: Path, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/w.db")
    [row] = store.list_outbox()
    store.mark_dead([row.id], "550 no such user")
    unknown = watcher_run("-c", str(config), "outbox", "retry", "99", cwd=tmp_path)
    assert unknown.returncode == 1 and "no outbox row 99" in unknown.stderr
    assert store.list_outbox()[0].status == "dead", "nothing changes when one id is wrong"

    one = watcher_run("-c", str(config), "outbox", "retry", str(row.id), cwd=tmp_path)
    assert one.returncode == 0 and "1 row due again" in one.stdout

    store.mark_sent([row.id], NOW)
    store.close()
    sent = watcher_run("-c", str(config), "outbox", "retry", str(row.id), cwd=tmp_path)
    assert sent.returncode == 1 and f"row {row.id} was sent 2026-11-25 12:00 UTC" in sent.stderr
    assert "sent 2026-11-25 12:00 UTC" in watcher_run("-c", str(config), "outbox", cwd=tmp_path).stdout
    [listed] = json_lines(watcher_run("-c", str(config), "outbox", "--json", cwd=tmp_path).stdout)
    assert listed["status"] == "sent" and listed["sent_at"] == "2026-11-25T12:00:00Z"


@pytest.mark.parametrize("command", [["poll"], ["hits"], ["feeds"], ["outbox"], ["outbox", "retry", "--all"]])
def test_verbose_works_after_the_command_too(config: Path, tmp_path: Path, command: list[str]) -> None:
    result = watcher_run("-c", str(config), *command, "-v", cwd=tmp_path)
    assert "No such option" not in result.stderr
    assert result.returncode in (0, 1, 3), result.stderr


def test_json_outputs_spell_feeds_and_times_one_way(tmp_path: Path, server: LoopbackServer) -> None:
    config = feeds_config(
        tmp_path,
        {"forum": server.url("/forum-wire.xml")},
        "smtp: {host: 127.0.0.1, port: 1, from: w@example.org}\n"
        "channels: [{name: desk, type: email, to: [a@example.org]}]\n"
        "defaults: {alert_on_first_poll: true}\n",
    )
    config.write_text(config.read_text().replace("defaults: {interval: 15m, timeout: 10s}\n", ""))
    outputs = {
        command: json_lines(watcher_run("-c", str(config), command, "--json", cwd=tmp_path).stdout)
        for command in ("poll", "feeds", "hits", "outbox")
    }
    assert all(outputs.values()), outputs
    for command in ("feeds", "hits", "outbox"):
        assert all(row["feed"] == "forum" and "name" not in row for row in outputs[command]), command
    assert outputs["poll"][0]["feed"] == "forum"
    times = [
        value
        for rows in outputs.values()
        for row in rows
        for key, value in row.items()
        if key.endswith("_at") or key in ("published", "waiting_until")
    ]
    assert times and all(t is None or (t.endswith("Z") and "+00:00" not in t) for t in times), times


def test_help_is_not_cut_at_80_columns(tmp_path: Path) -> None:
    commands = on_terminal("--help", cwd=tmp_path).split("Commands:")[1]
    assert "..." not in commands and "…" not in commands, commands


def test_validate_and_run_warn_when_hits_would_alert_no_one(tmp_path: Path, server: LoopbackServer) -> None:
    bare = feeds_config(tmp_path, {"forum": server.url("/forum-wire.xml")})
    checked = watcher_run("-c", str(bare), "validate", cwd=tmp_path)
    assert checked.returncode == 0
    assert "warning: no channels: hits are stored" in checked.stderr and "alert no one" in checked.stderr

    partial = tmp_path / "partial.yaml"
    partial.write_text(
        bare.read_text()
        + "themes: [{name: Chips, all_of: [[chip]]}]\n"
        + "smtp: {host: 127.0.0.1, port: 1, from: w@example.org}\n"
        + "channels: [{name: desk, type: email, to: [a@example.org], watches: [Jen Zhu Scott]}]\n",
        encoding="utf-8",
    )
    warned = watcher_run("-c", str(partial), "validate", cwd=tmp_path).stderr
    assert 'no channel takes the hits of "Chips"' in warned and "Jen Zhu Scott" not in warned

    log = tmp_path / "run.log"
    with log.open("w") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watcher", "-c", str(bare), "run"],
            cwd=tmp_path,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        wait_for(lambda: "running:" in log.read_text(), "the daemon to start")
        wait_for(lambda: "alert no one" in log.read_text(), "the warning at start")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


ERROR_PAGE = b"""<!DOCTYPE html><html><head><title>502 Bad Gateway</title>
<style>body { font-family: sans-serif; }</style><script>track();</script></head>
<body><h1>Bad&nbsp;Gateway</h1><p>The upstream server is not answering.</p></body></html>"""


def test_webhooks_name_their_channel_and_a_failed_send_test_shows_a_clean_excerpt(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.respond("/hooks/a", status=204)
    server.respond("/hooks/b", status=204)
    config = feeds_config(
        tmp_path,
        {"forum": server.url("/forum-wire.xml")},
        "defaults: {alert_on_first_poll: true}\n"
        "channels:\n"
        f"  - {{name: desk-hook, type: webhook, url: '{server.url('/hooks/a')}', secret: s}}\n"
        f"  - {{name: ops-hook, type: webhook, url: '{server.url('/hooks/b')}', secret: s}}\n",
    )
    config.write_text(config.read_text().replace("defaults: {interval: 15m, timeout: 10s}\n", ""))
    assert watcher_run("-c", str(config), "poll", cwd=tmp_path).returncode == 0
    for path, channel in (("/hooks/a", "desk-hook"), ("/hooks/b", "ops-hook")):
        payloads = [json.loads(r.body) for r in server.requests_for(path)]
        assert payloads and all(p["channel"] == channel for p in payloads)

    server.respond("/hooks/b", ERROR_PAGE, status=502, headers={"Content-Type": "text/html"})
    failed = watcher_run("-c", str(config), "send-test", "ops-hook", cwd=tmp_path)
    assert failed.returncode == 1
    assert "HTTP 502 Bad Gateway: 502 Bad Gateway Bad Gateway The upstream server is not answering." in failed.stderr
    assert "<" not in failed.stderr and "track()" not in failed.stderr and "font-family" not in failed.stderr


def test_a_json_feed_is_polled_like_any_feed(tmp_path: Path, server: LoopbackServer) -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Forum Wire (JSON)",
        "items": [
            {
                "id": "https://forum.example/1",
                "url": "https://forum.example/1",
                "title": "Jen Zhu Scott calls for a US plus China model",
                "content_html": "<p>“The question is not US or China,” Jen Zhu Scott said.</p>",
                "date_published": "2026-11-24T09:30:00Z",
            }
        ],
    }
    server.respond("/feed.json", json.dumps(feed).encode(), headers={"Content-Type": "application/feed+json"})
    config = feeds_config(tmp_path, {"wire": server.url("/feed.json")})
    polled = watcher_run("-c", str(config), "poll", "--json", cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    assert json_lines(polled.stdout)[0]["hits"] == 1
    [hit] = json_lines(watcher_run("-c", str(config), "hits", "--json", "--since", "3650d", cwd=tmp_path).stdout)
    assert hit["watch"] == "Jen Zhu Scott" and hit["published"] == "2026-11-24T09:30:00Z"


def test_a_healthy_file_feed_shows_no_error(tmp_path: Path) -> None:
    config = feeds_config(tmp_path, {"local": str(SAMPLES / "forum-wire.xml")})
    assert watcher_run("-c", str(config), "poll", cwd=tmp_path).returncode == 0
    [feed] = json_lines(watcher_run("-c", str(config), "feeds", "--json", cwd=tmp_path).stdout)
    assert (feed["status"], feed["last_error"]) == ("ok", None)


def test_renaming_a_feed_keeps_its_history(tmp_path: Path, server: LoopbackServer) -> None:
    config = feeds_config(
        tmp_path, {"forum": server.url("/forum-wire.xml")}, "defaults: {alert_on_first_poll: false}\n"
    )
    config.write_text(config.read_text().replace("defaults: {interval: 15m, timeout: 10s}\n", ""))
    assert watcher_run("-c", str(config), "poll", cwd=tmp_path).returncode == 0
    hits = json_lines(watcher_run("-c", str(config), "hits", "--json", cwd=tmp_path).stdout)
    assert hits

    config.write_text(config.read_text().replace("name: forum,", "name: Forum Wire,"))
    server.clear_requests()
    assert watcher_run("-c", str(config), "poll", cwd=tmp_path).returncode == 0
    [request] = server.requests_for("/forum-wire.xml")
    assert "if-none-match" in request.headers, "the renamed feed was fetched as a new one"
    [feed] = json_lines(watcher_run("-c", str(config), "feeds", "--json", cwd=tmp_path).stdout)
    assert feed["feed"] == "Forum Wire" and feed["entries_seen"] == 4
    again = json_lines(watcher_run("-c", str(config), "hits", "--json", cwd=tmp_path).stdout)
    assert len(again) == len(hits) and {h["feed"] for h in again} == {"Forum Wire"}
