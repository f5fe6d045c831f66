"""The 304 floor of ``watcher.fetch``: N conditional fetches through ``Fetcher`` vs plain requests.

Usage: ``python bench/fetch_floor.py [--feeds 1000] [--threads 8] [--rounds 3]``

A loopback HTTP/1.1 keep-alive server in a child process (so it does not share this process's
GIL) answers every ``/feed/<i>`` with 304 when If-None-Match matches and counts the TCP
connections it accepts. Measured, best of ``--rounds``:

* floor: one ``requests.Session``, the N conditional GETs sequentially (as ``bench/floor.py``);
* watcher: one ``Fetcher``, the N conditional fetches from a pool of ``--threads`` threads.

Printed: wall and CPU seconds, the ratio to the floor, and connections accepted per round.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from watcher.fetch import Fetcher

ETAG = '"v1"'

_SERVER = r"""
import http.server, sys, threading
accepted = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/stats":
            body = str(accepted).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
        else:
            body = b"<rss/>"
            self.send_response(200)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    def process_request(self, request, address):
        global accepted
        with lock:
            accepted += 1
        super().process_request(request, address)
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def accepted(base: str) -> int:
    """TCP connections the server has accepted so far (this query's own included)."""
    with requests.Session() as s:
        s.trust_env = False
        return int(s.get(f"{base}/stats", timeout=10).text)


def floor(urls: list[str]) -> None:
    with requests.Session() as s:
        for url in urls:
            r = s.get(url, headers={"If-None-Match": ETAG}, timeout=30)
            if r.status_code != 304:
                raise RuntimeError(f"{url}: expected 304, got {r.status_code}")


def watcher(urls: list[str], threads: int) -> None:
    with Fetcher() as fetcher, ThreadPoolExecutor(max_workers=threads) as pool:
        for got in pool.map(lambda u: fetcher.fetch(u, etag=ETAG, timeout=30), urls):
            if not got.not_modified:
                raise RuntimeError(f"expected 304, got {got.status}")


def measure(name: str, base: str, work: Callable[[], None], rounds: int) -> float:
    """Print the best of ``rounds`` runs of ``work`` (wall, CPU, connections); return its wall."""
    best = (float("inf"), 0.0, 0)
    for _ in range(rounds):
        before = accepted(base)
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        conns = accepted(base) - before - 1  # the /stats request after `before` is one
        best = min(best, (wall, cpu, conns))
    print(f"{name:<40} wall {best[0]:6.3f} s  cpu {best[1]:6.3f} s  connections {best[2]}")
    return best[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        urls = [f"{base}/feed/{i}" for i in range(args.feeds)]
        plain = measure("floor: requests, sequential", base, lambda: floor(urls), args.rounds)
        ours = measure(
            f"watcher: Fetcher, {args.threads} threads",
            base,
            lambda: watcher(urls, args.threads),
            args.rounds,
        )
        print(f"ratio watcher / floor: {ours / plain:.2f} (target <= 1.5)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
