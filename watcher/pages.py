"""Fetch article pages politely → ``Page``. An I/O adapter.

Every request goes through the feeds' fetcher (``watcher.fetch``), so pages get the same
rules as feeds: a total deadline, the size cap, redirects followed by hand with no request
forgery (a page a public feed links to is never fetched from a non-public address), TLS, and
the identifying User-Agent. On top of those, politeness (each one is a test in
``tests/test_pages.py``):

* at most ``per_host`` (2) requests at once to one host (scheme, host and port), and at least
  ``gap`` between the starts of two of them;
* ``robots.txt`` honoured, read with the standard library's parser: fetched once per host
  before its first page and kept a day; a 4xx answer means no rules, a 5xx or no answer means
  keep off the host (RFC 9309), and is asked again after ``_ROBOTS_RETRY``;
* at most ``per_minute`` requests in a minute in all, robots.txt included (a small machine
  following a busy feed list);
* one dispatcher thread starts each request on a pool thread only when its host and the
  minute allow it: a host waiting out its gap holds no thread, so a slow or busy host never
  delays the pages of the others.

A page that cannot be had is an ``ArticleError`` with a one-line reason ("HTTP 404 Not
Found", "timed out after 20s", "disallowed by robots.txt"), set on the ``Future`` returned.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from watcher.errors import ArticleError, FetchError, redact_url
from watcher.types import Fetched

log = logging.getLogger(__name__)

#: What robots.txt rules are matched against: the product token of watcher's User-Agent.
ROBOTS_AGENT = "watcher"
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
#: How long a host's robots.txt is kept (RFC 9309 asks for at most a day).
_ROBOTS_KEEP = 24 * 3600.0
#: How long a host whose robots.txt could not be had is kept off before asking again.
_ROBOTS_RETRY = 600.0
_MINUTE = 60.0


class PageFetcher(Protocol):
    def fetch(self, url: str, *, timeout: float, accept: str, public_only: bool) -> Fetched: ...


@dataclass(frozen=True)
class Page:
    """An article page as fetched."""

    url: str
    body: bytes
    #: The Content-Type header, or None.
    content_type: str | None


@dataclass
class _Job:
    url: str
    timeout: float
    public_only: bool
    future: Future[Page]


@dataclass
class _Host:
    """One host's queue and politeness state (all under ``Pages._cond``)."""

    origin: str
    queue: collections.deque[_Job] = field(default_factory=collections.deque)
    active: int = 0
    #: When (monotonic) the next request to the host may start.
    next_start: float = 0.0
    #: When (monotonic) the last request to the host was sent, by its own thread.
    last_sent: float = float("-inf")
    robots: RobotFileParser | None = None
    #: Why the host is kept off (its robots.txt could not be had), or None.
    robots_problem: str | None = None
    robots_until: float = 0.0
    robots_loading: bool = False


class Pages:
    """Fetches article pages through ``fetcher``, politely (see the module docstring)."""

    def __init__(
        self,
        fetcher: PageFetcher,
        *,
        per_host: int = 2,
        gap: float = 1.0,
        per_minute: int = 120,
        threads: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetcher = fetcher
        self.per_host = per_host
        self.gap = gap
        self.per_minute = per_minute
        self.threads = threads
        self._clock = clock
        self._cond = threading.Condition()
        self._hosts: dict[str, _Host] = {}
        self._running = 0
        #: Start times of the requests of the last minute.
        self._starts: collections.deque[float] = collections.deque()
        self._closed = False
        self._dispatcher: threading.Thread | None = None

    def get(self, url: str, *, timeout: float, public_only: bool) -> Future[Page]:
        """Fetch ``url`` when politeness allows, within ``timeout`` seconds once started."""
        future: Future[Page] = Future()
        try:
            parts = urlsplit(url)
            origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        except ValueError:
            future.set_exception(ArticleError(redact_url(url), "invalid URL"))
            return future
        with self._cond:
            if self._closed:
                future.set_exception(ArticleError(redact_url(url), "watcher is stopping"))
                return future
            host = self._hosts.setdefault(origin, _Host(origin))
            host.queue.append(_Job(url, timeout, public_only, future))
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch, name="page-dispatch", daemon=True)
                self._dispatcher.start()
            self._cond.notify_all()
        return future

    def close(self) -> None:
        """Stop: queued pages fail at once ("watcher is stopping"); requests under way end by
        their deadline."""
        with self._cond:
            self._closed = True
            left = [job for host in self._hosts.values() for job in host.queue]
            for host in self._hosts.values():
                host.queue.clear()
            self._cond.notify_all()
        for job in left:
            job.future.set_exception(ArticleError(redact_url(job.url), "watcher is stopping"))

    # -- the dispatcher ----------------------------------------------------------------------

    def _dispatch(self) -> None:
        with self._cond:
            while not self._closed:
                wake = self._start_what_may_start()
                if wake is not None and wake <= 0:
                    continue
                self._cond.wait(wake)

    def _start_what_may_start(self) -> float | None:
        """Start every request that may start now; return how long until one may (None: until
        something changes). Called with ``_cond`` held."""
        now = self._clock()
        while self._starts and self._starts[0] <= now - _MINUTE:
            self._starts.popleft()
        waits: list[float] = []
        started = False
        for host in self._hosts.values():
            robots_known = host.robots_until > now and not host.robots_loading
            while robots_known and host.queue and (reason := self._robots_refusal(host, host.queue[0].url)):
                job = host.queue.popleft()  # no request at all: robots.txt keeps watcher off
                job.future.set_exception(ArticleError(redact_url(job.url), reason))
            if not host.queue or host.robots_loading or host.active >= self.per_host or self._running >= self.threads:
                continue
            may_start = max(host.next_start, self._minute_free())
            if may_start > now:
                waits.append(may_start - now)
                continue
            if robots_known:
                job = host.queue.popleft()
                self._begin(host, now, functools.partial(self._fetch_page, job))
            else:
                host.robots_loading = True
                first = host.queue[0]
                self._begin(host, now, functools.partial(self._load_robots, host, first))
            started = True
        if started:
            return 0
        return min(waits, default=None)

    def _minute_free(self) -> float:
        """When the next request may start by the per-minute cap."""
        if len(self._starts) < self.per_minute:
            return 0.0
        return self._starts[-self.per_minute] + _MINUTE

    def _begin(self, host: _Host, now: float, work: Callable[[], None]) -> None:
        host.active += 1
        host.next_start = now + self.gap
        self._running += 1
        self._starts.append(now)
        # A daemon thread per request (``threads`` at most): a request hanging until its
        # deadline must not keep a finished `watcher poll` from exiting, as a pool's would.
        threading.Thread(target=self._run, args=(host, work), name="page", daemon=True).start()

    def _run(self, host: _Host, work: Callable[[], None]) -> None:
        # The gap again, on the request's own thread, just before it is sent: a thread that
        # starts late (a loaded machine) must not send close behind the one before it.
        with self._cond:
            now = self._clock()
            send_at = max(now, host.last_sent + self.gap)
            host.last_sent = send_at
        time.sleep(send_at - now)
        try:
            work()
        except Exception:  # a bug: the dispatcher must go on all the same
            log.critical("article page: unexpected error", exc_info=True)
        finally:
            with self._cond:
                host.active -= 1
                self._running -= 1
                self._cond.notify_all()

    @staticmethod
    def _robots_refusal(host: _Host, url: str) -> str | None:
        if host.robots_problem is not None:
            return host.robots_problem
        assert host.robots is not None
        return None if host.robots.can_fetch(ROBOTS_AGENT, url) else "disallowed by robots.txt"

    # -- on the pool's threads ---------------------------------------------------------------

    def _load_robots(self, host: _Host, first: _Job) -> None:
        robots = RobotFileParser()
        problem = None
        keep = _ROBOTS_KEEP
        try:
            fetched = self.fetcher.fetch(
                host.origin + "/robots.txt", timeout=first.timeout, accept="text/plain", public_only=first.public_only
            )
            robots.parse((fetched.body or b"").decode("utf-8", "replace").splitlines())
        except FetchError as e:
            if e.status is not None and e.status < 500:
                robots.parse([])  # no robots.txt: no rules
            else:
                problem, keep = f"robots.txt could not be read ({e.reason}); keeping off the host", _ROBOTS_RETRY
        with self._cond:
            host.robots, host.robots_problem = robots, problem
            host.robots_until = self._clock() + keep
            host.robots_loading = False

    def _fetch_page(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            fetched = self.fetcher.fetch(job.url, timeout=job.timeout, accept=HTML_ACCEPT, public_only=job.public_only)
        except FetchError as e:
            job.future.set_exception(ArticleError(redact_url(job.url), e.reason))
            return
        job.future.set_result(Page(job.url, fetched.body or b"", fetched.headers.get("content-type")))
