"""Where fetching, parsing and matching run: in this process, or in others so they use every core.

Parsing (feedparser) and matching are pure Python and hold the GIL, so threads cannot run
them in parallel. ``ProcessWorkers`` runs both in a pool of processes, each of which
compiles the matcher once at start; the poll threads stay free for fetching and the
database. ``InlineWorkers`` does the same work in the calling thread (one core, tests,
the ``match`` command).

Fetching is mostly waiting, but each response still costs a few hundred microseconds of
requests/urllib3 Python under the GIL: a thousand feeds answering at once (304s from a CDN)
keep one core busy while the others idle, and more threads only contend for the lock.
``ProcessFetcher`` spreads fetches over helper processes that each run a ``Fetcher`` with
threads of their own.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from typing import TYPE_CHECKING, Any, TypeVar

from watcher.config import Speaker, Theme
from watcher.errors import Abandoned, FetchError, ParseError, WatcherError, portable, redact_url
from watcher.fetch import Fetcher
from watcher.types import Article, Fetched, Hit, ParsedFeed

if TYPE_CHECKING:
    from watcher.match import Matcher

T = TypeVar("T")

log = logging.getLogger(__name__)


def _forkserver() -> ForkServerContext:
    """The context every helper and worker process starts from.

    Processes are forked from a fork server, never from this process: forking a process that
    runs threads (the scheduler's, the connection pools') is not safe. The server preloads the
    fetch code (requests, urllib3), so a fetch helper is ready the moment it is forked; parse
    workers import what they need themselves.
    """
    context = multiprocessing.get_context("forkserver")
    # Takes effect only when the server starts (the first process started from it).
    context.set_forkserver_preload(["watcher.fetch"])
    return context


def _ignore_stop_signals() -> None:
    # Ctrl-C and systemd's stop signal reach the whole process group: a helper or worker
    # killed by them would fail the feed in its hands. The parent shuts them down instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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

    _ignore_stop_signals()
    global _worker_matcher
    _worker_matcher = Matcher(speakers, themes)


def _match_in_worker(articles: Sequence[Article]) -> dict[str, list[Hit]]:
    assert _worker_matcher is not None, "worker started without _init_worker"
    return match_articles(_worker_matcher, articles)


class ProcessWorkers:
    """Parse and match in a pool of worker processes (one per core by default).

    The pool starts on first use, so commands that never parse (an all-304 poll) pay
    nothing for it. Workers are started by the fork server (``_forkserver``). A job that runs past
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
                    mp_context=_forkserver(),
                    initializer=_init_worker,
                    initargs=(self._speakers, self._themes),
                )
            return self._pool


def default_workers(speakers: Sequence[Speaker], themes: Sequence[Theme]) -> InlineWorkers | ProcessWorkers:
    """Worker processes for parsing and matching when there is more than one core."""
    if (os.cpu_count() or 1) > 1:
        return ProcessWorkers(speakers, themes)
    return InlineWorkers(speakers, themes)


def default_fetcher(*, boot: bool = False) -> Fetcher | ProcessFetcher:
    """Fetch helper processes when there is more than one core; with ``boot``, their fork
    server starts now rather than at the first fetch (see ``ProcessFetcher.start``)."""
    if (os.cpu_count() or 1) > 1:
        fetcher = ProcessFetcher()
        if boot:
            fetcher.start()
        return fetcher
    return Fetcher()


class ProcessFetcher:
    """A ``Fetcher`` whose fetches run in helper processes (one per core) as well as in this one.

    Each helper runs a ``Fetcher`` with ``threads`` threads, and is given at most that many
    fetches at once: a fetch goes to the live helper with the fewest, or runs here when every
    helper is full. Helpers start in the background on first use; until one is up, and
    while none can be, fetches run here, so no fetch waits for a process to start.

    Failures stay small. A helper that dies fails only the fetches it held (retried here
    when it had never answered, for then it never worked) and is replaced at the next fetch;
    one that dies before its first answer, or cannot be started, is not tried again for a
    minute. A helper that stops answering is killed and replaced. Helpers leave when this
    process closes the fetcher or exits, however it exits: their pipe reads end-of-file.
    They read the environment (proxies, CA bundle) as it was when the first one started.
    """

    def __init__(self, processes: int | None = None, threads: int = 8) -> None:
        self._processes = processes or os.cpu_count() or 1
        self._threads = threads
        self._local = Fetcher()
        self._helpers: list[_Helper] = []
        self._lock = threading.Lock()
        self._starting: threading.Thread | None = None
        self._closed = False
        self._ids = itertools.count()
        #: After a failed start, no new attempt before this (time.monotonic()).
        self._retry_at = 0.0

    @property
    def helper_pids(self) -> list[int]:
        """Process ids of the helpers alive now (none before the first fetch)."""
        with self._lock:
            return [h.process.pid for h in self._helpers if h.alive and h.process.pid is not None]

    def start(self) -> None:
        """Boot the fork server now, so that the helpers fork at once at the first fetch.

        The server is a new interpreter importing the fetch code, a tenth of a second that
        then passes on another core while this process does other work (the start of
        ``watcher poll`` imports the database layer).
        """
        try:
            _forkserver()
            multiprocessing.forkserver.ensure_running()
        except Exception as e:
            with self._lock:
                self._start_failed(e)

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None, timeout: float) -> Fetched:
        if timeout <= 0:  # as Fetcher says it, before anything crosses a pipe
            raise ValueError(f"timeout must be positive, got {timeout}")
        helper = self._reserve()
        try:
            if helper is not None:
                with contextlib.suppress(_NotTaken):
                    return helper.fetch(next(self._ids), url, etag, last_modified, timeout)
            if self._closed:
                raise Abandoned(f"fetch of {redact_url(url)} abandoned: watcher is stopping")
            return self._local.fetch(url, etag=etag, last_modified=last_modified, timeout=timeout)
        finally:
            if helper is not None:
                with self._lock:
                    helper.reserved -= 1

    def close(self) -> None:
        """Stop the helpers and close the connections.

        Fetches still in flight in a helper raise ``Abandoned`` at once: the caller is
        stopping, and nothing about those feeds is to be recorded.
        """
        with self._lock:
            self._closed = True
            starting = self._starting
        if starting is not None:
            starting.join(timeout=10)
        with self._lock:
            helpers, self._helpers = self._helpers, []
        for helper in helpers:
            helper.stop()
        self._local.close()

    def _reserve(self) -> _Helper | None:
        """The helper to take one more fetch (counted as its own at once), or None: run here."""
        with self._lock:
            if self._closed:
                return None
            now = time.monotonic()
            for dead in [h for h in self._helpers if not h.alive]:
                self._helpers.remove(dead)
                dead.conn.close()
                if not dead.answered and now - dead.started < _PROBATION:
                    self._start_failed(RuntimeError(f"{dead.process.name} exited before its first answer"))
            if len(self._helpers) < self._processes and self._starting is None and now >= self._retry_at:
                self._starting = threading.Thread(target=self._start_helpers, name="watcher-fetch-start", daemon=True)
                self._starting.start()
            free = [h for h in self._helpers if h.reserved < self._threads]
            helper = min(free, key=lambda h: h.reserved, default=None)
            if helper is not None:
                helper.reserved += 1
            return helper

    def _start_helpers(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._helpers) >= self._processes or time.monotonic() < self._retry_at:
                        return
                    number = len(self._helpers) + 1
                helper = _Helper.start(number, self._threads)
                with self._lock:
                    if self._closed:
                        helper.process.kill()
                        return
                    self._helpers.append(helper)
        except Exception as e:
            with self._lock:
                self._start_failed(e)
        finally:
            with self._lock:
                self._starting = None

    def _start_failed(self, error: BaseException) -> None:
        """Hold ``_lock``. Fetching goes on in this process; a minute later a fetch tries again."""
        log.warning("fetch process: %s: %s; fetching in this process", type(error).__name__, error)
        self._retry_at = time.monotonic() + _RETRY_START


#: A helper that dies this soon after its start, before any answer, counts as a failed start.
_PROBATION = 10.0
#: How long a failed start keeps fetching in this process only.
_RETRY_START = 60.0
#: How long past its own timeout a fetch waits for a helper that stopped answering.
_HELPER_GRACE = 30.0


class _NotTaken(Exception):
    """The helper died before it ever answered: the fetch is to be run elsewhere."""


class _Helper:
    """The parent's end of one fetch helper process: its pipe, and the fetches it holds."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.started = time.monotonic()
        self.alive = True
        #: Answers received; a helper that died with none never worked.
        self.answered = 0
        #: Fetches given to this helper whose callers have not returned (ProcessFetcher's lock).
        self.reserved = 0
        self._stopped = False
        self._pending: dict[int, tuple[str, Future[object]]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"{process.name}-reader", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, number: int, threads: int) -> _Helper:
        context = _forkserver()
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve_fetches, args=(theirs, threads), name=f"watcher-fetch-{number}", daemon=True
        )
        process.start()
        theirs.close()
        return cls(process, ours)

    def fetch(self, number: int, url: str, etag: str | None, last_modified: str | None, timeout: float) -> Fetched:
        answer: Future[object] = Future()
        with self._lock:
            if not self.alive or self._stopped:
                raise _NotTaken
            self._pending[number] = (url, answer)
            try:
                self.conn.send((number, url, etag, last_modified, timeout))
            except (OSError, ValueError):
                self._pending.pop(number, None)
                raise _NotTaken from None
        try:
            result = answer.result(timeout=timeout + _HELPER_GRACE)
        except TimeoutError:
            # The helper's own deadline ended this fetch long ago: it is wedged (a name lookup
            # cannot be interrupted, the process may be stopped). Its replacement takes over;
            # the other fetches it held fail with it.
            log.warning("%s stopped answering; replacing it", self.process.name)
            with self._lock:
                self.alive = False  # no new fetches for it while its end is noticed
            self.process.kill()
            raise FetchError(redact_url(url), f"timed out after {timeout:g}s") from None
        if result is _NotTaken:
            raise _NotTaken
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, Fetched)
        return result

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            pending, self._pending = self._pending, {}
        for url, answer in pending.values():
            answer.set_result(Abandoned(f"fetch of {redact_url(url)} abandoned: watcher is stopping"))
        # Nothing it holds is wanted any more; its connections end with it.
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        self._reader.join(timeout=5)

    def _read(self) -> None:
        while True:
            try:
                number, result = self.conn.recv()
            except Exception:
                break  # end of file: the helper is gone; or an answer that cannot be read
            with self._lock:
                entry = self._pending.pop(number, None)
                self.answered += 1
            if entry is not None:
                entry[1].set_result(result)
        with self._lock:
            self.alive = False
            pending, self._pending = self._pending, {}
            never_worked = not self.answered
        for url, answer in pending.values():
            answer.set_result(_NotTaken if never_worked else _helper_lost(url))
        if self.process.is_alive():  # it may still run after an unreadable answer
            self.process.kill()


def _helper_lost(url: str) -> FetchError:
    return FetchError(redact_url(url), "the fetch process exited during the fetch")


def _serve_fetches(conn: Connection, threads: int) -> None:
    """A fetch helper's whole life: fetch what the parent asks until it hangs up."""
    _ignore_stop_signals()
    fetcher = Fetcher()
    sending = threading.Lock()

    def answer(number: int, url: str, etag: str | None, last_modified: str | None, timeout: float) -> None:
        result: Fetched | BaseException
        try:
            result = fetcher.fetch(url, etag=etag, last_modified=last_modified, timeout=timeout)
        except FetchError as e:
            result = e
        except Exception as e:
            # A bug, not the feed: the parent's poll logs it with its traceback, this one.
            e.add_note(f"raised in {multiprocessing.current_process().name}:\n{traceback.format_exc()}")
            result = e if portable(e) is e else RuntimeError(f"{type(e).__name__}: {e}\n{e.__notes__[-1]}")
        with sending, contextlib.suppress(OSError, ValueError):
            conn.send((number, result))

    pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        pool.submit(answer, *request)
    # The parent is gone: fetches in flight have no one to answer to. A normal return would
    # wait for them (the process joins its threads on the way out).
    pool.shutdown(wait=False, cancel_futures=True)
    os._exit(0)
