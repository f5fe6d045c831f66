"""A real loopback HTTP(S) server for tests: files, canned responses and hand-written handlers.

Usage::

    from tests.httpserver import LoopbackServer, trickle

    with LoopbackServer(root="tests/data") as server:          # files under root, by path
        server.respond("/gone.xml", status=410)                  # a canned response
        server.respond("/feed.xml", b"<rss/>", headers={"Content-Type": "application/rss+xml"})
        server.route("/slow.xml", trickle(b"<rss/>", interval=1.0))   # full control
        url = server.url("/feed.xml")                             # "http://127.0.0.1:PORT/feed.xml"
        ...
        server.requests                      # every request so far, in order: RecordedRequest
        server.requests_for("/feed.xml")[-1].headers["if-none-match"]

API:

``LoopbackServer(root=None, *, tls=None, etag=True, last_modified=True, headers=None, host="127.0.0.1")``
    ``root``: a directory served read-only (no listings, no ``..`` escape). ``tls``: a
    server-side ``ssl.SSLContext`` to serve HTTPS (``trustme``: ``ca.issue_cert("127.0.0.1")``
    then ``cert.configure_cert(ctx)``). ``etag`` / ``last_modified``: whether files and canned
    200 responses carry those validators. ``headers``: added to every file and canned response.
    A context manager (or ``start()`` / ``stop()``); binds ``host`` (another loopback address
    such as 127.0.0.2 stands for another machine) on an ephemeral port.
``.base_url`` / ``.url(path="/")``
    ``http(s)://127.0.0.1:PORT`` and a URL under it.
``.respond(path, body=b"", *, status=200, headers=None)``
    A canned response for any method; replaces an earlier one for that path.
``.route(path, handler)``
    ``handler(request)`` gets the ``http.server.BaseHTTPRequestHandler`` (``request.path``,
    ``request.headers``, ``request.body`` for POST/PUT) and writes status, headers and body itself
    (``send_response``, ``send_header``, ``end_headers``, ``wfile.write``). The server speaks
    HTTP/1.1 keep-alive, so send ``Content-Length`` or ``Connection: close``. Handlers that loop
    must end when ``server.stopping`` (a ``threading.Event``) is set or the client goes away.
``.requests`` / ``.requests_for(path)`` / ``.clear_requests()``
    What clients sent: ``RecordedRequest(method, path, headers, body)``; ``path`` keeps the
    query string, header names are lower-case. Recorded before the response is written.

Rules: a request's path (query ignored) is looked up as route, then canned response, then
file under ``root``; else 404. Files and canned 200s answer 304 to a matching If-None-Match,
or, when no If-None-Match is sent, to an If-Modified-Since not older than Last-Modified
(RFC 9110 precedence). ETags are a hash of the body; a file's Last-Modified is its mtime.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

Handler = Callable[["_RequestHandler"], None]

_CONTENT_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".rdf": "application/rdf+xml",
    ".json": "application/json",
    ".html": "text/html",
    ".htm": "text/html",
    ".txt": "text/plain",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    #: The request target, query string included.
    path: str
    #: Lower-cased header names.
    headers: dict[str, str]
    #: The request body (POST/PUT), else b"".
    body: bytes = b""


@dataclass(frozen=True)
class _Canned:
    body: bytes
    status: int
    headers: dict[str, str]
    last_modified: float


class LoopbackServer:
    """A threaded HTTP(S) server on a loopback address. See the module docstring for the API."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        etag: bool = True,
        last_modified: bool = True,
        headers: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.host = host
        self.tls = tls
        self.etag = etag
        self.last_modified = last_modified
        self.headers = dict(headers or {})
        #: Set when the server stops; looping handlers must end when it is set.
        self.stopping = threading.Event()
        self._routes: dict[str, Handler] = {}
        self._canned: dict[str, _Canned] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        self._httpd = _Server((self.host, 0), _RequestHandler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="loopback-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- content ---------------------------------------------------------------------------

    def respond(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer every request for ``path`` with this status, body and headers."""
        with self._lock:
            self._canned[path] = _Canned(body, status, dict(headers or {}), time.time())

    def route(self, path: str, handler: Handler) -> None:
        """Let ``handler`` write the whole response for ``path``."""
        with self._lock:
            self._routes[path] = handler

    # -- what clients sent -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """Requests whose path (query ignored) is ``path``."""
        return [r for r in self.requests if urlsplit(r.path).path == path]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- used by the request handler -------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _lookup(self, path: str) -> Handler | _Canned | Path | None:
        with self._lock:
            if path in self._routes:
                return self._routes[path]
            if path in self._canned:
                return self._canned[path]
        if self.root is None:
            return None
        candidate = (self.root / unquote(path).lstrip("/")).resolve()
        if candidate.is_file() and candidate.is_relative_to(self.root):
            return candidate
        return None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[http.server.BaseHTTPRequestHandler],
        owner: LoopbackServer,
    ) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def finish_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so a client that
        # rejects the certificate (or stalls) never blocks accepting other connections.
        if self.owner.tls is None or not isinstance(request, socket.socket):
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.owner.tls.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError included: the client refused our certificate
            return
        with wrapped:
            super().finish_request(wrapped, client_address)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # Clients hanging up mid-response is what half of the tests do on purpose.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle kept-alive connection frees its thread after this long.
    timeout = 30
    server: _Server
    #: The request body (POST/PUT), for route handlers.
    body: bytes = b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        length = self.headers.get("Content-Length", "")
        self.body = self.rfile.read(int(length)) if length.isdigit() else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner._record(RecordedRequest(self.command, self.path, headers, self.body))
        target = owner._lookup(urlsplit(self.path).path)
        if target is None:
            self._send(404, b"not found\n", {"Content-Type": "text/plain"})
        elif isinstance(target, _Canned):
            self._send_validated(target.status, target.body, target.headers, target.last_modified)
        elif isinstance(target, Path):
            if self.command not in ("GET", "HEAD"):
                self._send(405, b"", {"Allow": "GET, HEAD"})
                return
            content_type = _CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream")
            body = target.read_bytes()
            self._send_validated(200, body, {"Content-Type": content_type}, target.stat().st_mtime)
        else:
            target(self)

    def _send_validated(self, status: int, body: bytes, headers: dict[str, str], mtime: float) -> None:
        owner = self.server.owner
        validators = {}
        if status == 200 and owner.etag:
            validators["ETag"] = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if status == 200 and owner.last_modified:
            validators["Last-Modified"] = email.utils.formatdate(mtime, usegmt=True)
        all_headers = {**validators, **owner.headers, **headers}
        if validators and self._not_modified(validators):
            self._send(
                304,
                b"",
                {k: v for k, v in all_headers.items() if k.lower() != "content-type"},
            )
        else:
            self._send(status, body, all_headers)

    def _not_modified(self, validators: dict[str, str]) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            sent = {tag.strip() for tag in if_none_match.split(",")}
            return "*" in sent or validators.get("ETag") in sent
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since and "Last-Modified" in validators:
            with contextlib.suppress(TypeError, ValueError):
                since = email.utils.parsedate_to_datetime(if_modified_since)
                modified = email.utils.parsedate_to_datetime(validators["Last-Modified"])
                return modified <= since
        return False

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        has_length = any(name.lower() == "content-length" for name in headers)
        for name, value in headers.items():
            self.send_header(name, value)
        if not has_length and status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != 304:
            self.wfile.write(body)


def trickle(body: bytes, *, interval: float = 1.0, headers: dict[str, str] | None = None) -> Handler:
    """A handler that sends its headers at once, then ``body`` one byte every ``interval`` seconds."""

    def handler(request: _RequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        for i in range(len(body)):
            if request.server.owner.stopping.wait(interval):
                return
            request.wfile.write(body[i : i + 1])
            request.wfile.flush()

    return handler


def endless(chunk: bytes = b"<item>" * 1000, *, headers: dict[str, str] | None = None) -> Handler:
    """A handler that streams ``chunk`` forever (no Content-Length) until the client hangs up."""

    def handler(request: _RequestHandler) -> None:
        request.send_response(200)
        request.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.close_connection = True
        while not request.server.owner.stopping.is_set():
            request.wfile.write(chunk)  # raises once the client has closed the connection

    return handler
