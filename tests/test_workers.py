"""Work in other processes: parsing and matching give the same results as inline, a worker that
hangs or dies fails only its feed, the pool outlives a change of watches, and no worker outlives
watcher."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_for
from tests.httpserver import LoopbackServer
from watcher.config import Speaker, Theme
from watcher.errors import Abandoned, ParseError
from watcher.workers import InlineWorkers, ProcessWorkers

SAMPLES = Path(__file__).resolve().parent.parent / "watcher" / "demo_feeds"
SAMPLE = (SAMPLES / "forum-wire.xml").read_bytes()
SPEAKERS = (Speaker("Jen Zhu Scott", ("Zhu Scott",)),)
THEMES = (Theme("Decoupling", all_of=(("decoupling",),)),)


def big_feed(items: int) -> bytes:
    item = "<item><guid>g{}</guid><title>Story {}</title><description>{}</description></item>"
    body = "".join(item.format(i, i, "words and more words " * 40) for i in range(items))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>big</title>{body}</channel></rss>'.encode()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def cpu_seconds() -> dict[int, float]:
    seconds = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may have ended meanwhile
            seconds[child.pid] = child.cpu_times().user
    return seconds


def busy_worker(since: dict[int, float]) -> int | None:
    """The process that has used most CPU since ``since``, if it used a good share of a second
    (the fork server, whose imports are behind it, only waits)."""
    grown = {pid: cpu - since.get(pid, 0.0) for pid, cpu in cpu_seconds().items()}
    pid = max(grown, key=grown.__getitem__, default=None)
    return pid if pid is not None and grown[pid] > 0.3 else None


@pytest.fixture
def pool() -> Iterator[ProcessWorkers]:
    workers = ProcessWorkers(SPEAKERS, THEMES, processes=1, time_limit=3.0)
    yield workers
    workers.close()


def test_worker_processes_give_the_same_entries_and_hits_as_inline(pool: ProcessWorkers) -> None:
    expected = InlineWorkers(SPEAKERS, THEMES).process(SAMPLE, url="http://x/feed")
    got = pool.process(SAMPLE, url="http://x/feed")
    assert got == expected and got.hits
    # The whole text comes back: it is stored, for `watcher replay`.
    assert any(a.content for a in got.articles)
    assert any(a.summary for a in got.articles)


def test_a_parse_that_runs_past_the_time_limit_fails_its_feed_and_the_pool_recovers(pool: ProcessWorkers) -> None:
    # 3 s: ample for a worker to start and parse a small feed, far short of the ~5-10 s
    # feedparser needs for 20,000 items.
    with pytest.raises(ParseError, match=r"parsing took longer than 3s"):
        pool.process(big_feed(20_000), url="http://x/big")
    assert pool.process(SAMPLE, url="http://x/feed").articles  # a fresh worker took over


def test_a_worker_that_dies_fails_only_its_feed_and_is_replaced(pool: ProcessWorkers) -> None:
    assert pool.process(SAMPLE, url="http://x/feed").articles
    since = cpu_seconds()
    failed: list[BaseException] = []

    def parse_big() -> None:
        try:
            pool.process(big_feed(20_000), url="http://x/big")
        except BaseException as e:
            failed.append(e)

    busy = threading.Thread(target=parse_big)
    busy.start()
    wait_for(lambda: busy_worker(since), "a busy worker")
    worker = busy_worker(since)
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    busy.join(timeout=30)
    assert [str(e) for e in failed] == ["http://x/big: the parser's worker process died on this feed"]
    assert pool.process(SAMPLE, url="http://x/feed").articles


def test_new_watches_are_matched_by_the_same_pool(pool: ProcessWorkers) -> None:
    first = pool.process(SAMPLE, url="http://x/feed")
    workers = descendants()
    pool.watch((Speaker("Scott Freeman"),), ())
    second = pool.process(SAMPLE, url="http://x/feed")
    assert "Jen Zhu Scott" in {h.watch for hits in first.hits.values() for h in hits}
    assert {h.watch for hits in second.hits.values() for h in hits} == {"Scott Freeman"}
    assert descendants() == workers, "the pool was restarted"


def test_no_process_outlives_watcher_run_killed_with_sigkill(tmp_path: Path) -> None:
    # The OOM killer or `kill -9` give watcher no chance to stop its workers (issue 10, point 10).
    with LoopbackServer(root=SAMPLES) as server:
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path}/w.db\n"
            f"feeds:\n  - {{name: forum, url: '{server.url('/forum-wire.xml')}', interval: 1h}}\n"
            "speakers:\n  - {name: Jen Zhu Scott}\n"
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "watcher", "-c", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            daemon = psutil.Process(run.pid)
            # The fork server, its resource tracker and a worker that parsed the feed.
            wait_for(
                lambda: server.requests_for("/forum-wire.xml") and len(daemon.children(recursive=True)) >= 3, "workers"
            )
            wait_for(lambda: (tmp_path / "w.db").exists(), "the database")
            children = [p.pid for p in daemon.children(recursive=True)]
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            if run.poll() is None:
                run.kill()
            assert run.stderr is not None
            stderr = run.stderr.read()
    for pid in children:
        wait_for(functools.partial(gone, pid), f"process {pid} outlived watcher run\n{stderr}")


def test_closing_the_pool_abandons_the_parse_in_flight(pool: ProcessWorkers) -> None:
    # A stopping daemon closes the pool under a poll: that feed did nothing wrong and must not
    # be recorded as failing (pipeline.poll_feed treats Abandoned so).
    assert pool.process(SAMPLE, url="http://x/feed").articles
    since = cpu_seconds()
    raised: list[BaseException] = []

    def parse_big() -> None:
        try:
            pool.process(big_feed(20_000), url="http://x/big")
        except BaseException as e:
            raised.append(e)

    busy = threading.Thread(target=parse_big)
    busy.start()
    wait_for(lambda: busy_worker(since), "a busy worker")
    pool.close()
    busy.join(timeout=30)
    assert [type(e) for e in raised] == [Abandoned]
