"""The DAO on real databases: dedup, at-most-once hits, outbox claims, migrations."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import store_poll, wait_for
from watcher.errors import SchemaOutdatedError
from watcher.store import Store, Unchanged, process_owner
from watcher.types import Article, Evidence, Hit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def article(key: str, content: str = "body", story: str | None = None) -> Article:
    return Article(
        key=key,
        entry_id=key,
        link=f"https://news.example/{key}",
        title=f"Title {key}",
        summary="",
        content=content,
        published=NOW,
        content_hash=f"hash-{content}",
        story=story,
    )


def hit(watch: str = "Jen Zhu Scott") -> Hit:
    return Hit(
        watch=watch,
        kind="speaker",
        statement=True,
        score=100,
        evidence=(Evidence("content", "Jen Zhu Scott said so.", ((0, 13),)),),
    )


def save(store: Store, articles: list[Article], hits: dict[str, list[Hit]], now: datetime = NOW) -> int:
    return store_poll(store, "wire", articles, hits, now, etag='"v1"')


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.upgrade()
    s.sync_feeds([("wire", "https://news.example/rss")], NOW)
    yield s
    s.close()


def test_new_entries_are_stored_once_and_unchanged_ones_skipped(store: Store) -> None:
    a, b = article("a"), article("b")
    assert store.changed_articles("wire", [a, b]) == [a, b]
    save(store, [a, b], {})
    assert store.changed_articles("wire", [a, b]) == []
    state = store.feed_state("wire")
    assert (state.status, state.entries_seen, state.etag) == ("ok", 2, '"v1"')


def test_an_edited_entry_is_matched_again_but_alerts_at_most_once_per_watch(store: Store) -> None:
    save(store, [article("a")], {"a": [hit()]})
    edited = article("a", content="edited body")
    assert store.changed_articles("wire", [edited]) == [edited]
    new = save(store, [edited], {"a": [hit(), hit("US-China AI collaboration")]})
    assert new == 1  # only the watch that had not hit before
    assert sorted(h.hit.watch for h in store.list_hits()) == ["Jen Zhu Scott", "US-China AI collaboration"]
    assert len(store.list_outbox()) == 2
    assert store.feed_state("wire").entries_seen == 1


def test_hits_keep_their_evidence(store: Store) -> None:
    save(store, [article("a")], {"a": [hit()]})
    [stored] = store.list_hits(since=NOW - timedelta(hours=1))
    assert stored.hit.evidence == hit().evidence
    assert (stored.feed, stored.title, stored.created) == ("wire", "Title a", NOW)


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(store: Store) -> None:
    save(store, [article("a")], {"a": [hit()]})
    [item] = store.claim_due(NOW, owner="host:1", lease=timedelta(minutes=5), channels=["desk"])
    assert item.attempts == 1 and uuid.UUID(item.alert_id).version == 4
    assert store.claim_due(NOW, owner="host:2", lease=timedelta(minutes=5), channels=["desk"]) == []
    [again] = store.claim_due(NOW + timedelta(minutes=6), owner="host:2", lease=timedelta(minutes=5), channels=["desk"])
    assert again.id == item.id and again.attempts == 2 and again.alert_id == item.alert_id


def test_two_senders_never_claim_the_same_alert(database_url: str) -> None:
    # Two `watcher run`s (or a daemon and `watcher poll`) share one outbox. Under PostgreSQL's
    # READ COMMITTED a row can be claimed, sent and released by one sender between the
    # other's SELECT and UPDATE: the UPDATE must check the whole claim condition again.
    senders = [Store(database_url) for _ in range(2)]
    senders[0].upgrade()

    def dawdle(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Sender 0 is slow between choosing its rows and claiming each one, so that the
        # other sender claims and sends some of them meanwhile.
        if statement.startswith("UPDATE outbox") and "attempts" in statement:
            time.sleep(0.01)

    sa.event.listen(senders[0].engine, "before_cursor_execute", dawdle)
    senders[0].sync_feeds([("wire", "https://news.example/rss")], NOW)
    articles = [article(f"a{i}") for i in range(100)]
    save(senders[0], articles, {a.key: [hit()] for a in articles})
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def send(n: int) -> None:
        start.wait()
        while senders[n].list_outbox("due"):
            items = senders[n].claim_due(NOW, owner=f"host:{n}", lease=timedelta(minutes=5), channels=["desk"], limit=5)
            claimed[n].extend(i.id for i in items)
            senders[n].mark_sent([i.id for i in items], NOW)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 100, "an alert was claimed twice (or never)"
    assert claimed[0] and claimed[1], "one sender claimed everything: the two never raced"
    for s in senders:
        s.close()


def test_claims_of_a_dead_process_are_released_on_start(store: Store) -> None:
    save(store, [article("a")], {"a": [hit()]})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = process_owner().rsplit(":", 1)[0] + ":" + dead.stdout.strip()
    store.claim_due(NOW, owner=owner, lease=timedelta(hours=1), channels=["desk"])
    store.claim_due(NOW, owner=process_owner(), lease=timedelta(hours=1), channels=["desk"])  # nothing left to claim
    assert store.release_dead_claims() == 1
    assert len(store.claim_due(NOW, owner=process_owner(), lease=timedelta(hours=1), channels=["desk"])) == 1


def test_failed_rows_wait_for_their_next_attempt_and_dead_rows_for_retry(store: Store) -> None:
    save(store, [article("a"), article("b")], {"a": [hit()], "b": [hit()]})
    first, second = store.claim_due(NOW, owner="h:1", lease=timedelta(minutes=5), channels=["desk"])
    store.mark_failed([first.id], "421 try later", NOW + timedelta(minutes=2))
    store.mark_dead([second.id], "550 no such user")
    assert store.claim_due(NOW + timedelta(minutes=1), owner="h:1", lease=timedelta(minutes=5), channels=["desk"]) == []
    [retried] = store.claim_due(NOW + timedelta(minutes=3), owner="h:1", lease=timedelta(minutes=5), channels=["desk"])
    assert retried.id == first.id and retried.last_error == "421 try later"
    store.mark_sent([retried.id], NOW)
    assert [i.id for i in store.list_outbox("dead")] == [second.id]
    assert store.retry(None, NOW) == 1
    [again] = store.claim_due(NOW, owner="h:1", lease=timedelta(minutes=5), channels=["desk"])
    assert again.id == second.id and again.attempts == 1, "a retried row starts its schedule afresh"


def test_failures_count_up_and_gone_feeds_are_disabled(store: Store) -> None:
    store.record_failure("wire", "HTTP 503 Service Unavailable", NOW, NOW + timedelta(minutes=30))
    store.record_failure("wire", "HTTP 410 Gone", NOW, NOW + timedelta(days=1), disable=True)
    state = store.feed_state("wire")
    assert (state.status, state.consecutive_failures, state.last_error) == ("disabled", 2, "HTTP 410 Gone")


def test_a_changed_url_in_the_config_refetches_but_keeps_the_feeds_history(store: Store) -> None:
    save(store, [article("a")], {})
    store.sync_feeds([("wire", "https://news.example/atom")], NOW)
    state = store.feed_state("wire")
    assert (state.fetch_url, state.status, state.etag) == ("https://news.example/atom", "ok", None)
    assert not state.first_poll, "new entries at the new URL still alert"
    assert store.changed_articles("wire", [article("a")]) == []


def test_an_unmigrated_database_is_refused_with_the_fix(database_url: str) -> None:
    store = Store(database_url)
    with pytest.raises(SchemaOutdatedError, match="watcher db upgrade"):
        store.check_schema()
    store.upgrade()
    store.check_schema()
    store.close()


def test_processes_starting_together_on_a_new_database_all_migrate_it(database_url: str, tmp_path: Path) -> None:
    # `watcher run` and a cron `watcher poll` may both be first to a new database.
    go = tmp_path / "go"
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from watcher.store import Store
        store = Store({database_url!r})
        open(os.path.join({str(tmp_path)!r}, f"ready-{{os.getpid()}}"), "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        store.upgrade()
        """
    )
    starters = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == len(starters), "the migrating processes to start")
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in starters]
    assert [p.returncode for p in starters] == [0] * len(starters), "\n".join(errors)
    store = Store(database_url)
    store.check_schema()
    store.close()


def test_unchanged_polls_are_recorded_together_and_clear_a_failure(store: Store) -> None:
    store.sync_feeds([("wire", "https://news.example/rss"), ("desk", "https://desk.example/rss")], NOW)
    store.record_failure("wire", "HTTP 503 Service Unavailable", NOW, NOW + timedelta(minutes=30))
    later = NOW + timedelta(minutes=30)
    store.record_not_modified(
        [
            Unchanged("wire", later, later + timedelta(minutes=15), '"v2"', None, "https://news.example/rss2"),
            Unchanged("desk", later, later, None, None, None),
        ]
    )
    wire, desk = store.feed_state("wire"), store.feed_state("desk")
    assert (wire.etag, wire.fetch_url) == ('"v2"', "https://news.example/rss2"), "a 304 after a 301 keeps both"
    assert (wire.status, wire.consecutive_failures, wire.last_error, wire.last_polled_at) == ("ok", 0, None, later)
    assert wire.next_poll_at == later + timedelta(minutes=15)
    assert (desk.status, desk.last_polled_at) == ("new", later)


def test_the_schema_head_the_code_expects_is_alembics_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from watcher.store import SCHEMA_HEAD, migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def test_a_feed_whose_first_attempts_failed_is_still_on_its_first_poll(store: Store) -> None:
    store.record_failure("wire", "connection refused", NOW, NOW + timedelta(minutes=15))
    assert store.feed_state("wire").first_poll
    save(store, [article("a")], {}, NOW + timedelta(minutes=15))
    assert not store.feed_state("wire").first_poll


def test_retrying_a_disabled_feed_polls_it_at_the_next_chance(store: Store) -> None:
    save(store, [article("a")], {})
    store.record_failure("wire", "HTTP 410 Gone", NOW, NOW + timedelta(days=1), disable=True)
    assert store.retry_feed("wire", NOW + timedelta(hours=1))
    state = store.feed_state("wire")
    assert (state.status, state.consecutive_failures, state.next_poll_at) == ("ok", 0, NOW + timedelta(hours=1))
    assert not store.retry_feed("no such feed", NOW)


def test_upgrading_from_the_first_schema_keeps_feeds_and_marks_their_successes(database_url: str) -> None:
    from alembic import command

    store = Store(database_url)
    command.upgrade(store._alembic_config(), "0001")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO feeds (name, url, status, last_polled_at, consecutive_failures, entries_seen) "
            "VALUES ('wire', 'https://news.example/rss', 'ok', '2026-11-25 12:00:00', 0, 3), "
            "('dead', 'https://dead.example/rss', 'failed', '2026-11-25 12:00:00', 2, 0), "
            "('gone', 'https://gone.example/rss', 'disabled', '2026-11-25 12:00:00', 1, 7)"
        )
    store.upgrade()
    store.check_schema()
    wire, dead = store.feed_state("wire"), store.feed_state("dead")
    assert (wire.entries_seen, wire.last_success_at, wire.first_poll) == (3, NOW, False)
    assert dead.first_poll
    assert not store.feed_state("gone").first_poll, "a feed disabled after it had entries is not new"
    store.close()


def test_downgrading_a_migration_keeps_the_rows_of_other_tables(store: Store) -> None:
    # SQLite rebuilds a table to drop a column; with foreign keys on, dropping the old table
    # would delete every hit and alert that refers to its rows.
    from alembic import command

    save(store, [article("a")], {"a": [hit()]})
    command.downgrade(store._alembic_config(), "0002")
    with store.engine.connect() as conn:
        counts = [conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ("entries", "hits", "outbox")]
    assert counts == [1, 1, 1]
    store.upgrade()
    assert len(store.list_outbox()) == 1


def test_the_migrations_build_the_schema_the_code_declares(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from watcher.store import metadata, watchers_own

    with store.engine.connect() as conn:
        opts = {"compare_type": True, "include_name": watchers_own}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)
    assert diff == []


def test_processes_starting_together_on_a_new_database_all_add_its_feeds(database_url: str) -> None:
    # Two first starts at once: each finds no row for a feed and inserts it; the second
    # insert must not fail on the unique name (PostgreSQL reads before the other commits).
    stores = [Store(database_url) for _ in range(4)]
    stores[0].upgrade()
    errors: list[BaseException] = []

    def start(store: Store, barrier: threading.Barrier, configured: list[tuple[str, str]]) -> None:
        barrier.wait()
        try:
            store.sync_feeds(configured, NOW)
        except BaseException as e:
            errors.append(e)

    try:
        for round in range(10):
            configured = [(f"feed-{round}-{i}", f"https://news.example/{round}/{i}") for i in range(50)]
            barrier = threading.Barrier(len(stores))
            threads = [threading.Thread(target=start, args=(s, barrier, configured)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors[0]
        assert len(stores[0].feed_states()) == 10 * 50
    finally:
        for s in stores:
            s.close()


def test_upgrading_gives_every_existing_alert_an_id_of_its_own(database_url: str) -> None:
    from alembic import command

    store = Store(database_url)
    command.upgrade(store._alembic_config(), "0003")
    with store.engine.begin() as conn:
        at = "'2026-11-25 12:00:00'"
        conn.exec_driver_sql("INSERT INTO feeds (id, name, url) VALUES (1, 'wire', 'https://news.example/rss')")
        conn.exec_driver_sql(
            "INSERT INTO entries (id, feed_id, key_hash, key, title, content_hash, first_seen_at, updated_at) "
            f"VALUES (1, 1, 'k1', 'a', 'A', 'h', {at}, {at}), (2, 1, 'k2', 'b', 'B', 'h', {at}, {at})"
        )
        conn.exec_driver_sql(
            "INSERT INTO hits (id, entry_id, watch, kind, statement, score, evidence, created_at) "
            f"VALUES (1, 1, 'w', 'speaker', true, 100, '[]', {at}), (2, 2, 'w', 'speaker', true, 100, '[]', {at})"
        )
        conn.exec_driver_sql(
            "INSERT INTO outbox (hit_id, channel, status, attempts, next_attempt_at, created_at) VALUES "
            + ", ".join(f"({h}, '{c}', 'failed', 1, {at}, {at})" for h in (1, 2) for c in ("desk", "hook"))
        )
    store.upgrade()
    ids = [i.alert_id for i in store.list_outbox()]
    assert len(ids) == len(set(ids)) == 4 and all(uuid.UUID(i).version == 4 for i in ids)
    store.close()


def test_entries_back_under_new_ids_are_told_from_new_and_edited_ones(store: Store) -> None:
    save(store, [article("a", content="x"), article("b", content="y")], {})
    back, edited, fresh = article("a2", content="x"), article("b", content="z"), article("c", content="w")
    assert store.rekeyed("wire", [back, edited, fresh]) == {"a2"}
    store.sync_feeds([("other", "https://other.example/rss")], NOW)
    assert store.rekeyed("other", [back]) == set(), "another feed's copy is story dedup's business"
