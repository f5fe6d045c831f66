"""Where parsing and matching run: a pool of worker processes, one per core.

Parsing (feedparser) and matching are pure Python and hold the GIL, so the poll threads, which
fetch and store, hand them to other processes: one job per changed feed, its body in, the
entries and hits out (``Processed``). A worker compiles the watches it is sent
once and keeps them until they change (a reload): one pool serves the daemon for life.

The pool is pebble's: it starts on first use (an all-304 poll never starts it), kills and
replaces a worker whose job runs past ``time_limit`` and replaces one that dies; only the feed
in its hands fails. Workers come from a fork server, since this process's threads make forking
it unsafe, and leave when this process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from watcher.config import FullTextMode, Speaker, Theme
from watcher.errors import Abandoned, ArticleError, ParseError, WatcherError, redact_url
from watcher.types import Article, ArticleMatch, Processed

if TYPE_CHECKING:
    from watcher.match import Matcher

T = TypeVar("T")


def process(
    body: bytes, url: str, headers: Mapping[str, str] | None, matcher: Matcher, full_text: FullTextMode = "never"
) -> Processed:
    """Parse ``body`` and match every entry it holds; tell which want their article page under
    ``full_text``. Raises ParseError if it is not a feed."""
    # Imported here: a poll that finds every feed unchanged never parses, and feedparser is a
    # large share of a short-lived `watcher poll`'s start-up.
    from watcher.article import wants_page
    from watcher.parse import parse_feed

    parsed = parse_feed(body, url=url, headers=headers)
    hits = {a.key: found for a in parsed.articles if (found := matcher.match(a))}
    pages = frozenset(a.key for a in parsed.articles if wants_page(full_text, a))
    return Processed(parsed.articles, hits, parsed.problem, pages)


def match_article(
    article: Article, page: bytes | None, url: str, content_type: str | None, matcher: Matcher
) -> ArticleMatch:
    """Match ``article`` on the main text of its ``page`` (fetched from ``url``), the feed's text
    taking no part; on the feed's text when there is no page or it holds no article text."""
    from watcher.article import main_text

    note = None
    if page is not None:
        try:
            article = dataclasses.replace(
                article, summary="", content=main_text(page, url=url, content_type=content_type)
            )
        except ArticleError as e:
            note = e.reason
    return ArticleMatch(article, matcher.match(article), note)


class InlineWorkers:
    """Parse and match in the calling thread (one core, tests)."""

    def __init__(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        self.watch(speakers, themes)

    def watch(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        from watcher.match import Matcher

        self.matcher = Matcher(speakers, themes)

    def process(
        self, body: bytes, *, url: str, headers: Mapping[str, str] | None = None, full_text: FullTextMode = "never"
    ) -> Processed:
        return process(body, url, headers, self.matcher, full_text)

    def match_article(
        self, article: Article, *, page: bytes | None = None, url: str = "", content_type: str | None = None
    ) -> ArticleMatch:
        return match_article(article, page, url, content_type, self.matcher)

    def start(self) -> None:
        """Nothing to start."""

    def close(self) -> None:
        """Nothing to stop."""


class ProcessWorkers:
    """Parse and match in a pool of worker processes (one per core by default)."""

    def __init__(
        self,
        speakers: Sequence[Speaker],
        themes: Sequence[Theme],
        processes: int | None = None,
        time_limit: float = 120.0,
    ) -> None:
        self._processes = processes or os.cpu_count() or 1
        self._time_limit = time_limit
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()
        self._waiting: set[Future[Any]] = set()  # pebble's stop leaves running jobs pending
        self.watch(speakers, themes)

    def watch(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        """Match with these watches from now on (the workers compile them at their next job)."""
        self._watches = pickle.dumps((tuple(speakers), tuple(themes)))

    def start(self) -> None:
        """Start the fork server now, in the background (the daemon; ``watcher poll`` when a
        feed may change), so that the first job finds the workers nearly ready."""
        multiprocessing.get_context("forkserver").set_forkserver_preload(["watcher.parse", "watcher.match"])
        multiprocessing.forkserver.ensure_running()

    def process(
        self, body: bytes, *, url: str, headers: Mapping[str, str] | None = None, full_text: FullTextMode = "never"
    ) -> Processed:
        return self._run(_process, (body, url, dict(headers or {}), full_text, self._watches), url=url, what="feed")

    def match_article(
        self, article: Article, *, page: bytes | None = None, url: str = "", content_type: str | None = None
    ) -> ArticleMatch:
        """Raises ``ArticleError`` when the page's worker fails on it (time limit, died)."""
        try:
            return self._run(
                _match_article, (article, page, url, content_type, self._watches), url=url, what="article page"
            )
        except ParseError as e:
            raise ArticleError(e.url, e.reason) from None

    def _run(self, job: Callable[..., T], args: tuple[object, ...], *, url: str, what: str) -> T:
        future = self._start().schedule(job, args, timeout=self._time_limit)
        with self._lock:
            self._waiting.add(future)
        try:
            result: T = future.result()
        except TimeoutError:  # pebble's, concurrent.futures.TimeoutError
            raise ParseError(url, f"parsing took longer than {self._time_limit:g}s; gave up") from None
        except ProcessExpired:
            raise ParseError(url, f"the parser's worker process died on this {what}") from None
        except (CancelledError, BrokenProcessPool):  # the pool was stopped under it
            raise Abandoned(f"parsing {redact_url(url)} abandoned: watcher is stopping") from None
        except WatcherError as e:
            # The worker's traceback is chained as the cause; for an expected error (a feed
            # that is not a feed) the one-line reason is the whole story.
            raise e from None
        finally:
            with self._lock:
                self._waiting.discard(future)
        return result

    def close(self) -> None:
        """Stop the workers; a parse in flight raises ``Abandoned`` at once."""
        with self._lock:
            pool, self._pool = self._pool, None
            waiting = list(self._waiting)
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]
            pool.join(timeout=10)
        for future in waiting:
            with contextlib.suppress(InvalidStateError):  # it ended meanwhile
                future.set_exception(CancelledError())

    def _start(self) -> ProcessPool:
        with self._lock:
            if self._pool is None:
                self.start()
                self._pool = ProcessPool(
                    max_workers=self._processes,
                    initializer=_init_worker,
                    context=multiprocessing.get_context("forkserver"),
                )
            return self._pool


def default_workers(speakers: Sequence[Speaker], themes: Sequence[Theme]) -> InlineWorkers | ProcessWorkers:
    """Worker processes for parsing and matching when there is more than one core."""
    if (os.cpu_count() or 1) > 1:
        return ProcessWorkers(speakers, themes)
    return InlineWorkers(speakers, themes)


# -- in the worker ------------------------------------------------------------------------

_matcher: tuple[bytes, Matcher] | None = None


def _init_worker() -> None:
    # Ctrl-C and systemd's stop signal reach the whole process group: a worker killed by
    # them would fail the feed in its hands. The parent stops the pool instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform == "linux":
        # Killed with the fork server, which leaves when watcher does (even by SIGKILL):
        # a worker busy on a spinning parse would otherwise outlive it.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _process(body: bytes, url: str, headers: dict[str, str], full_text: FullTextMode, watches: bytes) -> Processed:
    return process(body, url, headers, _compiled(watches), full_text)


def _match_article(
    article: Article, page: bytes | None, url: str, content_type: str | None, watches: bytes
) -> ArticleMatch:
    return match_article(article, page, url, content_type, _compiled(watches))


def _compiled(watches: bytes) -> Matcher:
    global _matcher
    if _matcher is None or _matcher[0] != watches:
        from watcher.match import Matcher

        _matcher = (watches, Matcher(*pickle.loads(watches)))
    return _matcher[1]
