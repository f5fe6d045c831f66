"""Shared fixtures and helpers: real databases (SQLite files, and PostgreSQL where the machine
runs one), polls stored as the pipeline stores them, watcher run as a command, config files,
and waiting for what a test expects to happen."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from watcher.store import PollRecord, Store
from watcher.types import Alert, Article, Hit

ROOT = Path(__file__).resolve().parent.parent

#: PostgreSQL the tests use when it is reachable: local, trust auth, database "test".
POSTGRES_URL = os.environ.get("WATCHER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_reason() -> str | None:
    """None when PostgreSQL is usable, else why the PostgreSQL tests are skipped."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"no PostgreSQL at 127.0.0.1:5432 (database test, trust auth): {str(e).strip()}"


_PG_SKIP = _postgres_reason()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a private schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/watcher.db"
        return
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = POSTGRES_URL.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def store_poll(
    store: Store,
    feed: str,
    articles: Sequence[Article],
    hits: Mapping[str, Sequence[Hit]],
    now: datetime,
    *,
    channels: Sequence[str] = ("desk",),
    due: datetime | None = None,
    etag: str | None = None,
    problem: str | None = None,
) -> int:
    """Store a poll of ``feed`` as the pipeline does, with one alert per new hit on each of
    ``channels``, due at ``due`` (default ``now``): no routing or story dedup. Returns the
    count of new hits."""
    record = PollRecord(
        articles=list(articles),
        hits=hits,
        etag=etag,
        last_modified=None,
        moved_to=None,
        status="ok",
        problem=problem,
        next_poll_at=now + timedelta(minutes=15),
    )
    with store.saving_poll(feed, record, now) as tx:
        tx.enqueue([Alert(new, channel, due or now) for new in tx.new_hits for channel in channels])
    return len(tx.new_hits)


#: Years from the real clock, so that code reading the real clock instead of the one it was
#: given is caught.
FAKE_NOW = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The clock a watcher or daemon is given (``now=``), moved by the test."""

    def __init__(self, time: datetime = FAKE_NOW) -> None:
        self.time = time

    def __call__(self) -> datetime:
        return self.time


@pytest.fixture
def clock() -> Clock:
    return Clock()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Wait until ``condition()`` is true: a row, a file, a request, a process gone. The
    deadline is generous, since a loaded machine is slow; a fast one never waits it out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def watcher_cmd(config: Path, *args: str) -> list[str]:
    """The command line of ``watcher -c CONFIG ARGS...`` from this checkout."""
    return [sys.executable, "-m", "watcher", "-c", str(config), *args]


def run_watcher(
    config: Path, *args: str, ok: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a watcher command to its end (tables printed at full width); with ``ok`` it must
    succeed."""
    result = subprocess.run(
        watcher_cmd(config, *args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a ``--json`` output, one per line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def statement_rss(feed: str, items: int) -> bytes:
    """An RSS feed of ``items`` entries, each a statement by Jen Zhu Scott (one hit each)."""
    entries = "".join(
        f"<item><guid>{feed}-{i}</guid><title>Jen Zhu Scott said {feed} item {i}</title>"
        f"<description>Jen Zhu Scott said that {feed} has news number {i}.</description></item>"
        for i in range(items)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{feed}</title>{entries}</channel></rss>'.encode()


def write_config(
    path: Path,
    database_url: str,
    feeds: Mapping[str, str],
    *,
    interval: str = "15m",
    watches: str = "speakers:\n  - name: Jen Zhu Scott",
    smtp_port: int | None = None,
    hooks: Mapping[str, str] | None = None,
    desk: bool = True,
    extra: str = "",
) -> Path:
    """A config file: ``feeds`` (name: URL) alerting from their first poll, ``watches``, and
    with ``smtp_port`` an email channel "desk" (unless not ``desk``) and ``hooks`` (name: URL)."""
    lines = "\n".join(f'  - {{name: "{name}", url: "{url}"}}' for name, url in feeds.items())
    channels = ["  - {name: desk, type: email, to: [analyst@example.org]}"] if desk and smtp_port else []
    channels += [
        f'  - {{name: "{n}", type: webhook, url: "{u}", secret: "test-secret"}}' for n, u in (hooks or {}).items()
    ]
    smtp = (
        f"smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: watcher@example.org}}" if smtp_port else ""
    )
    path.write_text(
        f"""
database: {database_url}
defaults: {{interval: {interval}, timeout: 10s, alert_on_first_poll: true}}
feeds:
{lines}
{watches}
{smtp}
channels:
{chr(10).join(channels) if channels else "  []"}
{extra}
""",
        encoding="utf-8",
    )
    return path


def body_of(message: EmailMessage, kind: str = "plain") -> str:
    """The text of an email's plain or HTML part."""
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    return str(part.get_content())


class Serving:
    """``watcher run --http 127.0.0.1:0`` as a separate process, and where it listens."""

    def __init__(self, config: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.log = config.parent / "daemon.log"
        self._log_file = self.log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            watcher_cmd(config, "run", *args),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            env={**os.environ, **(env or {})},
        )
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"on (http://127\.0\.0\.1:\d+/) \(", self.log.read_text(encoding="utf-8"))
            return bool(found) or self.process.poll() is not None

        wait_for(listening, "the daemon's HTTP endpoint")
        assert found, f"the daemon did not listen:\n{self.log.read_text(encoding='utf-8')}"
        self.url = found[0]

    def stop(self) -> str:
        """Stop the daemon (SIGTERM) and return its log; it must exit 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        text = self.log.read_text(encoding="utf-8")
        assert self.process.returncode == 0, text
        return text


@contextmanager
def serving(config: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Serving]:
    """The daemon of ``config`` with its HTTP endpoint on a free loopback port, stopped after."""
    daemon = Serving(config, "--http", "127.0.0.1:0", *args, env=env)
    try:
        yield daemon
    finally:
        daemon.stop()
