"""Cluster runs (issue 16): several `watcher run` processes on one PostgreSQL database.

    python bench/cluster.py                         # both runs below, full size
    python bench/cluster.py --only run --feeds 300 --interval 10 --seconds 60 --processes 3
    python bench/cluster.py --only throughput --feeds 600 --latency-ms 100 --out cluster.json

**run**: N daemons, F loopback feeds polled every I seconds for S seconds, a new entry in
a random tenth of the feeds every I seconds (``--changed``; each a hit on "Jen Zhu Scott"),
a webhook channel and an email channel. Halfway, the daemon running the most jobs is SIGKILLed. Reported: feed requests
in the S-second window against feeds x cycles (exactly once per interval is 1.00); how long
the killed daemon's running jobs took to be retried by the others; entries served but not
stored, entries stored twice, hits and alerts per channel; (entry, channel) pairs never
alerted (lost) or alerted under two ids; processes of the killed daemon left 15 s later;
whether the survivors stopped cleanly on SIGTERM.

**throughput**: F feeds answering after an added latency (100 ms), their entries stored
beforehand so each poll is a conditional GET answered 304; 1 then N daemons (18 jobs at
once each, fixed), every feed made due at once: the seconds until every feed's poll is
recorded, and the ratio (issue 16: N=3 at least 2.5x faster than 1).

Needs PostgreSQL at 127.0.0.1:5432, database ``test`` (or ``WATCHER_TEST_POSTGRES``); each
run uses a private schema, dropped at the end. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from tests.conftest import POSTGRES_URL, run_watcher, statement_rss, wait_for, watcher_cmd, write_config  # noqa: E402
from tests.httpserver import LoopbackServer  # noqa: E402
from watcher.mailsink import MailSink  # noqa: E402
from watcher.pipeline import POLL_THREADS  # noqa: E402

PLAIN = POSTGRES_URL.replace("+psycopg", "")


@contextmanager
def schema() -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PLAIN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PLAIN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def sql(name: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PLAIN, autocommit=True, options=f"-csearch_path={name}") as conn:
        cursor = conn.execute(query)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


class Site:
    """F feeds, each with its own count of entries; an optional latency; 304 on a matching ETag."""

    def __init__(self, server: LoopbackServer, count: int) -> None:
        self.server = server
        self.items = dict.fromkeys(self.times_names(count), 1)
        self.latency = 0.0
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {name: [] for name in self.times_names(count)}
        self.served: set[str] = set()
        for name in self.times:
            server.route(f"/{name}.xml", self._handler(name))

    def _handler(self, name: str) -> Any:
        def handler(request: Any) -> None:
            with self.lock:
                self.times[name].append(time.monotonic())
                items = self.items[name]
            if self.latency:
                time.sleep(self.latency)
            etag = f'"{items}"'
            if request.headers.get("If-None-Match") == etag:
                request.send_response(304)
                request.send_header("ETag", etag)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            body = statement_rss(name, items)
            with self.lock:
                self.served.update(f"{name}-{i}" for i in range(items))
            request.send_response(200)
            request.send_header("Content-Type", "application/rss+xml")
            request.send_header("ETag", etag)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)

        return handler

    @staticmethod
    def times_names(count: int) -> list[str]:
        return [f"f{n:04d}" for n in range(count)]

    def grow(self, fraction: float, rng: random.Random) -> None:
        """A new entry in a random ``fraction`` of the feeds."""
        with self.lock:
            for name in rng.sample(sorted(self.items), max(1, round(fraction * len(self.items)))):
                self.items[name] += 1

    def urls(self) -> dict[str, str]:
        return {name: self.server.url(f"/{name}.xml") for name in self.times}


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as f:
        return subprocess.Popen(watcher_cmd(config, "run"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f)


def stop(daemons: list[subprocess.Popen[bytes]]) -> list[int | None]:
    for d in daemons:
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
    codes = []
    for d in daemons:
        try:
            codes.append(d.wait(30))
        except subprocess.TimeoutExpired:
            d.kill()
            codes.append(None)
    return codes


def members(name: str) -> int:
    return int(sql(name, "SELECT count(*) FROM cluster_members")[0][0])


def cluster_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with schema() as name, LoopbackServer() as server, MailSink(work / "mail") as sink:
        site = Site(server, args.feeds)
        hook_ids: list[str] = []
        hook_lock = threading.Lock()

        def hook(request: Any) -> None:
            with hook_lock:
                hook_ids.append(request.headers["webhook-id"])
            request.send_response(200)
            request.send_header("Content-Length", "0")
            request.end_headers()

        server.route("/hook", hook)
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
        config = write_config(
            work / "feeds.yaml",
            url,
            site.urls(),
            interval=f"{args.interval:g}s",
            smtp_port=sink.port,
            hooks={"hook": server.url("/hook")},
        )
        run_watcher(config, "db", "upgrade")
        daemons = [start(config, work / f"daemon{i}.log") for i in range(args.processes)]
        trees: dict[int, list[psutil.Process]] = {}
        try:
            wait_for(lambda: members(name) == args.processes, "every daemon to join", timeout=120)
            for d in daemons:
                parent = psutil.Process(d.pid)
                trees[d.pid] = [parent, *parent.children(recursive=True)]
            wait_for(lambda: all(site.times.values()), "every feed polled once", timeout=120)
            # The window starts once every feed has had its first poll (the one that stores
            # each feed's backlog, and starts each process's parse workers).
            t0 = max(min(t) for t in site.times.values())
            window_end = t0 + args.seconds
            killed: dict[str, Any] = {}
            next_entry = t0 + args.interval
            rng = random.Random(7)
            while time.monotonic() < window_end:
                now = time.monotonic()
                if now >= next_entry:
                    site.grow(args.changed, rng)
                    next_entry += args.interval
                if not killed and now >= t0 + args.seconds / 2:
                    killed = kill_busiest(name, daemons)
                time.sleep(0.05)
            # The window is over: no new entries; let the outbox drain.
            wait_for(
                lambda: (
                    sql(name, "SELECT count(*) FROM outbox WHERE status <> 'sent'")[0][0] == 0
                    and sql(name, "SELECT count(*) FROM entries")[0][0] == len(site.served)
                ),
                "every entry stored and every alert sent",
                timeout=120,
            )
            retried = killed.get("retried_after")
            survivors = [d for d in daemons if d.pid != killed.get("pid")]
            codes = stop(survivors)
        finally:
            for d in daemons:
                if d.poll() is None:
                    d.kill()
        time.sleep(1)
        left = [p.pid for procs in trees.values() for p in procs if p.is_running() and p.status() != "zombie"]
        counts = [sum(1 for t in times if t0 <= t < window_end) for times in site.times.values()]
        in_window = sum(counts)
        histogram = {str(k): counts.count(k) for k in sorted(set(counts))}
        expected = args.feeds * round(args.seconds / args.interval)
        entries = int(sql(name, "SELECT count(*) FROM entries")[0][0])
        hits = int(sql(name, "SELECT count(*) FROM hits")[0][0])
        per_channel = dict(sql(name, "SELECT channel, count(*) FROM outbox WHERE status = 'sent' GROUP BY channel"))
        two_ids = int(
            sql(name, "SELECT count(*) FROM (SELECT hit_id, channel FROM outbox GROUP BY 1, 2 HAVING count(*) > 1) x")[
                0
            ][0]
        )
        outbox_ids = {r[0] for r in sql(name, "SELECT alert_id FROM outbox WHERE channel = 'hook'")}
        emails = {m.message["Message-ID"] for m in sink.messages}
        return {
            "processes": args.processes,
            "feeds": args.feeds,
            "interval_s": args.interval,
            "changed_per_interval": args.changed,
            "seconds": args.seconds,
            "requests_in_window": in_window,
            "feeds_x_cycles": expected,
            "requests_ratio": round(in_window / expected, 3),
            "feeds_by_requests_in_window": histogram,
            "killed_pid": killed.get("pid"),
            "killed_running_jobs": killed.get("jobs"),
            "killed_jobs_retried_after_s": retried,
            "entries_served": len(site.served),
            "entries_stored": entries,
            "hits": hits,
            "alerts_sent": per_channel,
            "lost": sum(max(0, hits - per_channel.get(c, 0)) for c in ("hook", "desk")),
            "hook_ids_not_in_outbox": len(set(hook_ids) - outbox_ids),
            "hook_resends_same_id": len(hook_ids) - len(set(hook_ids)),
            "emails_distinct": len(emails),
            "hit_channel_pairs_with_two_ids": two_ids,
            "left_behind": left,
            "survivor_exit_codes": codes,
        }


def kill_busiest(name: str, daemons: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """SIGKILL the daemon running the most jobs; then wait until those jobs are done by others."""
    busiest = (
        "SELECT m.owner, array_agg(j.id) FROM procrastinate_jobs j JOIN cluster_members m ON m.worker_id = j.worker_id"
        " WHERE j.status = 'doing' GROUP BY m.owner ORDER BY count(*) DESC"
    )
    rows = sql(name, busiest)
    deadline = time.monotonic() + 15
    while not rows and time.monotonic() < deadline:  # polls come in bursts: wait for one
        time.sleep(0.02)
        rows = sql(name, busiest)
    if rows:
        owner, jobs = rows[0]
        pid = int(owner.rpartition(":")[2])
    else:
        pid, jobs = daemons[0].pid, []
    victim = next(d for d in daemons if d.pid == pid)
    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    result: dict[str, Any] = {"pid": pid, "jobs": len(jobs)}

    def watch() -> None:
        ids = ",".join(str(j) for j in jobs) or "0"
        while time.monotonic() - killed_at < 120:
            left = sql(name, f"SELECT count(*) FROM procrastinate_jobs WHERE id IN ({ids}) AND status = 'doing'")
            if left[0][0] == 0:
                result["retried_after"] = round(time.monotonic() - killed_at, 1)
                return
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    return result


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    seconds = {n: one_cycle(n, args, work) for n in (1, args.processes)}
    return {
        "feeds": args.feeds,
        "latency_ms": args.latency_ms,
        "jobs_per_process": POLL_THREADS + 2,  # no channel here: 16 and the tick's 2
        "cycle_seconds": {str(k): v for k, v in seconds.items()},
        "speedup": round(seconds[1] / seconds[args.processes], 2),
    }


def one_cycle(n: int, args: argparse.Namespace, work: Path) -> float:
    """Seconds for ``n`` daemons to poll every feed once, all due at once."""
    with schema() as name, LoopbackServer() as server:
        site = Site(server, args.feeds)
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
        config = write_config(work / f"feeds{n}.yaml", url, site.urls(), interval="1h")
        run_watcher(config, "poll")  # every entry stored: the measured polls are 304s
        daemons = [start(config, work / f"through{n}-{i}.log") for i in range(n)]
        try:
            wait_for(lambda: members(name) == n, "every daemon to join", timeout=120)
            queued = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'watcher.poll' AND status = 'todo'"
            wait_for(lambda: sql(name, queued)[0][0] == args.feeds, "every feed queued", timeout=120)
            site.latency = args.latency_ms / 1000
            marker = sql(name, "SELECT now() AT TIME ZONE 'UTC'")[0][0]
            started = time.monotonic()
            sql(
                name,
                "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE task_name = 'watcher.poll' AND status = 'todo'",
            )
            done = f"SELECT count(*) FROM feeds WHERE last_polled_at >= '{marker.isoformat()}'"
            wait_for(lambda: sql(name, done)[0][0] == args.feeds, "a cycle of every feed", timeout=300)
            return round(time.monotonic() - started, 2)
        finally:
            stop(daemons)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["run", "throughput"])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--feeds", type=int)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--changed", type=float, default=0.1, help="fraction of feeds with a new entry each interval")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="watcher-cluster-") as tmp:
        work = Path(tmp)
        if args.only in (None, "run"):
            run_args = argparse.Namespace(**{**vars(args), "feeds": args.feeds or 300})
            r = report["run"] = cluster_run(run_args, work)
            show("run", r)
            ok &= 0.9 <= r["requests_ratio"] <= 1.1 and r["lost"] == 0 and r["hit_channel_pairs_with_two_ids"] == 0
            ok &= (
                not r["left_behind"] and r["hook_ids_not_in_outbox"] == 0 and r["entries_stored"] == r["entries_served"]
            )
        if args.only in (None, "throughput"):
            t_args = argparse.Namespace(**{**vars(args), "feeds": args.feeds or 600})
            t = report["throughput"] = throughput(t_args, work)
            show("throughput", t)
            ok &= t["speedup"] >= 2.5
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


def show(section: str, values: dict[str, Any]) -> None:
    print(f"{section}:")
    for key, value in values.items():
        print(f"  {key:32} {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
