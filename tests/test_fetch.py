"""fetch: request-level cases with ``responses``; hostile servers on real loopback sockets."""

from __future__ import annotations

import gzip
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import trustme

from tests.httpserver import Handler, LoopbackServer, endless, trickle
from watcher.backoff import parse_retry_after
from watcher.errors import FetchError
from watcher.fetch import Fetcher, internal_address

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy in the environment would capture loopback and .invalid requests.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher() as f:
        yield f


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def fetch_error(fetcher: Fetcher, url: str, timeout: float = 20, etag: str | None = None) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url, timeout=timeout, etag=etag)
    return info.value


# -- request level (responses) ----------------------------------------------------------


def test_ok_gives_body_validators_and_lowercase_headers(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get(
        "https://example.org/rss",
        body=FEED,
        headers={"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"},
        content_type="application/rss+xml",
    )
    got = fetcher.fetch("https://example.org/rss", timeout=20)
    assert (got.status, got.body, got.not_modified) == (200, FEED, False)
    assert (got.etag, got.last_modified) == ('"v1"', "Mon, 01 Jan 2024 00:00:00 GMT")
    assert got.headers["content-type"] == "application/rss+xml"
    assert got.url == "https://example.org/rss" and got.moved_to is None
    sent = mocked.calls[0].request.headers
    assert str(sent["User-Agent"]).startswith("watcher/") and "feed monitor" in str(sent["User-Agent"])
    assert sent["Accept-Encoding"] == "gzip, deflate"
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent


def test_conditional_get_sends_validators_and_304_keeps_them(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", status=304)
    got = fetcher.fetch(
        "https://example.org/rss",
        etag='"v1"',
        last_modified="Mon, 01 Jan 2024 00:00:00 GMT",
        timeout=20,
    )
    sent = mocked.calls[0].request.headers
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert got.not_modified and got.status == 304
    # The server sent no validators with its 304: the stored ones must survive.
    assert (got.etag, got.last_modified) == ('"v1"', "Mon, 01 Jan 2024 00:00:00 GMT")


def test_304_with_new_etag_replaces_the_stored_one(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", status=304, headers={"ETag": '"v2"'})
    got = fetcher.fetch("https://example.org/rss", etag='"v1"', timeout=20)
    assert got.not_modified and got.etag == '"v2"'


def test_empty_200_is_an_empty_body_for_the_parser_to_judge(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", body=b"")
    got = fetcher.fetch("https://example.org/rss", timeout=20)
    assert got.body == b"" and not got.not_modified


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (404, "HTTP 404 Not Found"),
        (403, "HTTP 403 Forbidden"),
        (500, "HTTP 500 Internal Server Error"),
        (300, "HTTP 300 Multiple Choices"),
        (599, "HTTP 599"),
    ],
)
def test_error_status_gives_status_and_reason(
    fetcher: Fetcher, mocked: responses.RequestsMock, status: int, reason: str
) -> None:
    mocked.get("https://example.org/rss", status=status, body=b"<html>nope</html>")
    err = fetch_error(fetcher, "https://example.org/rss")
    assert (err.reason, err.status, err.gone, err.retry_after) == (
        reason,
        status,
        False,
        None,
    )
    assert str(err) == f"https://example.org/rss: {reason}"


def test_410_marks_the_feed_gone(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", status=410)
    err = fetch_error(fetcher, "https://example.org/rss")
    assert err.gone and err.status == 410 and err.reason == "HTTP 410 Gone"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds(fetcher: Fetcher, mocked: responses.RequestsMock, status: int) -> None:
    mocked.get("https://example.org/rss", status=status, headers={"Retry-After": "120"})
    err = fetch_error(fetcher, "https://example.org/rss")
    assert err.status == status and err.retry_after == 120
    assert err.reason.endswith("(retry after 120s)")


def test_retry_after_http_date(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    when = datetime.now(UTC) + timedelta(seconds=300)
    mocked.get(
        "https://example.org/rss",
        status=429,
        headers={"Retry-After": format_datetime(when, usegmt=True)},
    )
    err = fetch_error(fetcher, "https://example.org/rss")
    assert err.retry_after is not None and 290 <= err.retry_after <= 300


@pytest.mark.parametrize("header", [None, "soon", "-5", ""])
def test_missing_or_unreadable_retry_after_is_none(
    fetcher: Fetcher, mocked: responses.RequestsMock, header: str | None
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    mocked.get("https://example.org/rss", status=503, headers=headers)
    err = fetch_error(fetcher, "https://example.org/rss")
    assert err.retry_after is None and err.reason == "HTTP 503 Service Unavailable"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("3600", 3600.0),
        ("Wed, 01 May 2024 12:02:00 GMT", 120.0),
        ("Wed, 01 May 2024 12:02:00 -0000", 120.0),  # parses as naive; still GMT
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: retry now
        ("Wednesday", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == seconds


def test_non_retry_statuses_ignore_retry_after(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", status=500, headers={"Retry-After": "60"})
    assert fetch_error(fetcher, "https://example.org/rss").retry_after is None


def _redirect(mocked: responses.RequestsMock, source: str, status: int, target: str) -> None:
    mocked.get(source, status=status, headers={"Location": target})


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_chain_sets_moved_to_final_url(
    fetcher: Fetcher, mocked: responses.RequestsMock, status: int
) -> None:
    _redirect(mocked, "http://example.org/rss", status, "https://example.org/rss")
    _redirect(mocked, "https://example.org/rss", status, "/feed.xml")  # relative Location
    mocked.get("https://example.org/feed.xml", body=FEED)
    got = fetcher.fetch("http://example.org/rss", timeout=20)
    assert got.body == FEED and got.url == "http://example.org/rss"
    assert got.moved_to == "https://example.org/feed.xml"


@pytest.mark.parametrize("status", [302, 303, 307])
def test_temporary_redirect_does_not_move_the_feed(
    fetcher: Fetcher, mocked: responses.RequestsMock, status: int
) -> None:
    _redirect(mocked, "https://example.org/rss", status, "https://cdn.example.org/rss")
    mocked.get("https://cdn.example.org/rss", body=FEED)
    got = fetcher.fetch("https://example.org/rss", timeout=20)
    assert got.body == FEED and got.moved_to is None


def test_permanent_then_temporary_moves_only_as_far_as_the_permanent_hop(
    fetcher: Fetcher, mocked: responses.RequestsMock
) -> None:
    _redirect(mocked, "https://old.example.org/rss", 301, "https://new.example.org/rss")
    _redirect(
        mocked,
        "https://new.example.org/rss",
        302,
        "https://cdn.example.org/rss?session=1",
    )
    mocked.get("https://cdn.example.org/rss", body=FEED)
    got = fetcher.fetch("https://old.example.org/rss", timeout=20)
    assert got.moved_to == "https://new.example.org/rss"


def test_temporary_then_permanent_does_not_move_the_feed(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    _redirect(mocked, "https://example.org/rss", 302, "https://a.example.org/rss")
    _redirect(mocked, "https://a.example.org/rss", 301, "https://b.example.org/rss")
    mocked.get("https://b.example.org/rss", body=FEED)
    assert fetcher.fetch("https://example.org/rss", timeout=20).moved_to is None


def test_301_then_304_still_reports_the_move(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    _redirect(mocked, "https://old.example.org/rss", 301, "https://new.example.org/rss")
    mocked.get("https://new.example.org/rss", status=304)
    got = fetcher.fetch("https://old.example.org/rss", etag='"v1"', timeout=20)
    assert got.not_modified and got.moved_to == "https://new.example.org/rss"
    # The validators travel with the redirect: the new URL answers the conditional GET.
    assert mocked.calls[1].request.headers["If-None-Match"] == '"v1"'


def test_redirect_loop_is_named(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    _redirect(mocked, "https://example.org/a", 302, "https://example.org/b")
    _redirect(mocked, "https://example.org/b", 302, "https://example.org/a")
    err = fetch_error(fetcher, "https://example.org/a")
    assert err.reason == "redirect loop at https://example.org/a" and err.status is None


def test_too_many_redirects(mocked: responses.RequestsMock) -> None:
    for i in range(3):
        _redirect(mocked, f"https://example.org/{i}", 302, f"https://example.org/{i + 1}")
    mocked.get("https://example.org/3", body=FEED)
    with Fetcher(max_redirects=2) as fetcher:
        err = fetch_error(fetcher, "https://example.org/0")
    assert err.reason == "too many redirects (more than 2)"
    assert len(mocked.calls) == 3  # the original request and two hops, no more


def test_redirect_to_a_local_file_is_refused(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    _redirect(mocked, "https://example.org/rss", 302, "file:///etc/passwd")
    err = fetch_error(fetcher, "https://example.org/rss")
    assert err.reason == "redirect to an unsupported URL: file:///etc/passwd"


def test_redirect_without_location(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", status=301)
    assert fetch_error(fetcher, "https://example.org/rss").reason == "HTTP 301 redirect without a Location header"


@pytest.mark.parametrize("exc", [requests.ConnectTimeout("boom"), requests.ReadTimeout("boom")])
def test_timeout_exceptions_map_to_timed_out(fetcher: Fetcher, mocked: responses.RequestsMock, exc: Exception) -> None:
    mocked.get("https://example.org/rss", body=exc)
    err = fetch_error(fetcher, "https://example.org/rss", timeout=20)
    assert err.reason == "timed out after 20s" and err.status is None
    assert err.kind == "timeout"  # what /metrics counts it as


def test_declared_length_over_the_cap_is_refused_unread(mocked: responses.RequestsMock) -> None:
    mocked.get("https://example.org/rss", body=b"x" * 2048)
    with Fetcher(max_bytes=1024) as fetcher:
        err = fetch_error(fetcher, "https://example.org/rss")
    assert err.reason == "response larger than 1 KiB"


def test_secrets_never_reach_the_error(fetcher: Fetcher, mocked: responses.RequestsMock) -> None:
    url = "https://bob:s3cret@example.org/rss?token=s3cret&page=2"
    mocked.get("https://example.org/rss", status=404)
    err = fetch_error(fetcher, url)
    assert "s3cret" not in str(err) and "s3cret" not in err.url
    assert err.url == "https://bob:***@example.org/rss?token=***&page=2"


def test_unsupported_scheme(fetcher: Fetcher) -> None:
    err = fetch_error(fetcher, "ftp://example.org/rss")
    assert err.reason == "unsupported URL scheme 'ftp' (use http, https or a file path)"


# -- real loopback servers -------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as s:
        yield s


def test_gzip_body_is_decompressed(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/rss", gzip.compress(FEED), headers={"Content-Encoding": "gzip"})
    assert fetcher.fetch(server.url("/rss"), timeout=5).body == FEED
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_gzip_bomb_is_capped_on_decompressed_size(fetcher: Fetcher, server: LoopbackServer) -> None:
    bomb = gzip.compress(b"\0" * (64 * MiB), compresslevel=9)
    assert len(bomb) < MiB  # small on the wire: only the decompressed size can catch it
    server.respond("/rss", bomb, headers={"Content-Encoding": "gzip"})
    err = fetch_error(fetcher, server.url("/rss"), timeout=10)
    assert err.reason == "response larger than 10 MiB"


def test_endless_body_is_capped(server: LoopbackServer) -> None:
    server.route("/rss", endless())
    started = time.monotonic()
    with Fetcher(max_bytes=MiB) as fetcher:
        err = fetch_error(fetcher, server.url("/rss"), timeout=10)
    assert err.reason == "response larger than 1 MiB"
    assert time.monotonic() - started < 5


def test_huge_declared_body_is_refused(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/rss", b"x" * (10 * MiB + 1))
    assert fetch_error(fetcher, server.url("/rss"), timeout=10).reason == "response larger than 10 MiB"


def _assert_deadline(fetcher: Fetcher, url: str, deadline: float) -> None:
    started = time.monotonic()
    err = fetch_error(fetcher, url, timeout=deadline)
    elapsed = time.monotonic() - started
    assert err.reason == f"timed out after {deadline:g}s"
    assert elapsed < 3 * deadline, elapsed


def test_trickled_body_fails_at_the_total_deadline(fetcher: Fetcher, server: LoopbackServer) -> None:
    # Every byte arrives within a second, so a per-read timeout of 2 s alone would never fire.
    server.route("/rss", trickle(FEED, interval=1.0))
    _assert_deadline(fetcher, server.url("/rss"), 2)


def test_trickled_body_without_length_is_not_taken_as_complete(fetcher: Fetcher, server: LoopbackServer) -> None:
    # Without Content-Length, a socket shut at the deadline looks like a normal end of body.
    def handler(request: Any) -> None:
        request.send_response(200)
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        for byte in FEED:
            if request.server.owner.stopping.wait(0.5):
                return
            request.wfile.write(bytes([byte]))
            request.wfile.flush()

    server.route("/rss", handler)
    _assert_deadline(fetcher, server.url("/rss"), 1.5)


def test_trickled_headers_fail_at_the_total_deadline(fetcher: Fetcher, server: LoopbackServer) -> None:
    def handler(request: Any) -> None:
        request.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Slow: " + b"a" * 200:
            if request.server.owner.stopping.wait(0.5):
                return
            request.wfile.write(bytes([byte]))
            request.wfile.flush()

    server.route("/rss", handler)
    _assert_deadline(fetcher, server.url("/rss"), 1.5)


def test_deadline_also_covers_a_reused_keep_alive_connection(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/fast", FEED)
    server.route("/slow", trickle(FEED, interval=0.5))
    assert fetcher.fetch(server.url("/fast"), timeout=5).body == FEED
    _assert_deadline(fetcher, server.url("/slow"), 1.5)


def test_one_slow_feed_does_not_delay_the_others(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/fast", FEED)
    server.route("/slow", trickle(FEED, interval=1.0))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        slow = pool.submit(fetcher.fetch, server.url("/slow"), timeout=2)
        fast = [pool.submit(fetcher.fetch, server.url("/fast"), timeout=5) for _ in range(30)]
        assert all(f.result().body == FEED for f in fast)
        fast_done = time.monotonic() - started
        with pytest.raises(FetchError, match="timed out after 2s"):
            slow.result()
    assert fast_done < 1.5, fast_done


def test_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Fetcher() as fetcher:
        err = fetch_error(fetcher, f"http://127.0.0.1:{port}/rss", timeout=5)
    assert err.reason == "connection refused" and err.status is None


def test_dns_failure() -> None:
    with Fetcher() as fetcher:
        err = fetch_error(fetcher, "http://feed.example.invalid/rss", timeout=10)
    assert err.reason == "could not resolve host feed.example.invalid"


@pytest.fixture
def tls_server() -> Iterator[tuple[LoopbackServer, trustme.CA]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with LoopbackServer(tls=context) as s:
        s.respond("/rss", FEED)
        yield s, ca


def test_untrusted_certificate_is_a_tls_error(tls_server: tuple[LoopbackServer, trustme.CA]) -> None:
    server, _ = tls_server
    with Fetcher() as fetcher:
        err = fetch_error(fetcher, server.url("/rss"), timeout=5)
    assert err.reason.startswith("TLS error: certificate verify failed (")
    assert server.url().startswith("https://")


def test_trusted_certificate_works(
    tls_server: tuple[LoopbackServer, trustme.CA], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same server is fine once its CA is trusted: the failure above is verification.
    server, ca = tls_server
    with ca.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
        with Fetcher() as fetcher:
            assert fetcher.fetch(server.url("/rss"), timeout=5).body == FEED


def test_conditional_get_round_trip_with_etag(fetcher: Fetcher, tmp_path: Path) -> None:
    (tmp_path / "feed.xml").write_bytes(FEED)
    with LoopbackServer(root=tmp_path) as server:
        first = fetcher.fetch(server.url("/feed.xml"), timeout=5)
        second = fetcher.fetch(
            server.url("/feed.xml"),
            etag=first.etag,
            last_modified=first.last_modified,
            timeout=5,
        )
        sent = server.requests_for("/feed.xml")[1].headers
    assert first.body == FEED and first.etag and first.last_modified
    assert second.not_modified and second.status == 304
    assert sent["if-none-match"] == first.etag
    assert sent["if-modified-since"] == first.last_modified


def test_conditional_get_round_trip_with_last_modified_only(fetcher: Fetcher, tmp_path: Path) -> None:
    (tmp_path / "feed.xml").write_bytes(FEED)
    with LoopbackServer(root=tmp_path, etag=False) as server:
        first = fetcher.fetch(server.url("/feed.xml"), timeout=5)
        second = fetcher.fetch(server.url("/feed.xml"), last_modified=first.last_modified, timeout=5)
    assert first.etag is None and second.not_modified


def test_changed_content_is_fetched_again(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/rss", FEED)
    first = fetcher.fetch(server.url("/rss"), timeout=5)
    server.respond("/rss", FEED.replace(b"<title>t</title>", b"<title>u</title>"))
    second = fetcher.fetch(server.url("/rss"), etag=first.etag, timeout=5)
    assert second.body is not None and b"<title>u</title>" in second.body and second.etag != first.etag


# -- file feeds ------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True])
def test_file_feed_and_unchanged_file_is_not_modified(fetcher: Fetcher, tmp_path: Path, as_url: bool) -> None:
    path = tmp_path / "my feed.xml"
    path.write_bytes(FEED)
    url = path.as_uri() if as_url else str(path)
    first = fetcher.fetch(url, timeout=5)
    assert first.body == FEED and first.status == 200 and first.etag
    again = fetcher.fetch(url, etag=first.etag, timeout=5)
    assert again.not_modified and again.etag == first.etag


def test_changed_file_is_read_again(fetcher: Fetcher, tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    first = fetcher.fetch(str(path), timeout=5)
    path.write_bytes(FEED + b"\n<!-- more -->")
    os.utime(path, ns=(first_mtime := path.stat().st_mtime_ns, first_mtime + 1_000_000_000))
    second = fetcher.fetch(str(path), etag=first.etag, timeout=5)
    assert second.body is not None and second.body.endswith(b"<!-- more -->") and second.etag != first.etag


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.xml", "file not found"),
        (lambda d: d, "not a regular file"),
        (lambda d: Path("/dev/zero"), "not a regular file"),
    ],
)
def test_file_errors(fetcher: Fetcher, tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    assert fetch_error(fetcher, str(make(tmp_path))).reason == reason


def test_file_over_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b"x" * 2048)
    with Fetcher(max_bytes=1024) as fetcher:
        assert fetch_error(fetcher, str(path)).reason == "file larger than 1 KiB"


def test_file_url_with_a_remote_host_is_refused(fetcher: Fetcher) -> None:
    err = fetch_error(fetcher, "file://fileserver/share/feed.xml")
    assert err.reason == "file URLs must name a local file (file:///path)"


def test_body_stalled_after_a_full_chunk_is_not_taken_as_complete(fetcher: Fetcher, server: LoopbackServer) -> None:
    # The stall falls between reads, so the socket shut at the deadline ends the body with
    # no further chunk: only the clock check after the read loop catches it.
    def handler(request: Any) -> None:
        request.send_response(200)
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        request.wfile.write(b"x" * 64 * 1024)
        request.wfile.flush()
        request.server.owner.stopping.wait(10)

    server.route("/rss", handler)
    _assert_deadline(fetcher, server.url("/rss"), 1.5)


def test_trickle_over_tls_fails_at_the_total_deadline(
    tls_server: tuple[LoopbackServer, trustme.CA], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    server.route("/slow", trickle(FEED, interval=0.5))
    with ca.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
        with Fetcher() as fetcher:
            _assert_deadline(fetcher, server.url("/slow"), 1.5)


def test_body_cut_short_is_a_broken_response(fetcher: Fetcher, server: LoopbackServer) -> None:
    def handler(request: Any) -> None:
        request.send_response(200)
        request.send_header("Content-Length", "1000")
        request.end_headers()
        request.wfile.write(FEED)
        request.close_connection = True

    server.route("/rss", handler)
    err = fetch_error(fetcher, server.url("/rss"), timeout=5)
    assert err.reason == "the server sent a broken response or dropped the connection"


def test_connection_closed_without_an_answer(fetcher: Fetcher, server: LoopbackServer) -> None:
    def handler(request: Any) -> None:
        request.close_connection = True

    server.route("/rss", handler)
    err = fetch_error(fetcher, server.url("/rss"), timeout=5)
    assert err.reason == "connection closed by the server"


def test_corrupt_gzip(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/rss", b"not gzip at all", headers={"Content-Encoding": "gzip"})
    err = fetch_error(fetcher, server.url("/rss"), timeout=5)
    assert err.reason == "could not decompress the response (bad gzip/deflate data)"


def test_url_without_host_is_invalid(fetcher: Fetcher) -> None:
    err = fetch_error(fetcher, "http:///rss?token=s3cret")
    assert err.reason == "invalid URL" and "s3cret" not in str(err)


# -- connection reuse ------------------------------------------------------------------


def _counting(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[Handler, list[int]]:
    """A handler answering ``status`` with ``body``, and the client port of every request.

    One port per TCP connection: the number of distinct ports is the number of connections.
    A 200 with ``ETag: "v1"`` becomes a bodiless 304 when the request sends that ETag.
    """
    ports: list[int] = []

    def handler(request: Any) -> None:
        ports.append(request.client_address[1])
        if status == 200 and request.headers.get("If-None-Match") == '"v1"':
            request.send_response(304)
            request.send_header("ETag", '"v1"')
            request.end_headers()
            return
        request.send_response(status)
        for name, value in {
            "Content-Length": str(len(body)),
            **(headers or {}),
        }.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)

    return handler, ports


def test_304s_reuse_one_connection(fetcher: Fetcher, server: LoopbackServer) -> None:
    handler, ports = _counting(200, FEED, {"ETag": '"v1"'})
    server.route("/rss", handler)
    for _ in range(20):
        assert fetcher.fetch(server.url("/rss"), etag='"v1"', timeout=5).not_modified
    assert len(ports) == 20 and len(set(ports)) == 1


def test_full_bodies_reuse_one_connection(fetcher: Fetcher, server: LoopbackServer) -> None:
    handler, ports = _counting(200, FEED)
    server.route("/rss", handler)
    for _ in range(5):
        assert fetcher.fetch(server.url("/rss"), timeout=5).body == FEED
    assert len(ports) == 5 and len(set(ports)) == 1


def test_small_error_and_redirect_bodies_reuse_the_connection(fetcher: Fetcher, server: LoopbackServer) -> None:
    missing, missing_ports = _counting(404, b"<html>not here</html>" * 100)
    moved, moved_ports = _counting(302, b"<html>see /rss</html>", {"Location": "/rss"})
    feed, feed_ports = _counting(200, FEED)
    server.route("/missing", missing)
    server.route("/moved", moved)
    server.route("/rss", feed)
    for _ in range(3):
        assert fetch_error(fetcher, server.url("/missing"), timeout=5).status == 404
        assert fetcher.fetch(server.url("/moved"), timeout=5).body == FEED
    assert len(set(missing_ports + moved_ports + feed_ports)) == 1


def test_an_unsized_error_body_is_never_read_for_reuse(fetcher: Fetcher, server: LoopbackServer) -> None:
    # Draining this endless body to keep its connection would run into the deadline.
    def handler(request: Any) -> None:
        request.send_response(404)
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        while not request.server.owner.stopping.is_set():
            request.wfile.write(b"<p>not here</p>" * 1000)

    server.route("/rss", handler)
    started = time.monotonic()
    assert fetch_error(fetcher, server.url("/rss"), timeout=30).status == 404
    assert time.monotonic() - started < 10


def test_a_large_error_body_is_never_read_for_reuse(fetcher: Fetcher, server: LoopbackServer) -> None:
    # Declared far above the drain limit, and never sent: reading it would wait out the deadline.
    def handler(request: Any) -> None:
        request.send_response(500)
        request.send_header("Content-Length", str(100 * MiB))
        request.end_headers()
        request.wfile.flush()
        request.server.owner.stopping.wait(30)
        request.close_connection = True

    server.route("/rss", handler)
    started = time.monotonic()
    assert fetch_error(fetcher, server.url("/rss"), timeout=30).status == 500
    assert time.monotonic() - started < 10


def test_a_trickled_small_error_body_is_left_at_the_deadline(fetcher: Fetcher, server: LoopbackServer) -> None:
    # The drain runs under the fetch's deadline: the status is still reported, on time.
    handler, _ = _counting(200, FEED)
    server.route("/ok", handler)

    def slow_404(request: Any) -> None:
        request.send_response(404)
        request.send_header("Content-Length", "100")
        request.end_headers()
        for _ in range(100):
            if request.server.owner.stopping.wait(0.5):
                return
            request.wfile.write(b"x")
            request.wfile.flush()

    server.route("/rss", slow_404)
    started = time.monotonic()
    assert fetch_error(fetcher, server.url("/rss"), timeout=1.5).status == 404
    assert time.monotonic() - started < 4.5
    # The half-read connection was dropped, not pooled: the next fetch works.
    assert fetcher.fetch(server.url("/ok"), timeout=5).body == FEED


# -- deadlines -------------------------------------------------------------------------


def test_an_ended_deadline_never_shuts_the_pooled_connection(fetcher: Fetcher, server: LoopbackServer) -> None:
    handler, ports = _counting(200, FEED)
    server.route("/rss", handler)
    assert fetcher.fetch(server.url("/rss"), timeout=0.2).body == FEED
    time.sleep(0.5)  # past the first fetch's deadline, its connection idle in the pool
    assert fetcher.fetch(server.url("/rss"), timeout=5).body == FEED
    # A shut socket would have been found dead in the pool and replaced by a new connection.
    assert len(ports) == 2 and len(set(ports)) == 1


def test_fetches_start_no_thread_per_deadline(
    fetcher: Fetcher, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.respond("/rss", FEED)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="fetching") as pool:
        # Every worker thread exists before counting starts.
        ready = threading.Barrier(4)
        list(pool.map(lambda _: ready.wait(5), range(4)))
        started: list[str] = []
        start = threading.Thread.start

        def counting_start(thread: threading.Thread) -> None:
            # Only threads the fetches start: the server starts one per connection.
            if threading.current_thread().name.startswith("fetching"):
                started.append(thread.name)
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", counting_start)
        urls = [server.url("/rss")] * 40
        assert all(got.body == FEED for got in pool.map(lambda u: fetcher.fetch(u, timeout=5), urls))
    # At most the one shared watchdog, when no earlier test has started it yet.
    assert started in ([], ["watcher-fetch-deadlines"])


# -- environment -----------------------------------------------------------------------


def test_http_proxy_from_the_environment_is_used(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The loopback server plays the proxy: it gets the absolute URL in the request line.
    server.respond("/rss", FEED)
    monkeypatch.setenv("HTTP_PROXY", server.base_url)
    with Fetcher() as fetcher:
        got = fetcher.fetch("http://feed.example.invalid/rss", timeout=5)
    assert got.body == FEED
    assert server.requests[0].path == "http://feed.example.invalid/rss"


def test_no_proxy_hosts_go_direct(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.respond("/rss", FEED)
    with socket.socket() as s:  # a proxy that refuses every connection
        s.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    with Fetcher() as fetcher:
        assert fetcher.fetch(server.url("/rss"), timeout=5).body == FEED
        err = fetch_error(fetcher, "http://feed.example.invalid/rss", timeout=5)
    assert err.reason == "connection refused"  # the proxy, since .invalid never resolves


def test_netrc_credentials_are_not_sent(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login bob password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.respond("/rss", FEED)
    with Fetcher() as fetcher:
        assert fetcher.fetch(server.url("/rss"), timeout=5).body == FEED
    assert "authorization" not in server.requests[0].headers


def test_credentials_in_the_url_are_sent(fetcher: Fetcher, server: LoopbackServer) -> None:
    server.respond("/rss", FEED)
    url = server.url("/rss").replace("://", "://bob:s3cret@")
    assert fetcher.fetch(url, timeout=5).body == FEED
    assert server.requests[0].headers["authorization"].startswith("Basic ")


# -- no request forgery through redirects --------------------------------------------------


def internal_but_127_0_0_2_is_public(address: str) -> str | None:
    """On loopback every address is internal: 127.0.0.2 plays a public host here."""
    return None if address == "127.0.0.2" else internal_address(address)


def internal_but_127_0_0_1_is_public(address: str) -> str | None:
    return None if address == "127.0.0.1" else internal_address(address)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_public_feed_is_never_redirected_to_an_internal_address(status: int) -> None:
    with LoopbackServer(host="127.0.0.2") as admin, LoopbackServer() as public:
        admin.respond("/admin", FEED)
        public.respond("/feed.xml", status=status, headers={"Location": admin.url("/admin")})
        with Fetcher(internal=internal_but_127_0_0_1_is_public) as fetcher:
            error = fetch_error(fetcher, public.url("/feed.xml"))
        assert error.reason == (
            "redirect to a loopback address refused: 127.0.0.2 is 127.0.0.2, the feed's URL is public"
        )
        assert admin.requests == [], "the internal server was sent a request"


def test_the_address_connected_to_is_checked_not_the_name() -> None:
    # "localhost" is no address: it is refused for what it resolves to.
    with LoopbackServer() as admin, LoopbackServer(host="127.0.0.2") as public:
        admin.respond("/admin", FEED)
        target = f"http://localhost:{admin.port}/admin"
        public.respond("/feed.xml", status=302, headers={"Location": target})
        with Fetcher(internal=internal_but_127_0_0_2_is_public) as fetcher:
            error = fetch_error(fetcher, public.url("/feed.xml"))
        assert error.reason.startswith("redirect to a loopback address refused: localhost is ")
        assert admin.requests == []


def test_a_feed_on_an_internal_address_may_be_redirected_within_and_out() -> None:
    with LoopbackServer(host="127.0.0.2") as public, LoopbackServer() as intranet:
        public.respond("/feed.xml", FEED)
        intranet.respond("/old.xml", status=301, headers={"Location": intranet.url("/new.xml")})
        intranet.respond("/new.xml", status=302, headers={"Location": public.url("/feed.xml")})
        with Fetcher(internal=internal_but_127_0_0_2_is_public) as fetcher:
            fetched = fetcher.fetch(intranet.url("/old.xml"), timeout=20)
        assert (fetched.body, fetched.moved_to) == (FEED, intranet.url("/new.xml"))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.100.100.200", "non-public"),
        ("0.0.0.0", "private"),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_internal_addresses(address: str, kind: str | None) -> None:
    assert internal_address(address) == kind
