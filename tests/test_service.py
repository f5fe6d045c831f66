"""The daemon's per-feed job: on schedule after a success, held back after failures."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAKE_NOW, ROOT, Clock, wait_for
from tests.httpserver import LoopbackServer
from watcher.config import parse_config
from watcher.errors import Abandoned
from watcher.service import Daemon, Watcher, make_watcher
from watcher.workers import InlineWorkers

SAMPLES = Path(__file__).resolve().parent.parent / "watcher" / "demo_feeds"


NOW = FAKE_NOW


@pytest.fixture
def watcher(tmp_path: Path, clock: Clock) -> Iterator[Watcher]:
    with LoopbackServer(root=SAMPLES) as server:
        text = f"database: sqlite:///{tmp_path}/w.db\nfeeds:\n  - {{name: forum, url: '{server.url('/forum-wire.xml')}'}}\n"
        config = parse_config(text, str(tmp_path / "feeds.yaml"), {})
        w = make_watcher(config, channels={}, workers=InlineWorkers((), ()), now=clock)
        yield w
        w.close()


def test_a_feed_is_polled_at_its_next_trigger_even_if_the_last_poll_ended_late(watcher: Watcher, clock: Clock) -> None:
    """A slow fetch pushes the stored next poll past the schedule's next trigger; the
    trigger must still poll (only failures hold a feed back)."""
    daemon = Daemon(watcher, watcher.config.path)
    daemon.poll_if_due("forum")
    first = watcher.store.feed_state("forum")
    assert (first.status, first.last_polled_at, first.next_poll_at) == ("ok", NOW, NOW + timedelta(minutes=15))
    clock.time = NOW + timedelta(minutes=1)
    daemon.poll_if_due("forum")
    assert watcher.store.feed_state("forum").last_polled_at == NOW + timedelta(minutes=1)


def test_a_failing_feed_waits_for_its_backoff_by_the_daemons_clock(watcher: Watcher, clock: Clock) -> None:
    daemon = Daemon(watcher, watcher.config.path)
    watcher.store.record_failure("forum", "HTTP 503 Service Unavailable", NOW, NOW + timedelta(hours=1))
    clock.time = NOW + timedelta(minutes=59)
    daemon.poll_if_due("forum")
    state = watcher.store.feed_state("forum")
    assert (state.status, state.last_polled_at) == ("failed", NOW)
    clock.time = NOW + timedelta(minutes=61)
    daemon.poll_if_due("forum")
    state = watcher.store.feed_state("forum")
    assert (state.status, state.last_polled_at) == ("ok", NOW + timedelta(minutes=61))


def test_a_poll_abandoned_at_stop_records_no_failure(tmp_path: Path) -> None:
    # A daemon stopping mid-fetch must not leave the feed in backoff for the next start.
    class Stopping:
        def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None, timeout: float) -> Any:
            raise Abandoned(f"fetch of {url} abandoned: watcher is stopping")

    text = f"database: sqlite:///{tmp_path}/w.db\nfeeds:\n  - {{name: forum, url: 'https://forum.example/rss'}}\n"
    config = parse_config(text, str(tmp_path / "feeds.yaml"), {})
    w = make_watcher(config, channels={}, workers=InlineWorkers((), ()), fetcher=Stopping())
    try:
        [result] = w.poll()
        assert result.error == "abandoned: watcher is stopping"
        state = w.store.feed_state("forum")
        assert (state.status, state.consecutive_failures, state.last_error) == ("new", 0, None)
    finally:
        w.close()


#: A daemon whose parse workers never finish closing (a library stuck joining a process):
#: the stop must still end the process, within the (shortened) limit.
STALLING_DAEMON = """
import logging, sys, threading
from datetime import timedelta
import watcher.service as service
from watcher.config import load_config
from watcher.workers import InlineWorkers

class Stalling(InlineWorkers):
    def close(self) -> None:
        threading.Event().wait()

logging.basicConfig(level=logging.INFO)
service.STOP_LIMIT = timedelta(seconds=1)
config = load_config(sys.argv[1])
w = service.make_watcher(config, workers=Stalling((), ()))
sys.exit(service.Daemon(w, sys.argv[1]).run())
"""


def test_a_stop_that_stalls_still_ends_the_process(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/w.db\nfeeds: []\n", encoding="utf-8")
    log = tmp_path / "daemon.log"
    with log.open("w", encoding="utf-8") as err:
        daemon = subprocess.Popen([sys.executable, "-c", STALLING_DAEMON, str(config)], cwd=ROOT, stderr=err)
        try:
            wait_for(lambda: "running" in log.read_text(encoding="utf-8"), "the daemon to start")
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    text = log.read_text(encoding="utf-8")
    assert daemon.returncode == 0, text
    assert "received SIGTERM, stopping" in text
    assert "still stopping after 1s; exiting now" in text
