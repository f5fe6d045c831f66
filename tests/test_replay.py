"""Replay and retention: a new watch run over the stored articles records its hits and sends
nothing unless asked, then each once; old articles go, but never what a feed still lists
nor what has an alert to send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import json_lines, run_watcher
from tests.httpserver import LoopbackServer
from watcher.store import PollRecord, Store
from watcher.types import Alert, Article, Evidence, Hit

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "watcher" / "demo_feeds"
THEME = "US-China AI"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(root=SAMPLES) as s:
        s.respond("/hook", status=204)
        yield s


def test_a_new_theme_replayed_records_its_hits_and_alerts_only_when_asked_each_once(
    tmp_path: Path, server: LoopbackServer
) -> None:
    config = tmp_path / "feeds.yaml"
    base = (
        f"database: sqlite:///{tmp_path}/w.db\n"
        "defaults: {alert_on_first_poll: true}\n"
        "feeds:\n"
        f"  - {{name: forum, url: '{server.url('/forum-wire.xml')}'}}\n"
        f"  - {{name: notes, url: '{server.url('/policy-notes.xml')}'}}\n"
        "speakers: [{name: Jen Zhu Scott}]\n"
        f"channels: [{{name: hook, type: webhook, url: '{server.url('/hook')}', secret: s}}]\n"
    )
    config.write_text(base, encoding="utf-8")
    run_watcher(config, "poll")

    def theme_alerts() -> list[str]:
        payloads = [json.loads(r.body) for r in server.requests_for("/hook")]
        return sorted(p["entry"]["title"] for p in payloads if p["watch"] == THEME)

    before = len(server.requests_for("/hook"))
    assert before > 0  # the speaker's alerts: the channel works
    config.write_text(
        base + f"themes:\n  - {{name: {THEME}, all_of: [[US, America, Washington], [China, Beijing], [AI]]}}\n",
        encoding="utf-8",
    )

    dry = run_watcher(config, "replay", "--watch", THEME, "--since", "30d").stdout
    assert "3 hits in 7 articles stored in the last 30d; 3 new recorded" in dry
    assert "nothing sent" in dry and f"replay --watch '{THEME}' --since 30d --alert" in dry
    run_watcher(config, "poll", "--force")  # later polls do not send them either
    assert len(server.requests_for("/hook")) == before

    sent = json_lines(run_watcher(config, "replay", "--watch", THEME, "--alert", "--json").stdout)[-1]["replay"]
    assert sent == {"articles": 7, "hits": 3, "recorded": 0, "alerts": 3, "sent": 3}
    assert theme_alerts() == [
        "Cross-border data centre partnerships return to the agenda",
        "Is tech decoupling already here?",
        'Jen Zhu Scott calls for a "US plus China" model of AI development',
    ]
    again = json_lines(run_watcher(config, "replay", "--watch", THEME, "--alert", "--json").stdout)[-1]["replay"]
    assert (again["alerts"], again["sent"]) == (0, 0)
    assert len(theme_alerts()) == 3

    assert run_watcher(config, "db", "prune").stdout == "0 articles stored over 90d ago deleted\n"


T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def article(key: str) -> Article:
    return Article(key, key, f"https://news.example/{key}", f"story {key}", "summary", "text", None, f"hash-{key}")


def test_retention_deletes_old_articles_but_not_those_listed_or_with_an_alert_to_send(database_url: str) -> None:
    store = Store(database_url)
    store.upgrade()
    store.sync_feeds([("wire", "https://news.example/rss")], T0)
    hit = Hit("Jen Zhu Scott", "speaker", False, 100, (Evidence("title", "x", ()),))

    def poll(articles: list[Article], listed: list[str], hits: dict[str, list[Hit]], now: datetime) -> None:
        record = PollRecord(articles, hits, None, None, None, "ok", None, now + timedelta(minutes=15), listed=listed)
        with store.saving_poll("wire", record, now) as tx:
            tx.enqueue([Alert(new, "desk", now) for new in tx.new_hits])

    old = T0 - timedelta(days=100)
    poll([article(k) for k in "abcd"], list("abcd"), {"b": [hit], "c": [hit]}, old)
    [sent] = [i.id for i in store.list_outbox() if i.stored and i.stored.entry_id == "c"]
    store.mark_sent([sent], old)
    # The feed now lists d (old) and e (new); a, b and c left it.
    poll([article("e")], ["d", "e"], {}, T0 - timedelta(days=1))

    assert store.prune(T0 - timedelta(days=90)) == 2
    kept = {a.key for _, _, a in store.articles_since(T0 - timedelta(days=3650))}
    assert kept == {"b", "d", "e"}  # b: its alert is still due; d: the feed still lists it
    assert [i.stored.entry_id for i in store.list_outbox() if i.stored] == ["b"]
    assert store.prune(T0 - timedelta(days=90)) == 0
    store.close()
