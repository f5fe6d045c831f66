"""Where parsing and matching run: inline, or in worker processes so they use every core.

Parsing (feedparser) and matching are pure Python and hold the GIL, so threads cannot run
them in parallel. ``ProcessWorkers`` runs both in a pool of processes, each of which
compiles the matcher once at start; the poll threads stay free for fetching and the
database. ``InlineWorkers`` does the same work in the calling thread (one core, tests,
the ``match`` command).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

from watcher.errors import ParseError, WatcherError
from watcher.types import Article, Hit, ParsedFeed, Speaker, Theme

if TYPE_CHECKING:
    from watcher.match import Matcher

T = TypeVar("T")


def match_articles(matcher: Matcher, articles: Sequence[Article]) -> dict[str, list[Hit]]:
    """Hits per article key, for the articles that have any."""
    return {a.key: hits for a in articles if (hits := matcher.match(a))}


class InlineWorkers:
    """Parse and match in the calling thread."""

    def __init__(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        from watcher.match import Matcher

        self.matcher = Matcher(speakers, themes)

    def parse(self, body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
        return _parse(body, url, headers)

    def match(self, articles: Sequence[Article]) -> dict[str, list[Hit]]:
        return match_articles(self.matcher, articles)

    def close(self) -> None:
        pass


_worker_matcher: Matcher | None = None


def _parse(body: bytes, url: str, headers: Mapping[str, str] | None) -> ParsedFeed:
    # Imported here, not at the top: a poll that finds every feed unchanged never parses,
    # and feedparser is a large share of a short-lived `watcher poll`'s start-up.
    from watcher.parse import parse_feed

    return parse_feed(body, url=url, headers=headers)


def _init_worker(speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
    from watcher.match import Matcher

    # Ctrl-C and systemd's stop signal reach the whole process group: a worker killed by
    # them would fail the feed it was parsing. The parent shuts the pool down instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    global _worker_matcher
    _worker_matcher = Matcher(speakers, themes)


def _match_in_worker(articles: Sequence[Article]) -> dict[str, list[Hit]]:
    assert _worker_matcher is not None, "worker started without _init_worker"
    return match_articles(_worker_matcher, articles)


class ProcessWorkers:
    """Parse and match in a pool of worker processes (one per core by default).

    The pool starts on first use, so commands that never parse (an all-304 poll) pay
    nothing for it. Workers are started by a fork server: forking the daemon itself,
    with its scheduler and connection pool threads, is not safe. A job that runs past
    ``time_limit`` seconds has its pool killed and replaced, so input that makes the
    parser spin cannot hold a worker for ever (other jobs in flight fail with it and are
    redone on the next poll).
    """

    def __init__(
        self,
        speakers: Sequence[Speaker],
        themes: Sequence[Theme],
        processes: int | None = None,
        time_limit: float = 120.0,
    ) -> None:
        self._speakers, self._themes = tuple(speakers), tuple(themes)
        self._processes = processes or os.cpu_count() or 1
        self._time_limit = time_limit
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def parse(self, body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
        try:
            return self._run(_parse, body, url, dict(headers or {}))
        except BrokenProcessPool:
            raise ParseError(url, "the parser's worker process died on this feed") from None
        except TimeoutError:
            raise ParseError(url, f"parsing took longer than {self._time_limit:g}s; gave up") from None

    def match(self, articles: Sequence[Article]) -> dict[str, list[Hit]]:
        if not articles:
            return {}
        return self._run(_match_in_worker, list(articles))

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        pool = self._executor()
        try:
            return pool.submit(fn, *args, **kwargs).result(timeout=self._time_limit)
        except TimeoutError:
            # No public way to stop one job: kill the pool's processes (3.14 adds
            # terminate_workers) and start afresh on the next call.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            self._discard(pool)
            raise
        except WatcherError as e:
            # concurrent.futures chains the worker's traceback as the cause; for an expected
            # error (a feed that is not a feed) the one-line reason is the whole story.
            raise e from None
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the pool is unusable, start a new one.
            self._discard(pool)
            raise

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self._processes,
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_init_worker,
                    initargs=(self._speakers, self._themes),
                )
            return self._pool
