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
