"""Article pages fetched politely (``watcher.pages``), measured on loopback servers: at most
2 requests at once per host, the per-host gap held, robots.txt fetched once per host and
obeyed, a global per-minute cap, and the feeds' fetch rules (status, deadline, forgery)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, wait

import pytest

from tests.conftest import wait_for
from tests.httpserver import LoopbackServer, _RequestHandler
from watcher.errors import ArticleError
from watcher.fetch import Fetcher
from watcher.pages import Page, Pages

GAP = 0.3
HTML = b"<html><body><article><p>" + b"Words of the article. " * 20 + b"</p></article></body></html>"


class Visits:
    """A page handler that records when each request to its server started and ended, and how
    many were in flight at once; it answers after ``delay`` (the server's latency)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.starts: list[float] = []

    def __call__(self, request: _RequestHandler) -> None:
        with self.lock:
            self.starts.append(time.monotonic())
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        request.send_response(200)
        request.send_header("Content-Type", "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(HTML)))
        request.end_headers()
        request.wfile.write(HTML)


def site(server: LoopbackServer, pages: int, delay: float) -> tuple[Visits, list[str]]:
    visits = Visits(delay)
    paths = [f"/news/{i}" for i in range(pages)]
    for path in paths:
        server.route(path, visits)
    server.respond("/robots.txt", b"User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
    return visits, [server.url(p) for p in paths]


@pytest.fixture
def pages() -> Iterator[Pages]:
    fetcher = Fetcher()
    polite = Pages(fetcher, gap=GAP, per_minute=1000)
    yield polite
    polite.close()
    fetcher.close()


def test_two_requests_at_most_per_host_the_gap_held_and_robots_read_once(pages: Pages) -> None:
    with LoopbackServer() as slow, LoopbackServer(host="127.0.0.2") as quick:
        slow_visits, slow_urls = site(slow, 8, delay=0.6)
        quick_visits, quick_urls = site(quick, 3, delay=0.0)
        futures = {u: pages.get(u, timeout=10, public_only=False) for u in slow_urls + quick_urls}
        done, _ = wait(futures.values(), timeout=60)
        assert len(done) == len(futures)
        assert all(isinstance(f.result(), Page) for f in done)
        for server, visits in ((slow, slow_visits), (quick, quick_visits)):
            assert len(server.requests_for("/robots.txt")) == 1, "robots.txt once per host"
            gaps = [b - a for a, b in zip(visits.starts, visits.starts[1:], strict=False)]
            # Measured where the requests arrive: a little slack for the loopback's own latency.
            assert min(gaps) >= GAP - 0.05, f"starts closer than the gap: {min(gaps):.3f}s"
            assert all(r.headers["user-agent"].startswith("watcher/") for r in server.requests)
        print(f"\nmost in flight: slow host {slow_visits.most}, quick host {quick_visits.most}")
        assert slow_visits.most == 2, "at most two at once, and two when pages are slow"
        # The quick host's pages did not queue behind the slow one's.
        assert max(quick_visits.starts) < slow_visits.starts[5]


def test_robots_disallowed_pages_are_refused_without_a_request(pages: Pages) -> None:
    with LoopbackServer() as server:
        _, urls = site(server, 1, delay=0.0)
        server.respond("/private/story", HTML, headers={"Content-Type": "text/html"})
        refused = pages.get(server.url("/private/story"), timeout=10, public_only=False)
        allowed = pages.get(urls[0], timeout=10, public_only=False)
        with pytest.raises(ArticleError, match=r"disallowed by robots\.txt"):
            refused.result(timeout=30)
        assert allowed.result(timeout=30).body == HTML
        assert server.requests_for("/private/story") == []


def test_a_host_without_robots_txt_has_no_rules_and_one_whose_robots_fails_is_kept_off(pages: Pages) -> None:
    with LoopbackServer() as none, LoopbackServer(host="127.0.0.2") as broken:
        none.respond("/a", HTML, headers={"Content-Type": "text/html"})
        broken.respond("/robots.txt", status=503)
        broken.respond("/a", HTML, headers={"Content-Type": "text/html"})
        assert pages.get(none.url("/a"), timeout=10, public_only=False).result(timeout=30).body == HTML
        with pytest.raises(ArticleError, match=r"robots.txt could not be read \(HTTP 503"):
            pages.get(broken.url("/a"), timeout=10, public_only=False).result(timeout=30)
        assert broken.requests_for("/a") == []


def test_failures_carry_the_reason_of_the_feeds_fetch_rules(pages: Pages) -> None:
    with LoopbackServer() as server:
        server.respond("/robots.txt", b"", headers={"Content-Type": "text/plain"})
        with pytest.raises(ArticleError, match="HTTP 404 Not Found"):
            pages.get(server.url("/missing"), timeout=10, public_only=False).result(timeout=30)

        def hang(request: _RequestHandler) -> None:
            server.stopping.wait(30)

        server.route("/hang", hang)
        started = time.monotonic()
        with pytest.raises(ArticleError, match=r"timed out after 0\.5s"):
            pages.get(server.url("/hang"), timeout=0.5, public_only=False).result(timeout=30)
        assert time.monotonic() - started < 5


def test_a_public_feeds_link_to_a_loopback_page_is_refused(pages: Pages) -> None:
    with LoopbackServer() as server:
        server.respond("/a", HTML, headers={"Content-Type": "text/html"})
        with pytest.raises(ArticleError, match="loopback address refused"):
            pages.get(server.url("/a"), timeout=10, public_only=True).result(timeout=30)
        assert server.requests_for("/a") == []


def test_the_per_minute_cap_holds_requests_back() -> None:
    fetcher = Fetcher()
    polite = Pages(fetcher, gap=0, per_minute=3)
    try:
        with LoopbackServer() as server:
            _, urls = site(server, 4, delay=0.0)
            futures: list[Future[Page]] = [polite.get(u, timeout=10, public_only=False) for u in urls]
            wait_for(lambda: sum(f.done() for f in futures) == 2, "the pages within the cap")
            time.sleep(0.3)  # what the cap holds back stays held
            assert len(server.requests) == 3, "robots.txt and two pages: three requests in the minute"
            assert sum(f.done() for f in futures) == 2
    finally:
        polite.close()
        fetcher.close()
    with pytest.raises(ArticleError, match="watcher is stopping"):
        futures[-1].result(timeout=5)
