"""Fetch a feed's bytes over HTTP(S) or from a local file → ``Fetched``. An I/O adapter.

Rules (each one is a test in ``tests/test_fetch.py``):

* One ``requests.Session``, shared by the poll's threads, with a descriptive User-Agent and
  ``Accept-Encoding: gzip, deflate``. Conditional GET: the stored ETag / Last-Modified go out
  as If-None-Match / If-Modified-Since; a 304 gives ``Fetched(body=None)``.
* ``timeout`` is a TOTAL deadline for the whole fetch, every redirect hop included. The socket
  timeout (what is left of it) bounds connecting and sending; the deadline itself bounds
  reading: it is checked between the body's chunks, and one watchdog thread shuts the fetch's
  socket down when it expires, since a server trickling a byte a second never trips a
  per-``recv()`` timeout. A deadline that has ended shuts nothing: its connection may be
  pooled and serving another fetch. Name resolution runs under the OS resolver's timeout.
* The body cap counts DECOMPRESSED bytes, so a gzip bomb or an endless body stops at the cap.
* Kept-alive connections are reused when the response ends cleanly: a whole body, a 304, or an
  unneeded error/redirect body of known length up to 64 KiB, read before the deadline. Any
  other unread body (unsized, larger, trickling past the deadline) drops its connection.
* Redirects are followed by hand (at most ``max_redirects`` hops, http/https targets only, a
  loop is reported as one). ``moved_to`` is where the unbroken run of permanent redirects
  (301/308) from the requested URL ends: ``A -301-> B -302-> C`` moves the feed to B.
* No server-side request forgery through redirects: a fetch whose URL is on a public address
  never sends a request to a loopback, private, link-local (cloud metadata) or otherwise
  non-public address (``internal_address``). The address checked is the one connected to,
  before anything is sent on it, so a name resolving elsewhere the second time changes
  nothing; a feed whose own URL is on such an address (an intranet feed) may be redirected
  within it. Through an HTTP proxy the proxy resolves names, and only its rules apply.
  ``Fetched.internal`` says which kind of feed it was; the article pages a public feed links
  to are fetched with ``public_only``: no hop of theirs, the first included, may go inside.
* 410 → ``FetchError(gone=True)``; 429/503 → ``FetchError(retry_after=...)``; any other status
  outside 2xx/304 → ``FetchError(status=...)`` with reason ``"HTTP 404 Not Found"``. An empty
  200 is ``body=b""``: whether that is a feed is the parser's call.
* Network failures become ``FetchError`` with a one-line reason ("could not resolve host X",
  "connection refused", "TLS error: ...", "timed out after 20s"), translated in
  ``_HttpFetch._wrap_errors`` only. The cause chained is the innermost OS/TLS error, whose
  text never holds the URL's path or query; every URL shown goes through ``redact_url``.
* Proxies (``http_proxy``, ``no_proxy``, ...) and the CA bundle (``REQUESTS_CA_BUNDLE``) come
  from the environment by requests' own rules (``trust_env``), but ``~/.netrc`` is NOT read:
  the daemon's user's passwords must not go to whichever host a feed names; credentials
  belong in the feed's URL (``https://user:pass@host/...``).
* A local path or ``file://`` URL is read from disk under the same cap; its ETag is derived
  from mtime and size, so an unchanged file gives a 304-like ``Fetched(body=None)``.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import http.client
import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

from watcher import __version__
from watcher.backoff import parse_retry_after
from watcher.errors import FetchError, redact_url
from watcher.types import Fetched

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
USER_AGENT = f"watcher/{__version__} (+https://github.com/watcher-feeds/watcher; feed monitor)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"

#: The largest unneeded body (error page, redirect) read to keep its connection alive.
_DRAIN_BYTES = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Fetcher:
    """Fetches feeds through one shared ``requests.Session``. See the module docstring for rules."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        user_agent: str = USER_AGENT,
        internal: Callable[[str], str | None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        #: What kind of non-public address an IP address is, or None (a test seam: on loopback
        #: every address is internal).
        self.internal = internal or internal_address
        self._session = requests.Session()
        # No retries here: retrying is the pipeline's job (backoff per feed).
        adapter = _WatchedAdapter(max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # Set explicitly: requests adds br/zstd when those packages happen to be installed.
        self._session.headers.update({"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"})

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        timeout: float,
        accept: str = ACCEPT,
        public_only: bool = False,
    ) -> Fetched:
        """Fetch ``url`` (http, https, ``file://`` or a local path) within ``timeout`` seconds in total,
        sending the validators stored from the last fetch; a 304 returns the server's new ones, else
        those given, so the caller can store ``Fetched.etag`` / ``last_modified`` as they are.
        With ``public_only`` (an article a public feed links to) no hop may reach a non-public address.

        Raises:
            FetchError: with a one-line ``reason``; ``status``, ``retry_after``, ``gone`` if it answered.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            raise FetchError(redact_url(url), "invalid URL") from None
        if scheme in ("http", "https"):
            fetch = _HttpFetch(self._session, url, timeout, self.max_bytes, self.max_redirects, self.internal)
            if public_only:
                fetch.inside = False
            return fetch.run(etag=etag, last_modified=last_modified, accept=accept)
        # A one-letter scheme is a Windows drive ("C:\feeds\x.xml"), not a URL.
        if scheme in ("", "file") or len(scheme) == 1:
            return self._fetch_file(url, etag=etag)
        raise FetchError(redact_url(url), f"unsupported URL scheme {scheme!r} (use http, https or a file path)")

    def close(self) -> None:
        """Close the pooled connections. Call once no fetch is in progress."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fetch_file(self, url: str, *, etag: str | None) -> Fetched:
        shown = redact_url(url)
        path = _local_path(url)
        try:
            # O_NONBLOCK so a FIFO cannot block the open; regular files ignore it.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    # Directories, devices (/dev/zero is endless) and pipes are no feed files.
                    raise FetchError(shown, "not a regular file")
                tag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
                modified = email.utils.formatdate(st.st_mtime, usegmt=True)
                headers = {"etag": tag, "last-modified": modified}
                if etag == tag:
                    return Fetched(url=url, status=304, body=None, headers=headers, etag=tag, last_modified=modified)
                if st.st_size > self.max_bytes:
                    raise _too_large(url, self.max_bytes, "file")
                with os.fdopen(fd, "rb", closefd=False) as f:
                    # One byte past the cap: the file may have grown since fstat.
                    body = f.read(self.max_bytes + 1)
            finally:
                os.close(fd)
        except FileNotFoundError as e:
            raise FetchError(shown, "file not found") from e
        except PermissionError as e:
            raise FetchError(shown, "permission denied") from e
        except OSError as e:
            raise FetchError(shown, f"could not read file: {(e.strerror or type(e).__name__).lower()}") from e
        if len(body) > self.max_bytes:
            raise _too_large(url, self.max_bytes, "file")
        headers["content-length"] = str(len(body))
        return Fetched(url=url, status=200, body=body, headers=headers, etag=tag, last_modified=modified)


class _HttpFetch:
    """One HTTP(S) fetch: its deadline, its redirect hops, and its error translation."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        timeout: float,
        max_bytes: int,
        max_redirects: int,
        internal: Callable[[str], str | None],
    ) -> None:
        self.session = session
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.url = url
        self.shown = redact_url(url)
        self.timeout = timeout
        self.internal = internal
        #: The URL of the hop in progress (differs from ``url`` after a redirect).
        self.hop = url
        #: Whether the first hop (the feed's own URL) went to a non-public address; None before it.
        self.inside: bool | None = None

    def check_peer(self, address: str) -> None:
        """Refuse to talk to a non-public ``address`` on a hop after a public first one.

        Called by the connection with the address it is connected to, before each request.
        """
        kind = self.internal(address)
        if self.inside is None:
            self.inside = kind is not None
        elif kind is not None and not self.inside:
            host = urlsplit(self.hop).hostname
            what = "redirect" if self.hop != self.url else "link"
            raise FetchError(
                self.shown, f"{what} to a {kind} address refused: {host} is {address}, the feed's URL is public"
            )

    def run(self, *, etag: str | None, last_modified: str | None, accept: str) -> Fetched:
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        seen = {self.url}
        moved_to: str | None = None
        permanent_so_far = True
        with _Deadline(self.timeout) as deadline, _fetching(self):
            for _ in range(self.max_redirects + 1):
                with self._wrap_errors(deadline):
                    if deadline.expired:
                        raise self._timed_out()
                    response = self.session.get(
                        self.hop,
                        headers=headers,
                        stream=True,
                        allow_redirects=False,
                        auth=_url_credentials(self.hop),
                        # Connecting and sending stop by the deadline through the socket timeout.
                        timeout=deadline.remaining(),
                    )
                    with response:
                        if response.status_code not in _REDIRECT_STATUSES:
                            return self._finish(response, deadline, etag, last_modified, moved_to)
                        # A redirect's body is never needed: read only to reuse the connection.
                        self._drain(response, deadline)
                        target = self._redirect_target(response)
                permanent_so_far = permanent_so_far and response.status_code in (301, 308)
                if permanent_so_far:
                    moved_to = target
                if target in seen:
                    raise FetchError(self.shown, f"redirect loop at {redact_url(target)}")
                seen.add(target)
                self.hop = target
        raise FetchError(self.shown, f"too many redirects (more than {self.max_redirects})")

    def _redirect_target(self, response: requests.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise FetchError(self.shown, f"HTTP {response.status_code} redirect without a Location header")
        target = urljoin(self.hop, location.strip())
        # A server must not be able to point watcher at file:// or other local resources.
        if urlsplit(target).scheme.lower() not in ("http", "https"):
            raise FetchError(self.shown, f"redirect to an unsupported URL: {redact_url(target)}")
        return target

    def _finish(
        self,
        response: requests.Response,
        deadline: _Deadline,
        etag: str | None,
        last_modified: str | None,
        moved_to: str | None,
    ) -> Fetched:
        status = response.status_code
        headers = {name.lower(): value for name, value in response.headers.items()}
        if moved_to == self.url:
            moved_to = None
        if status != 304 and 200 <= status < 300:
            body, etag, last_modified = self._read_body(response, deadline), None, None
        else:
            self._drain(response, deadline)
            if status != 304:
                raise self._status_error(status, headers)
            body = None  # a 304 keeps the validators given unless it sends new ones
        etag, last_modified = headers.get("etag", etag), headers.get("last-modified", last_modified)
        return Fetched(self.url, status, body, headers, etag, last_modified, moved_to, internal=bool(self.inside))

    def _status_error(self, status: int, headers: dict[str, str]) -> FetchError:
        # The standard phrase, never the server's own: that is a stranger's text.
        try:
            reason = f"HTTP {status} {http.HTTPStatus(status).phrase}"
        except ValueError:
            reason = f"HTTP {status}"
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(headers.get("retry-after"), now=datetime.now(UTC))
            if retry_after is not None:
                reason += f" (retry after {retry_after:.0f}s)"
        return FetchError(self.shown, reason, status=status, retry_after=retry_after, gone=status == 410)

    def _read_body(self, response: requests.Response, deadline: _Deadline) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(self.url, self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        # iter_content decodes gzip/deflate; urllib3 >= 2.6 bounds each decoded chunk to the
        # chunk size, so a bomb is stopped after at most cap + one chunk in memory.
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(self.url, self.max_bytes)
            if deadline.expired:
                raise self._timed_out()
            chunks.append(chunk)
        # Once the watchdog has shut the socket, a body without Content-Length ends like a
        # complete one: only the clock tells a truncated body from a whole one.
        if deadline.expired:
            raise self._timed_out()
        return b"".join(chunks)

    def _drain(self, response: requests.Response, deadline: _Deadline) -> None:
        """Read the rest of a body that is not needed, when that is cheap, to reuse the connection.

        Closing a response with unread bytes drops its connection (a 304's empty body counts as
        unread). Only a body of known remaining length (Content-Length, or none as for a 304)
        of at most ``_DRAIN_BYTES`` is read, raw, before the deadline (whose watchdog still
        bounds it); any failure closes the connection. A hostile body (chunked, unsized, huge,
        late) is never read for the sake of reuse.
        """
        remaining = getattr(response.raw, "length_remaining", None)
        if remaining is None or remaining > min(_DRAIN_BYTES, self.max_bytes) or deadline.expired:
            return
        # Swallows read errors, and urllib3 closes the connection on any of them.
        response.raw.drain_conn()

    def _timed_out(self) -> FetchError:
        return FetchError(self.shown, self._timeout_reason, timed_out=True)

    @property
    def _timeout_reason(self) -> str:
        return f"timed out after {self.timeout:g}s"

    @contextlib.contextmanager
    def _wrap_errors(self, deadline: _Deadline) -> Iterator[None]:
        """Translate requests/urllib3/socket/TLS errors into ``FetchError``: the only such place."""
        try:
            yield
        except FetchError:
            raise
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as e:
            # requests.RequestException is an OSError.
            if deadline.expired:
                # The error is an artifact of the watchdog shutting the socket down.
                raise self._timed_out() from None
            reason, cause = self._describe(e)
            raise FetchError(self.shown, reason, timed_out=reason == self._timeout_reason) from cause

    def _describe(self, error: BaseException) -> tuple[str, BaseException | None]:
        """A one-line reason for a network error, and the error to chain as its cause.

        Only errors from below the libraries (socket, ssl, http.client) are chained: the
        requests/urllib3 wrappers repeat the URL's path and query, which may hold a token.
        """
        chain = _exception_chain(error)
        below = [e for e in chain if not isinstance(e, (requests.RequestException, urllib3.exceptions.HTTPError))]
        underlying = below[0] if below else None

        def find(*types: type[BaseException], among: list[BaseException] = below) -> BaseException | None:
            return next((e for e in among if isinstance(e, types)), None)

        if found := find(socket.gaierror):
            return f"could not resolve host {urlsplit(self.hop).hostname}", found
        if isinstance(found := find(ssl.SSLCertVerificationError), ssl.SSLCertVerificationError):
            return (f"TLS error: certificate verify failed ({found.verify_message})", found)
        if isinstance(found := find(ssl.SSLError), ssl.SSLError):
            detail = (found.reason or "handshake failed").lower().replace("_", " ")
            return f"TLS error: {detail}", found
        if found := find(ConnectionRefusedError):
            return "connection refused", found
        # urllib3's NewConnectionError subclasses its ConnectTimeoutError; it is not a timeout.
        timeouts = [e for e in chain if not isinstance(e, urllib3.exceptions.NewConnectionError)]
        if find(TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout, among=timeouts):
            return self._timeout_reason, find(TimeoutError)
        # ConnectionResetError includes http.client.RemoteDisconnected.
        if found := find(ConnectionResetError):
            return "connection closed by the server", found
        if find(urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError, among=chain):
            return ("could not decompress the response (bad gzip/deflate data)", underlying)
        if find(requests.exceptions.InvalidURL, urllib3.exceptions.LocationValueError, among=chain):
            return "invalid URL", None
        if find(http.client.HTTPException, urllib3.exceptions.ProtocolError, among=chain):
            return ("the server sent a broken response or dropped the connection", underlying)
        if isinstance(found := find(OSError), OSError) and found.strerror:
            return f"network error: {found.strerror.lower()}", found
        return f"network error ({type(error).__name__})", underlying


def _url_credentials(url: str) -> tuple[str, str] | Callable[[requests.PreparedRequest], requests.PreparedRequest]:
    """The ``auth`` of a request to ``url``: the URL's credentials, else none at all (given
    explicitly, so that requests never looks them up in ``~/.netrc``, as it does with none)."""
    user, password = requests.utils.get_auth_from_url(url)
    return (user, password) if user or password else _no_auth


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and everything it wraps, outermost first: requests wraps urllib3 (in ``args``),
    urllib3 wraps socket/ssl errors (in ``reason``, ``args`` or ``__cause__``)."""
    chain: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop(0)
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        linked = (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args)
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return chain


class _Deadline:
    """The total time one fetch may take. Entered, it is the thread's deadline, to which
    ``_WatchedConnection`` hands the socket of each request; at expiry ``_WATCHDOG`` shuts them
    down, and any handed later; once exited, it shuts nothing (the connection may be pooled)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        #: None once the fetch is over.
        self._sockets: list[socket.socket] | None = []
        self._fired = False

    def __enter__(self) -> Self:
        _current.deadline = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _WATCHDOG.forget(self)
        with self._lock:  # the watchdog may still fire it: it must then find nothing to shut
            self._sockets = None
        _current.deadline = None

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.end

    def remaining(self) -> float:
        return max(self.end - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._fired:
                _shutdown(sock)
            elif self._sockets is not None:
                self._sockets.append(sock)

    def fire(self) -> None:
        """Shut the fetch's sockets down, unless the fetch is over. Called by the watchdog."""
        with self._lock:
            if self._sockets is not None:
                self._fired = True
                for sock in self._sockets:
                    _shutdown(sock)


class _Watchdog:
    """One daemon thread that fires the deadlines of the fetches in progress when they end. It
    sleeps until the earliest end or a new deadline (as many as the poll's threads: a short scan)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._deadlines: set[_Deadline] = set()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self._condition:
            self._deadlines.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watcher-fetch-deadlines", daemon=True)
                self._thread.start()
            self._condition.notify()

    def forget(self, deadline: _Deadline) -> None:
        with self._condition:
            self._deadlines.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                due = {d for d in self._deadlines if d.end <= now}
                if not due:
                    self._condition.wait(min((d.end - now for d in self._deadlines), default=None))
                    continue
                self._deadlines -= due
            # Outside the condition: a fetch registering its deadline never waits on a shutdown.
            for deadline in due:
                deadline.fire()


_WATCHDOG = _Watchdog()
_current = threading.local()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter tears down TLS state that the
    # fetching thread is still using. Shutting the fd down wakes its blocked recv() with EOF.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextlib.contextmanager
def _fetching(fetch: _HttpFetch) -> Iterator[None]:
    """``fetch`` is the thread's fetch in progress: its connections show it their peer."""
    _current.fetch = fetch
    try:
        yield
    finally:
        _current.fetch = None


def internal_address(address: str) -> str | None:
    """What kind of non-public address ``address`` is ("loopback", "private", ...), or None
    when it is a public one. IPv4 addresses mapped into IPv6 count as the IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"  # 169.254.169.254: the cloud metadata service
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"  # shared (100.64/10, another cloud's metadata), reserved, multicast
    return None


class _WatchedConnection(HTTPConnection):
    """A urllib3 connection that shows the current fetch the address it is connected to
    before each request, and hands its socket to the fetch's deadline before it waits for an
    answer (a new connection's or a kept-alive one's)."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        fetch = getattr(_current, "fetch", None)
        if fetch is not None and self.proxy is None:
            if self.sock is None:
                self.connect()
            assert self.sock is not None
            fetch.check_peer(self.sock.getpeername()[0])
        super().request(*args, **kwargs)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None and isinstance(self.sock, socket.socket):
            deadline.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools (direct or through an HTTP proxy) use watched connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def _local_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return os.path.expanduser(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(redact_url(url), "file URLs must name a local file (file:///path)")
    return url2pathname(parts.path)


def _too_large(url: str, max_bytes: int, what: str = "response") -> FetchError:
    units = (("MiB", 1 << 20), ("KiB", 1 << 10))
    size = next((f"{max_bytes // n} {unit}" for unit, n in units if max_bytes % n == 0), f"{max_bytes} bytes")
    return FetchError(redact_url(url), f"{what} larger than {size}")
