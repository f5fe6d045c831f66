"""Work in other processes: parsing and matching give the same results as inline, fetches the
same answers as in this process, and no hang or crash of a helper lasts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.httpserver import LoopbackServer
from watcher import workers
from watcher.config import Speaker, Theme
from watcher.errors import Abandoned, FetchError, ParseError
from watcher.fetch import Fetcher
from watcher.workers import InlineWorkers, ProcessFetcher, ProcessWorkers

SAMPLE = (Path(__file__).resolve().parent.parent / "watcher" / "demo_feeds" / "forum-wire.xml").read_bytes()
SPEAKERS = (Speaker("Jen Zhu Scott", ("Zhu Scott",)),)
THEMES = (Theme("Decoupling", all_of=(("decoupling",),)),)


def big_feed(items: int) -> bytes:
    item = "<item><guid>g{}</guid><title>Story {}</title><description>{}</description></item>"
    body = "".join(item.format(i, i, "words and more words " * 40) for i in range(items))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>big</title>{body}</channel></rss>'.encode()


def test_worker_processes_give_the_same_articles_and_hits_as_inline() -> None:
    inline, pool = InlineWorkers(SPEAKERS, THEMES), ProcessWorkers(SPEAKERS, THEMES, processes=1)
    try:
        expected = inline.parse(SAMPLE, url="http://x/feed")
        got = pool.parse(SAMPLE, url="http://x/feed")
        assert got == expected
        assert pool.match(got.articles) == inline.match(expected.articles) != {}
    finally:
        pool.close()


def test_a_parse_that_runs_past_the_time_limit_fails_its_feed_and_the_pool_recovers() -> None:
    # 2 s: ample for a worker to start and parse a small feed, far short of the ~5-10 s
    # feedparser needs for 20,000 items.
    pool = ProcessWorkers(SPEAKERS, THEMES, processes=1, time_limit=2.0)
    try:
        with pytest.raises(ParseError, match=r"parsing took longer than 2s"):
            pool.parse(big_feed(20_000), url="http://x/big")
        assert pool.parse(SAMPLE, url="http://x/feed").articles  # a fresh pool took over
    finally:
        pool.close()


# -- fetch helper processes ---------------------------------------------------------------


def started_helpers(fetcher: ProcessFetcher, count: int, url: str) -> list[int]:
    """Fetch ``url`` (which starts the helpers) and wait until ``count`` helpers are up."""
    fetcher.fetch(url, timeout=10)
    deadline = time.monotonic() + 30
    while len(fetcher.helper_pids) < count:
        assert time.monotonic() < deadline, "the fetch helpers did not start"
        time.sleep(0.01)
    return fetcher.helper_pids


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def feed_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.respond("/feed.xml", SAMPLE, headers={"Content-Type": "application/rss+xml"})
        server.respond("/gone.xml", status=410)
        server.respond("/busy.xml", status=429, headers={"Retry-After": "120"})
        yield server


def test_fetches_through_helper_processes_answer_as_in_this_process(feed_server: LoopbackServer) -> None:
    fetcher, local = ProcessFetcher(processes=2), Fetcher()
    url = feed_server.url("/feed.xml")
    try:
        assert len(started_helpers(fetcher, 2, url)) == 2
        got, expected = fetcher.fetch(url, timeout=10), local.fetch(url, timeout=10)
        assert (got.status, got.body, got.etag, got.last_modified) == (
            expected.status,
            expected.body,
            expected.etag,
            expected.last_modified,
        )
        assert got.body == SAMPLE
        again = fetcher.fetch(url, etag=got.etag, timeout=10)
        assert again.not_modified and again.body is None
        assert feed_server.requests_for("/feed.xml")[-1].headers["if-none-match"] == got.etag

        with pytest.raises(FetchError) as disabled:
            fetcher.fetch(feed_server.url("/gone.xml"), timeout=10)
        assert (disabled.value.gone, disabled.value.status, disabled.value.reason) == (True, 410, "HTTP 410 Gone")
        with pytest.raises(FetchError) as busy:
            fetcher.fetch(feed_server.url("/busy.xml"), timeout=10)
        assert busy.value.status == 429 and busy.value.retry_after == pytest.approx(120, abs=2)
    finally:
        fetcher.close()
        local.close()


def fetch_stalled_in_background(
    fetcher: ProcessFetcher, server: LoopbackServer
) -> tuple[threading.Thread, list[BaseException]]:
    """Start a fetch of a URL that never answers; return once the server has the request,
    with the fetching thread and the list its exception goes to."""

    def stall(request: Any) -> None:
        server.stopping.wait(20)

    server.route("/stall.xml", stall)
    raised: list[BaseException] = []

    def fetch() -> None:
        try:
            fetcher.fetch(server.url("/stall.xml"), timeout=30)
        except BaseException as e:
            raised.append(e)

    stalled = threading.Thread(target=fetch)
    stalled.start()
    deadline = time.monotonic() + 10
    while not server.requests_for("/stall.xml"):
        assert time.monotonic() < deadline, "the stalled fetch never reached the server"
        time.sleep(0.01)
    return stalled, raised


def test_a_helper_that_dies_fails_only_its_fetches_and_is_replaced(feed_server: LoopbackServer) -> None:
    fetcher = ProcessFetcher(processes=1)
    url = feed_server.url("/feed.xml")
    try:
        [pid] = started_helpers(fetcher, 1, url)
        assert fetcher.fetch(url, timeout=10).body == SAMPLE  # answered: the helper works
        stalled, failures = fetch_stalled_in_background(fetcher, feed_server)
        os.kill(pid, signal.SIGKILL)
        stalled.join(timeout=10)
        assert not stalled.is_alive(), "a fetch outlived its helper"
        assert [str(e) for e in failures] == [
            f"{feed_server.url('/stall.xml')}: the fetch process exited during the fetch"
        ]
        assert isinstance(failures[0], FetchError)

        [replacement] = started_helpers(fetcher, 1, url)
        assert replacement != pid
        assert fetcher.fetch(url, timeout=10).body == SAMPLE
    finally:
        fetcher.close()


def test_closing_stops_the_helpers(feed_server: LoopbackServer) -> None:
    fetcher = ProcessFetcher(processes=2)
    pids = started_helpers(fetcher, 2, feed_server.url("/feed.xml"))
    fetcher.close()
    assert all(gone(pid) for pid in pids)


def test_helpers_leave_when_their_parent_is_killed(feed_server: LoopbackServer) -> None:
    # `watcher run` killed with SIGKILL (OOM killer, kill -9) must not leave helpers behind.
    code = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from watcher.workers import ProcessFetcher
        fetcher = ProcessFetcher(processes=1)
        fetcher.fetch({feed_server.url("/feed.xml")!r}, timeout=10)
        while not fetcher.helper_pids:
            time.sleep(0.01)
        print(fetcher.helper_pids[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    pid = int(parent.stdout)
    deadline = time.monotonic() + 10
    while not gone(pid):
        assert time.monotonic() < deadline, f"helper {pid} outlived its parent"
        time.sleep(0.05)


def test_a_helper_that_dies_before_answering_is_not_restarted_at_once(feed_server: LoopbackServer) -> None:
    # A helper that cannot work (it dies at start) must not be forked again on every fetch.
    fetcher = ProcessFetcher(processes=1)
    url = feed_server.url("/feed.xml")
    try:
        [pid] = started_helpers(fetcher, 1, url)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while fetcher.helper_pids:
            assert time.monotonic() < deadline, "the helper's death went unnoticed"
            time.sleep(0.01)
        for _ in range(20):
            assert fetcher.fetch(url, timeout=10).body == SAMPLE  # here, in this process
        time.sleep(0.5)
        assert fetcher.helper_pids == []
    finally:
        fetcher.close()


def test_fetches_beyond_the_helpers_threads_run_here_rather_than_queue(
    feed_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Queued in a helper, a fetch would spend part of its time limit waiting for a thread.
    def slow(request: Any) -> None:
        time.sleep(1.0)
        request.send_response(200)
        request.send_header("Content-Length", str(len(SAMPLE)))
        request.end_headers()
        request.wfile.write(SAMPLE)

    feed_server.route("/slow.xml", slow)
    monkeypatch.setattr(workers, "_HELPER_GRACE", 0.3)
    fetcher = ProcessFetcher(processes=1, threads=1)
    try:
        started_helpers(fetcher, 1, feed_server.url("/feed.xml"))
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: fetcher.fetch(feed_server.url("/slow.xml"), timeout=1.5), range(4)))
        assert [r.body for r in results] == [SAMPLE] * 4
    finally:
        fetcher.close()


def test_a_helper_that_stops_answering_is_replaced(
    feed_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "_HELPER_GRACE", 0.3)
    fetcher = ProcessFetcher(processes=1)
    url = feed_server.url("/feed.xml")
    try:
        [pid] = started_helpers(fetcher, 1, url)
        assert fetcher.fetch(url, timeout=10).body == SAMPLE
        os.kill(pid, signal.SIGSTOP)  # wedged: it holds the fetch and never answers
        with pytest.raises(FetchError, match=r"timed out after 0.5s"):
            fetcher.fetch(url, timeout=0.5)
        [replacement] = started_helpers(fetcher, 1, url)
        assert replacement != pid and gone(pid)
        assert fetcher.fetch(url, timeout=10).body == SAMPLE
    finally:
        fetcher.close()


def test_closing_abandons_the_fetches_in_flight_at_once(feed_server: LoopbackServer) -> None:
    fetcher = ProcessFetcher(processes=1)
    started_helpers(fetcher, 1, feed_server.url("/feed.xml"))
    stalled, raised = fetch_stalled_in_background(fetcher, feed_server)
    fetcher.close()
    stalled.join(timeout=5)
    assert not stalled.is_alive(), "closing left a fetch waiting"
    assert len(raised) == 1 and isinstance(raised[0], Abandoned)
    with pytest.raises(Abandoned):
        fetcher.fetch(feed_server.url("/feed.xml"), timeout=10)


def test_a_network_error_reads_the_same_from_a_helper(feed_server: LoopbackServer) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{unused.getsockname()[1]}/feed.xml"
    fetcher, local = ProcessFetcher(processes=1), Fetcher()
    try:
        started_helpers(fetcher, 1, feed_server.url("/feed.xml"))
        with pytest.raises(FetchError) as here:
            local.fetch(refused, timeout=5)
        with pytest.raises(FetchError) as there:
            fetcher.fetch(refused, timeout=5)
        assert str(there.value) == str(here.value)
        assert "ConnectionRefusedError" in str(there.value)
    finally:
        fetcher.close()
        local.close()
