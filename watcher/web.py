"""The daemon's HTTP endpoint: ``/healthz``, ``/readyz``, ``/metrics`` and the status page ``/``.

The standard library's ``ThreadingHTTPServer`` in a thread of the daemon: four read-only
routes need no framework, and it adds nothing to install and about a megabyte to the
daemon's memory. Each request reads the database through the daemon's ``Store`` (thread-safe)
and the daemon's state; nothing here writes.

With ``http.token`` set, every route asks for it, as ``Authorization: Bearer TOKEN`` or as the
password of HTTP basic auth (any user name: browsers ask for one); without it, 401. The
config refuses to listen beyond loopback without a token (``config.HttpSettings``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http.server
import json
import logging
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from watcher import __version__
from watcher.config import HttpSettings, format_duration
from watcher.dashboard import CHART_DAYS, status_page
from watcher.errors import StorageError, WatcherError
from watcher.logs import event
from watcher.render import iso_time

if TYPE_CHECKING:
    from watcher.service import Daemon

log = logging.getLogger(__name__)

#: Rows of each kind the status page lists, newest first.
PAGE_ROWS = 50
#: Seconds a client may take to send its request: a slow one holds only its own thread.
REQUEST_TIMEOUT = 30

#: The page has no script; this says so to the browser, so that even markup that slipped
#: through could run nothing.
_HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class StatusServer:
    """The endpoint, listening from construction until ``close``."""

    def __init__(self, settings: HttpSettings, daemon: Daemon) -> None:
        """Raises:
        WatcherError: the address cannot be listened on (taken, not this host's, not allowed).
        """
        assert settings.listen is not None
        host, port = settings.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = _Server((host, port), family, settings.token, daemon)
        except OSError as e:
            raise WatcherError(
                f"cannot listen on {settings.address}: {e.strerror or e}", "change http.listen or --http"
            ) from None
        bound = self._server.server_address
        self.port = int(bound[1])
        self.url = f"http://{settings.address.rsplit(':', 1)[0]}:{self.port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="http", daemon=True
        )
        self._thread.start()
        guarded = "token required" if settings.token else "no token: loopback only"
        log.info(
            "status page, /metrics, /healthz and /readyz on %s (%s)",
            self.url,
            guarded,
            extra=event("http.listening", url=self.url, token=settings.token is not None),
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int, token: str | None, daemon: Daemon) -> None:
        self.address_family = family
        self.token = token
        self.daemon = daemon
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A bug, not the client (STYLE rule 4): logged with its traceback, and the daemon goes on.
        log.critical("http: unexpected error answering %s", client_address[0], exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    # Headers and body go out as two writes: with Nagle's algorithm on, a keep-alive client's
    # delayed ACK would hold the body back about 40 ms.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return f"watcher/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        if not self._authorized():
            self._send(
                401,
                _json({"error": "a token is required: Authorization: Bearer TOKEN, or basic auth with it as password"}),
                "application/json",
                body,
                {"WWW-Authenticate": 'Basic realm="watcher", charset="UTF-8"'},
            )
            return
        route = _ROUTES.get(urlsplit(self.path).path)
        if route is None:
            self._send(
                404, _json({"error": "not found; try /, /healthz, /readyz or /metrics"}), "application/json", body
            )
            return
        try:
            status, content, content_type, headers = route(self.server.daemon)
        except WatcherError as e:  # e.g. the database is down: the page cannot be made now
            log.error("http: %s: %s", self.path, e)
            status, content, content_type, headers = 503, _json({"error": str(e)}), "application/json", {}
        self._send(status, content, content_type, body, headers)

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer":
            offered = value.strip()
        elif scheme.lower() == "basic":
            try:
                offered = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        else:
            return False
        return hmac.compare_digest(offered.encode("utf-8"), token.encode("utf-8"))

    def _send(
        self, status: int, content: bytes, content_type: str, body: bool, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(content)


_Answer = tuple[int, bytes, str, dict[str, str]]


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def _healthz(daemon: Daemon) -> _Answer:
    live = daemon.liveness()
    since = live.last_cycle or live.started
    body = {
        "status": "ok" if live.alive else "stalled",
        "version": __version__,
        "started": iso_time(live.started),
        "last_cycle": iso_time(live.last_cycle),
        "cycle_interval": format_duration(live.interval) if live.interval else None,
        "seconds_since_cycle": round((live.now - since).total_seconds(), 3),
    }
    return (200 if live.alive else 503), _json(body), "application/json", {}


def _readyz(daemon: Daemon) -> _Answer:
    store = daemon.watcher.store
    body: dict[str, Any] = {"status": "not ready", "database": "ok", "schema": None, "schema_head": None}
    try:
        body["schema"], body["schema_head"] = store.revisions()
    except StorageError as e:
        body["database"] = str(e)
        return 503, _json(body), "application/json", {}
    if body["schema"] != body["schema_head"]:
        body["database"] = (
            f"schema at {body['schema'] or 'nothing'}, not {body['schema_head']}: run `watcher db upgrade`"
        )
        return 503, _json(body), "application/json", {}
    body["status"] = "ready"
    return 200, _json(body), "application/json", {}


def _metrics(daemon: Daemon) -> _Answer:
    watcher = daemon.watcher
    if watcher.metrics is None:  # the daemon always has them with its endpoint; a test may not
        return 404, _json({"error": "no metrics in this process"}), "application/json", {}
    from watcher.metrics import CONTENT_TYPE

    now = watcher.now()
    try:
        overview = watcher.store.overview(now)
    except StorageError as e:
        log.error("metrics: cannot read the database: %s", e)
        overview = None
    return 200, watcher.metrics.exposition(overview, now), CONTENT_TYPE, {}


def _page(daemon: Daemon) -> _Answer:
    watcher = daemon.watcher
    store = watcher.store
    now = watcher.now()
    live = daemon.liveness()
    outbox = [item for status in ("due", "failed", "dead") for item in store.list_outbox(status, limit=PAGE_ROWS)]
    html = status_page(
        feeds=store.feed_states([f.name for f in watcher.config.feeds]),
        hits=store.list_hits(limit=PAGE_ROWS),
        outbox=outbox,
        per_day=store.hits_per_day(now - timedelta(days=CHART_DAYS)),
        now=now,
        version=__version__,
        started=live.started,
        last_cycle=live.last_cycle,
        alive=live.alive,
    )
    return 200, html.encode("utf-8"), "text/html; charset=utf-8", _HTML_HEADERS


_ROUTES = {"/": _page, "/healthz": _healthz, "/readyz": _readyz, "/metrics": _metrics}
