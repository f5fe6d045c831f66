"""Full article text, cost: 1,000 new headline-only entries whose pages sit on 50 hosts on
loopback, each answer 20 ms late, fetched, extracted and matched by watcher, side by side with
plain ``requests`` plus ``trafilatura`` on the same pages under the same concurrency limits.

    .venv/bin/python bench/fulltext_bench.py [--entries 1000] [--hosts 50] [--latency 0.02] [--gap 1]

* The pages are the 54 real ones of ``shared/corpus/articles``, in turn; each host is a
  loopback server on a port of its own, in a process of its own (it shares no GIL with
  what is measured), answering every request ``--latency`` seconds late. robots.txt is 404
  (no rules), as on most sites.
* **plain**: a pool of 32 threads (watcher's page threads), at most 2 requests at once per
  host and ``--gap`` seconds between the starts of two to one host (watcher's politeness),
  ``requests.get`` then ``trafilatura.extract`` (comments excluded) on each page.
* **watcher**: one ``watcher poll`` (in process, ``Watcher.poll``) of a feed of the 1,000
  headlines on a fresh SQLite file, with the shipped speakers and themes: it fetches the
  feed, stores the entries waiting, fetches every page politely (robots.txt first), extracts
  and matches each in the worker processes and stores its hits; the per-minute cap is lifted
  (it is a guard for small machines, 120 a minute by default).

Prints the two wall times and their ratio (issue 14: at most 2x), and the entries matched on
full text; ``bench/article_quality.py``'s line for the extraction itself.
"""

from __future__ import annotations

import argparse
import http.server
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` and `watcher` from this checkout

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "articles" / "pages"


def serve(ports: multiprocessing.Queue[list[int]], hosts: int, latency: float, entries: int) -> None:
    """The sites: one ThreadingHTTPServer per host (port), each answer late by ``latency``;
    the first also serves the feed of the ``entries`` headlines."""
    pages = [p.read_bytes() for p in sorted(CORPUS.glob("*.html"))]
    feed = b""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(latency)
            path = urlsplit(self.path).path
            if path == "/feed.xml":
                body, kind, status = feed, "application/rss+xml", 200
            elif path.startswith("/p/"):
                body, kind, status = pages[int(path[3:]) % len(pages)], "text/html; charset=utf-8", 200
            else:
                body, kind, status = b"not found", "text/plain", 404
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = []
    for _ in range(hosts):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    bound = [int(s.server_address[1]) for s in servers]
    feed = feed_of(entries, bound)
    ports.put(bound)
    threading.Event().wait()


def page_urls(ports: Sequence[int], entries: int) -> list[str]:
    return [f"http://127.0.0.1:{ports[i % len(ports)]}/p/{i}" for i in range(entries)]


def feed_of(entries: int, ports: Sequence[int]) -> bytes:
    items = "".join(
        f"<item><title>Headline number {i}</title><link>{escape(url)}</link><guid>e{i}</guid></item>"
        for i, url in enumerate(page_urls(ports, entries))
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Search</title>{items}</channel></rss>'.encode()


def plain(urls: Sequence[str], gap: float, threads: int = 32, per_host: int = 2) -> tuple[float, int]:
    """requests + trafilatura, politely: return the wall time and the pages with text."""
    import requests
    import trafilatura

    locks = {urlsplit(u).netloc: threading.Semaphore(per_host) for u in urls}
    starts = dict.fromkeys(locks, 0.0)
    clock = threading.Lock()
    local = threading.local()

    def one(url: str) -> bool:
        host = urlsplit(url).netloc
        with locks[host]:
            with clock:
                start = max(time.monotonic(), starts[host])
                starts[host] = start + gap
            time.sleep(max(0.0, start - time.monotonic()))
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            body = session.get(url, timeout=20).content
        return bool(trafilatura.extract(body, url=url, include_comments=False, include_tables=True))

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        found = sum(pool.map(one, urls))
    return time.perf_counter() - began, found


def watcher_poll(ports: Sequence[int], gap: float, directory: Path) -> tuple[float, int, int]:
    """One poll of the feed by watcher: return the wall time, entries with full text, hits."""
    import dataclasses
    import sqlite3

    from watcher.config import ArticleSettings, load_config
    from watcher.fetch import Fetcher
    from watcher.pages import Pages
    from watcher.pipeline import Articles
    from watcher.service import make_watcher
    from watcher.workers import default_workers

    shipped = load_config(REPO / "feeds.yaml", env={})
    database = directory / "bench.db"
    (directory / "feeds.yaml").write_text(
        f"""
database: sqlite:///{database}
defaults: {{timeout: 20s, alert_on_first_poll: true}}
feeds:
  - {{name: search, url: "http://127.0.0.1:{ports[0]}/feed.xml"}}
""",
        encoding="utf-8",
    )
    config = dataclasses.replace(
        load_config(directory / "feeds.yaml", env={}),
        speakers=shipped.speakers,
        themes=shipped.themes,
        articles=ArticleSettings(wait=timedelta(minutes=10)),
    )
    fetcher = Fetcher()
    workers = default_workers(config.speakers, config.themes)
    watcher = make_watcher(config, channels={}, fetcher=fetcher, workers=workers, articles=None)
    watcher.articles.pages.close()
    pages = Pages(fetcher, gap=gap, per_minute=1_000_000)
    watcher.articles = Articles(config, store=watcher.store, pages=pages, workers=workers, now=watcher.now)
    try:
        began = time.perf_counter()
        results = watcher.poll()
        seconds = time.perf_counter() - began
    finally:
        watcher.close()
    with sqlite3.connect(database) as db:
        (full,) = db.execute("SELECT count(*) FROM entries WHERE article_text IS NOT NULL").fetchone()
    return seconds, full, sum(r.hits for r in results)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between two requests' starts to one host")
    args = parser.parse_args(argv)

    ports_queue: multiprocessing.Queue[list[int]] = multiprocessing.Queue()
    site = multiprocessing.Process(
        target=serve, args=(ports_queue, args.hosts, args.latency, args.entries), daemon=True
    )
    site.start()
    ports = ports_queue.get(timeout=60)
    try:
        urls = page_urls(ports, args.entries)
        plain_seconds, plain_found = plain(urls, args.gap)
        with tempfile.TemporaryDirectory() as directory:
            watcher_seconds, full, hits = watcher_poll(ports, args.gap, Path(directory))
    finally:
        site.terminate()
    result = {
        "entries": args.entries,
        "hosts": args.hosts,
        "latency_s": args.latency,
        "host_gap_s": args.gap,
        "cpus": os.cpu_count(),
        "plain_requests_trafilatura_s": round(plain_seconds, 2),
        "plain_pages_with_text": plain_found,
        "watcher_poll_s": round(watcher_seconds, 2),
        "watcher_entries_full_text": full,
        "watcher_hits": hits,
        "ratio": round(watcher_seconds / plain_seconds, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
