"""CLI output that a person or a script reads: listings survive strangers' text, JSON is complete."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import store_poll
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
    assert feed["name"] == "wire" and feed["status"] == "ok" and feed["entries_seen"] == 1
    assert feed["last_success_at"] == NOW.isoformat().replace("+00:00", "Z") and feed["last_error"].startswith(
        "XML error"
    )


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
