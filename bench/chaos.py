"""Chaos run: `watcher run` SIGKILLed at random moments, then checked for lost and repeated
alerts and for processes left behind. Loopback only, bounded in time.

    python bench/chaos.py                       # 20 kills on SQLite, 5 on PostgreSQL
    python bench/chaos.py --trials 50 --pg-trials 10 --seed 7 --out chaos.json

Per backend, one database and one set of servers on 127.0.0.1: feeds where new entries
appear on every request (each says "Jen Zhu Scott said item <guid>", so each is a hit), an
SMTP server and a webhook receiver that each take a moment to answer (so kills land mid-
delivery too). Each trial starts `watcher run` (both channels, every feed each second),
waits until it has polled, lets it run a random 0.2-3 s more (or, one trial in five, kills
it 0-1.5 s after it started, while it migrates, syncs or boots its workers), and SIGKILLs
it; every process it had started must be gone within 15 s. Then the feeds stop publishing and one
last `watcher run` drains the outbox and is stopped with SIGTERM.

Reported per backend, over every entry the feeds ever served, on each channel:

* lost: an (entry, channel) that never arrived;
* duplicates with different ids: an (entry, channel) that arrived under two alert ids
  (a receiver dropping repeated ids would show it twice);
* resends with the same id: repeats a receiver drops (at-least-once, after a kill between
  the server's acceptance and the outbox mark);
* processes left behind: descendants of a killed `watcher run` still alive 15 s later.

PostgreSQL trials use a private schema at 127.0.0.1:5432 (database ``test``, trust auth, or
``WATCHER_TEST_POSTGRES``) and are skipped, saying why, when none answers. Exits 1 when
anything was lost, duplicated under another id or left behind.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watcher.mailsink import MailSink  # noqa: E402

POSTGRES_URL = os.environ.get("WATCHER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FEEDS = ("alpha", "beta", "gamma")
GUID = re.compile(r"item ([a-z]+-\d+)")
#: How long the processes of a killed `watcher run` may take to go.
ORPHAN_GRACE = 15.0


def wait_for(condition: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


# -- the servers ---------------------------------------------------------------------------


class Site:
    """The feeds and the webhook receiver, on one loopback HTTP server."""

    def __init__(self) -> None:
        self.published: dict[str, list[str]] = {name: [] for name in FEEDS}
        self.frozen = False
        self.polls = 0
        #: (webhook-id, guid) of every webhook received.
        self.hooks: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                name = self.path.strip("/").removesuffix(".xml")
                if name not in site.published:
                    self._reply(404, b"")
                    return
                self._reply(200, site.feed(name), "application/rss+xml")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(0.02)  # a moment to take it: kills land between receipt and mark too
                found = GUID.search(json.loads(body)["entry"]["title"])
                with site._lock:
                    site.hooks.append((self.headers["webhook-id"], found.group(1) if found else "?"))
                self._reply(200, b"")

            def _reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def feed(self, name: str) -> bytes:
        with self._lock:
            self.polls += 1
            entries = self.published[name]
            if not self.frozen:
                entries += [f"{name}-{len(entries) + i}" for i in range(random.randint(1, 2))]
            guids = list(entries)
        items = "".join(
            f"<item><guid>{g}</guid><title>Jen Zhu Scott said item {g}</title>"
            f"<link>http://wire.invalid/{g}</link></item>"
            for g in guids
        )
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>{items}</channel></rss>'.encode()

    def all_published(self) -> list[str]:
        with self._lock:
            return [g for guids in self.published.values() for g in guids]

    def __enter__(self) -> Site:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request is the point of the exercise


class SlowSink(MailSink):
    """An SMTP server that takes a moment to accept each message."""

    def _store(self, session: Any, envelope: Any) -> None:
        time.sleep(0.03)
        super()._store(session, envelope)


# -- one backend's run ---------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    kills: int = 0
    entries: int = 0
    #: Deliveries received, per channel.
    emails: int = 0
    webhooks: int = 0
    lost: int = 0
    duplicates_with_different_ids: int = 0
    resends_with_the_same_id: int = 0
    processes_left_behind: int = 0
    seconds: float = 0.0
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.skipped is not None or not (
            self.lost or self.duplicates_with_different_ids or self.processes_left_behind or self.problems
        )


def write_config(path: Path, database: str, site: Site, smtp_port: int) -> Path:
    feeds = "\n".join(f'  - {{name: {n}, url: "{site.url(f"/{n}.xml")}"}}' for n in FEEDS)
    path.write_text(
        f"""
database: {database}
defaults: {{interval: 1s, timeout: 10s, alert_on_first_poll: true}}
feeds:
{feeds}
speakers:
  - name: Jen Zhu Scott
smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: watcher@example.org}}
channels:
  - {{name: desk, type: email, to: [analyst@example.org]}}
  - {{name: hook, type: webhook, url: "{site.url("/hook")}", secret: "chaos-secret"}}
""",
        encoding="utf-8",
    )
    return path


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "watcher", "-c", str(config), "run"], cwd=ROOT, stdout=out, stderr=out
        )


def polled_or_exited(site: Site, daemon: subprocess.Popen[bytes]) -> Callable[[], bool]:
    """A condition: the site was polled since now, or ``daemon`` has exited."""
    polls = site.polls
    return lambda: site.polls > polls or daemon.poll() is not None


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def left_behind(processes: list[psutil.Process]) -> list[str]:
    """Those of ``processes`` still running ORPHAN_GRACE seconds on, described; they are killed."""
    deadline = time.monotonic() + ORPHAN_GRACE
    alive = [p for p in processes if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    described = []
    for p in alive:
        try:
            described.append(f"process {p.pid} ({' '.join(p.cmdline()[:4])})")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return described


def run_backend(backend: str, database: str, trials: int, rng: random.Random, work: Path) -> Result:
    result = Result(backend)
    started = time.monotonic()
    log = work / f"{backend}.log"
    with Site() as site, SlowSink() as sink:
        config = write_config(work / f"{backend}.yaml", database, site, sink.port)
        for _ in range(trials):
            daemon = start_daemon(config, log)
            processes: list[psutil.Process] = []
            try:
                if rng.random() < 0.2:
                    time.sleep(rng.uniform(0.0, 1.5))  # during start-up: migrating, syncing, booting
                else:
                    wait_for(polled_or_exited(site, daemon), "a poll", 120)
                    time.sleep(rng.uniform(0.2, 3.0))
                if daemon.poll() is not None:
                    result.problems.append(f"watcher run exited {daemon.returncode} before it was killed")
                    continue
                processes = descendants(daemon.pid)
            finally:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(timeout=30)
            result.kills += 1
            orphans = left_behind(processes)
            result.processes_left_behind += len(orphans)
            result.problems += [f"{orphan} outlived the kill" for orphan in orphans]

        # Drain: no more new entries; one daemon sends what the kills left, then stops.
        site.frozen = True
        published = site.all_published()
        result.entries = len(published)

        def delivered() -> bool:
            mails = {GUID.search(str(m.message["Subject"])) for m in sink.messages}
            emailed = {m.group(1) for m in mails if m}
            hooked = {g for _, g in list(site.hooks)}
            return set(published) <= emailed and set(published) <= hooked

        daemon = start_daemon(config, log)
        try:
            wait_for(polled_or_exited(site, daemon), "the draining daemon's first poll", 120)
            wait_for(delivered, "every alert delivered after the kills", 180)
        except TimeoutError as e:
            result.problems.append(str(e))
        finally:
            processes = descendants(daemon.pid)
            daemon.send_signal(signal.SIGTERM)
            try:
                if daemon.wait(timeout=30) != 0:
                    result.problems.append(f"the draining watcher run exited {daemon.returncode}")
            except subprocess.TimeoutExpired:
                daemon.kill()
                result.problems.append("the draining watcher run did not stop on SIGTERM")
        orphans = left_behind(processes)
        result.processes_left_behind += len(orphans)
        result.problems += [f"{orphan} outlived the stop" for orphan in orphans]

        emails: dict[str, list[str]] = collections.defaultdict(list)
        for mail in sink.messages:
            found = GUID.search(str(mail.message["Subject"]))
            emails[found.group(1) if found else "?"].append(str(mail.message["X-Watcher-Alert-Id"]))
        hooks: dict[str, list[str]] = collections.defaultdict(list)
        for alert_id, guid in site.hooks:
            hooks[guid].append(alert_id)
        result.emails, result.webhooks = len(sink.messages), len(site.hooks)
        for received in (emails, hooks):
            for guid in published:
                ids = received.get(guid, [])
                result.lost += not ids
                result.duplicates_with_different_ids += len(set(ids)) > 1
                result.resends_with_the_same_id += len(ids) - len(set(ids))
            strays = set(received) - set(published)
            if strays:
                result.problems.append(f"alerts for entries never published: {sorted(strays)[:5]}")
    result.seconds = round(time.monotonic() - started, 1)
    return result


# -- the databases -------------------------------------------------------------------------


@contextmanager
def sqlite_database(work: Path) -> Iterator[str]:
    yield f"sqlite:///{work}/chaos.db"


@contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    plain = POSTGRES_URL.replace("+psycopg", "")
    schema = f"chaos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"no PostgreSQL at {POSTGRES_URL}: {str(e).strip()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="SIGKILLs on SQLite (default 20)")
    parser.add_argument("--pg-trials", type=int, default=5, help="SIGKILLs on PostgreSQL (default 5; 0 skips)")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    random.seed(args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="watcher-chaos-") as tmp:
        work = Path(tmp)
        if args.trials:
            with sqlite_database(work) as url:
                results.append(run_backend("sqlite", url, args.trials, rng, work))
        if args.pg_trials:
            reason = postgres_unavailable()
            if reason:
                results.append(Result("postgresql", skipped=reason))
            else:
                with postgres_database() as url:
                    results.append(run_backend("postgresql", url, args.pg_trials, rng, work))
        logs = {p.name: p.read_text(errors="replace") for p in work.glob("*.log")}
    columns = (
        "backend",
        "kills",
        "entries",
        "emails",
        "webhooks",
        "lost",
        "dup ids",
        "same-id resends",
        "left behind",
        "seconds",
    )
    print(" | ".join(columns))
    for r in results:
        if r.skipped:
            print(f"{r.backend} | skipped: {r.skipped}")
            continue
        print(
            " | ".join(
                str(v)
                for v in (
                    r.backend,
                    r.kills,
                    r.entries,
                    r.emails,
                    r.webhooks,
                    r.lost,
                    r.duplicates_with_different_ids,
                    r.resends_with_the_same_id,
                    r.processes_left_behind,
                    r.seconds,
                )
            )
        )
        for problem in r.problems:
            print(f"  {r.backend}: {problem}")
    tracebacks = [name for name, text in logs.items() if "Traceback" in text]
    if tracebacks:
        print(f"tracebacks in the daemons' logs: {', '.join(tracebacks)}")
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.ok for r in results) and not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
