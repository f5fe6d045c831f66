"""Thousands of real and ill-formed feeds written by others (``../shared/corpus``), through
the parser and through the whole service.

What is proven:

* every corpus file either parses or is refused with ``ParseError`` (never another exception);
* one ``watcher poll`` over all of them, served from a loopback HTTP server, exits cleanly
  (status 3: some feeds failed), within a time limit and a memory bound, and leaves every
  feed ``ok``, ``empty`` or ``failed`` with a one-line reason that names a content problem
  (the transport was fine).

The counts (ok / empty / failed by reason) are printed (``pytest -s``) and written to
``corpus-counts.txt`` in the test's tmp dir.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.httpserver import LoopbackServer
from watcher.errors import ParseError
from watcher.parse import parse_feed
from watcher.store import Store

ROOT = Path(__file__).resolve().parent.parent
CORPUS = (ROOT / ".." / "shared" / "corpus").resolve()
#: Files of the corpus that are documentation, not feeds.
NOT_DATA = {"README.md", "config.yaml", "labels.json"}
#: `watcher poll` over the whole corpus takes ~35 s on 2 cores; beyond this it hangs.
POLL_TIME_LIMIT = 240
#: Peak RSS of that process is ~180 MB; the largest file is 2.5 MB, so 400 MB means a leak
#: or an unbounded buffer, not normal work.
PEAK_RSS_LIMIT_MB = 400
#: The reasons a feed served intact over loopback may fail for: all about its content.
CONTENT_REASONS = ("not a feed: ", "malformed feed with no readable entries: ", "empty body")

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"feed corpus not found at {CORPUS}")


def corpus_files() -> list[Path]:
    """Every data file of the corpus (not READMEs, licences or the dev corpus's labels)."""
    return sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in NOT_DATA and "LICENSE" not in p.name and "licenses" not in p.parts
    )


def declared_headers(data: bytes) -> dict[str, str]:
    """The HTTP headers a feedparser test file declares in its leading comment (``Header:``).

    The comment is in the file's own encoding, which may be UTF-16/32.
    """
    head = data[:4096]
    texts = [head.decode("latin-1")]
    if b"\x00" in head[:64]:
        for codec in ("utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-32-be", "utf-32-le"):
            try:
                texts.append(head[: len(head) - len(head) % 4].decode(codec))
            except UnicodeDecodeError:
                continue
    for text in texts:
        found = re.findall(r"^Header:\s*([^:\r\n]+):[ \t]*(.*?)\s*$", text, flags=re.MULTILINE)
        if found:
            headers = {name.strip(): value for name, value in found}
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "text/xml"  # feedparser's own harness default
            return headers
    return {}


def serve_with_headers(body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    def handler(request) -> None:  # type: ignore[no-untyped-def]
        request.send_response(200)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handler


def test_corpus_files_are_found() -> None:
    """The corpus is the one documented (3,718 files plus the 3 dev feeds), with the 106
    ``Header:`` files recognised; a silently shrunken corpus would prove nothing."""
    files = corpus_files()
    assert len(files) >= 3718
    with_headers = [p for p in files if declared_headers(p.read_bytes())]
    assert len(with_headers) >= 100


@pytest.mark.slow
def test_every_file_parses_or_is_refused_with_parse_error() -> None:
    """``parse_feed`` on every corpus file's bytes (with its declared headers) returns a feed
    or raises ``ParseError`` with a one-line reason; nothing else escapes."""
    outcomes: collections.Counter[str] = collections.Counter()
    for path in corpus_files():
        data = path.read_bytes()
        rel = path.relative_to(CORPUS).as_posix()
        try:
            parsed = parse_feed(data, url=f"http://127.0.0.1/{rel}", headers=declared_headers(data))
        except ParseError as e:
            assert e.reason and "\n" not in e.reason and "\r" not in e.reason, rel
            outcomes["refused"] += 1
            continue
        if parsed.problem is not None:
            assert "\n" not in parsed.problem and "\r" not in parsed.problem, rel
        for article in parsed.articles:
            assert article.key and isinstance(article.title, str), rel
        outcomes["entries" if parsed.articles else "no entries"] += 1
    print(f"\nparse_feed over the corpus: {dict(outcomes)}")
    assert outcomes["entries"] > 2000


@pytest.mark.slow
def test_one_poll_over_the_whole_corpus(tmp_path: Path) -> None:
    """Every corpus file configured as a feed and polled once by a real ``watcher poll``:
    no crash, no hang, bounded memory, and every feed ends ok, empty, or failed with a
    one-line content reason."""
    files = corpus_files()
    shipped = (ROOT / "feeds.yaml").read_text(encoding="utf-8")
    watches = shipped[shipped.index("\nspeakers:") : shipped.index("# ---- example alerts")]
    with LoopbackServer(root=CORPUS) as server:
        lines = [
            f"database: sqlite:///{tmp_path}/watcher.db",
            "defaults: {interval: 15m, timeout: 30s, alert_on_first_poll: false}",
            "feeds:",
        ]
        names = []
        for path in files:
            rel = path.relative_to(CORPUS).as_posix()
            headers = declared_headers(path.read_bytes())
            if headers:
                server.route("/" + rel, serve_with_headers(path.read_bytes(), headers))
            names.append(rel)
            lines.append(f'  - {{name: "{rel}", url: "{server.url("/" + quote(rel))}"}}')
        config = tmp_path / "feeds.yaml"
        config.write_text("\n".join(lines) + "\n" + watches, encoding="utf-8")

        stdout, stderr = tmp_path / "poll.out", tmp_path / "poll.err"
        started = time.monotonic()
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", "-c", str(config), "poll"], cwd=ROOT, stdout=out, stderr=err
            )
            killer = threading.Timer(POLL_TIME_LIMIT, proc.kill)
            killer.start()
            try:
                # wait4, not Popen.wait: it also gives the child's peak RSS.
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    log = stderr.read_text(errors="replace")
    assert seconds < POLL_TIME_LIMIT, f"watcher poll hung (killed after {POLL_TIME_LIMIT}s)"
    # 3: some feeds failed (the corpus holds files that are no feed at all), the rest were polled.
    assert proc.returncode == 3, log[-3000:]
    assert "Traceback" not in log, log[log.index("Traceback") :][:3000]

    store = Store(f"sqlite:///{tmp_path}/watcher.db")
    try:
        states = store.feed_states()
    finally:
        store.close()
    assert sorted(s.name for s in states) == sorted(names)

    by_status = collections.Counter(s.status for s in states)
    reasons: collections.Counter[str] = collections.Counter()
    for s in states:
        assert s.status in ("ok", "empty", "failed"), (s.name, s.status, s.last_error)
        if s.last_error is not None:
            assert s.last_error.strip() and "\n" not in s.last_error and "\r" not in s.last_error, s.name
            assert len(s.last_error) < 400, (s.name, s.last_error)
        if s.status == "failed":
            assert s.last_error and s.last_error.startswith(CONTENT_REASONS), (s.name, s.last_error)
            reasons[_reason_kind(s.last_error)] += 1
    with_problem = sum(1 for s in states if s.status in ("ok", "empty") and s.last_error)

    report = [
        f"corpus: {len(states)} feeds polled in {seconds:.1f}s, peak RSS {peak_mb:.0f} MB",
        f"ok (entries stored): {by_status['ok']} ({with_problem} of ok/empty flagged malformed but usable)",
        f"empty (a feed with no entries): {by_status['empty']}",
        f"failed: {by_status['failed']}",
        *(f"  {count:5d}  {reason}" for reason, count in reasons.most_common()),
    ]
    (tmp_path / "corpus-counts.txt").write_text("\n".join(report) + "\n", encoding="utf-8")
    print("\n" + "\n".join(report))

    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
    # The well-formed real feeds are the service's bread and butter: they must all work.
    real = {s.name: s for s in states if s.name.startswith("real/")}
    assert real["real/rss-parser__giantbomb-podcast.rss"].entries_seen == 730
    assert real["real/node-feedparser__invalid-characters-gzipped.xml"].status == "ok"
    assert by_status["ok"] > 2000


def _reason_kind(reason: str) -> str:
    """A failure reason without its per-file detail (line numbers, encodings, positions)."""
    kind = re.sub(r"<unknown>:\d+:\d+: ", "", reason)
    kind = re.sub(r" at line \d+, column \d+", "", kind)
    kind = re.sub(r"declared as \S+, but parsed as \S+", "declared as X, but parsed as Y", kind)
    return kind
