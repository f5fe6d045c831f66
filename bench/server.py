"""The benchmark's feed site: feed files in a directory and a loopback HTTP server for them.

``FeedSite`` writes the bodies of ``bench.feedgen`` into a directory and is the switch that
adds new entries (it rewrites a feed's file with the next version, atomically).

``serve()`` (``python -m bench.server --root DIR``) is a ``ThreadingHTTPServer`` on 127.0.0.1
that serves those files over HTTP/1.1 keep-alive with a strong ETag and Last-Modified, and
answers conditional requests with 304 (If-None-Match first; If-Modified-Since only when no
If-None-Match was sent, as RFC 9110 says). It runs in its own process so that the benchmark's
measurements do not share a GIL with it, re-reads a file only when its inode, mtime or size
changed, exits when its parent dies or after ``--max-seconds``, and counts what it answered
at ``GET /_stats``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.feedgen import FeedGenerator, etag_of

HOST = "127.0.0.1"
_NAME = re.compile(r"^/([A-Za-z0-9_-]+\.xml)$")


class FeedSite:
    """Feed files ``f0000.xml`` ... in ``root``, each at a version (see ``bench.feedgen``)."""

    def __init__(self, root: Path, generator: FeedGenerator, count: int) -> None:
        self.root = root
        self.generator = generator
        self.count = count
        self.versions = [0] * count

    @staticmethod
    def name(i: int) -> str:
        return f"f{i:04d}"

    def path(self, i: int) -> Path:
        return self.root / f"{self.name(i)}.xml"

    def publish_all(self, version: int = 0) -> int:
        """(Re)write every feed at ``version``; return the total bytes written."""
        total = 0
        for i in range(self.count):
            total += self._write(i, version)
        return total

    def bump(self, fraction: float, rng: random.Random) -> list[int]:
        """Add one new entry to ``fraction`` of the feeds (chosen by ``rng``); return their indices."""
        chosen = sorted(rng.sample(range(self.count), max(1, round(self.count * fraction))))
        for i in chosen:
            self._write(i, self.versions[i] + 1)
        return chosen

    def bodies(self) -> list[bytes]:
        return [self.path(i).read_bytes() for i in range(self.count)]

    def _write(self, i: int, version: int) -> int:
        body = self.generator.body(i, version)
        tmp = self.path(i).with_suffix(".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, self.path(i))
        self.versions[i] = version
        return len(body)


class _Files:
    """Bodies and validators of the served files, re-read only when a file changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, tuple[tuple[int, int, int], bytes, str, str, float]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[bytes, str, str, float] | None:
        path = self.root / name
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1:]
        body = path.read_bytes()
        mtime = int(st.st_mtime)
        entry = (key, body, etag_of(body), formatdate(mtime, usegmt=True), float(mtime))
        with self._lock:
            self._cache[name] = entry
        return entry[1:]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write with Nagle off, as a real server sends them;
    # otherwise a small response waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    wbufsize = 256 * 1024
    server: _Server

    def do_GET(self) -> None:
        if self.path == "/_stats":
            self._send(200, json.dumps(self.server.stats).encode(), "application/json")
            return
        if self.path.startswith("/_latency?ms="):
            self.server.latency = int(self.path.rpartition("=")[2]) / 1000
            self._send(200, b"ok\n", "text/plain")
            return
        if self.server.latency:
            time.sleep(self.server.latency)  # a far server: each request waits, none holds another up
        match = _NAME.match(self.path.split("?", 1)[0])
        found = self.server.files.get(match[1]) if match else None
        if found is None:
            self._count("404")
            self._send(404, b"not found\n", "text/plain")
            return
        body, etag, last_modified, mtime = found
        if self._not_modified(etag, mtime):
            self._count("304")
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            return
        self._count("200")
        kind = "application/atom+xml" if b"<feed" in body[:300] else "application/rss+xml"
        self._send(200, body, f"{kind}; charset=utf-8", {"ETag": etag, "Last-Modified": last_modified})

    def _not_modified(self, etag: str, mtime: float) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return etag in tags or "*" in tags
        ims = self.headers.get("If-Modified-Since")
        if ims is not None:
            try:
                return mtime <= parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _count(self, what: str) -> None:
        with self.server.stats_lock:
            self.server.stats[what] = self.server.stats.get(what, 0) + 1

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would cost more than the request


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, root: Path, port: int) -> None:
        super().__init__((HOST, port), _Handler)
        self.files = _Files(root)
        self.stats: dict[str, int] = {}
        self.stats_lock = threading.Lock()
        #: Seconds added to every feed request (``GET /_latency?ms=50``).
        self.latency = 0.0


def serve(root: Path, port: int = 0, max_seconds: float = 3600.0) -> None:
    """Serve ``root`` on 127.0.0.1 until SIGTERM, the parent's death, or ``max_seconds``.

    Prints ``PORT <n>`` on stdout once listening.
    """
    server = _Server(root, port)
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds

    def watchdog() -> None:
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.5)
        server.shutdown()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    threading.Thread(target=watchdog, name="watchdog", daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


class ServerProcess:
    """``python -m bench.server`` as a child process; a context manager that stops it."""

    def __init__(self, root: Path, python: str, repo: Path, max_seconds: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(repo)}
        self.proc = subprocess.Popen(
            [python, "-m", "bench.server", "--root", str(root), "--max-seconds", str(max_seconds)],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"feed server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.base_url = f"http://{HOST}:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.xml"

    def stats(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"{self.base_url}/_stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def set_latency(self, ms: int) -> None:
        """Add ``ms`` milliseconds to every feed request from now on (0: none)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.base_url}/_latency?ms={ms}", timeout=5) as r:
            r.read()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    serve(args.root, args.port, args.max_seconds)
    sys.exit(0)


if __name__ == "__main__":
    main()
