"""The daemon's HTTP endpoint: what it adds to memory, and how fast /metrics answers.

    python bench/http_bench.py [--feeds 1000] [--entries 20] [--scrapes 300] [--out FILE]

Issue 13's targets: the endpoint adds < 15 MB to the daemon's RSS; /metrics answers in
< 50 ms with 1,000 feeds and 100 watches. Exits 1 when either is missed.

Set-up: the benchmark workload (``bench.workload``: generated feeds on a loopback server,
50 speakers + 50 themes) is polled once by ``watcher poll``, then given a month of history:
its hits are spread over the last 30 days and each gets an alert on a channel "desk" (most
sent, some due, failed and dead), so every gauge and the status page's chart have rows to
read. Then ``watcher run`` starts twice on that database, without and with ``--http``; its
feeds are not due for 15 minutes, so both daemons sit idle. The resident memory of the
daemon's main process (the endpoint lives there) is read after it settles; the one with
the endpoint is read after it has served the status page and /metrics. /metrics is then
fetched ``--scrapes`` times over one keep-alive connection, and the page 20 times.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import requests
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.child import env_for  # noqa: E402
from bench.workload import Workload  # noqa: E402
from watcher.store import hits, outbox  # noqa: E402

RSS_LIMIT_MB = 15.0
METRICS_LIMIT_MS = 50.0


def add_history(database: Path, seed: int) -> tuple[int, int]:
    """Spread the stored hits over 30 days and give each an alert; return (hits, alerts)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        ids = list(conn.execute(sa.select(hits.c.id)).scalars())
        conn.execute(
            hits.update().where(hits.c.id == sa.bindparam("b_id")).values(created_at=sa.bindparam("b_at")),
            [{"b_id": i, "b_at": now - timedelta(seconds=rng.uniform(0, 30 * 86400))} for i in ids],
        )
        rows = []
        for i in ids:
            status = rng.choices(("sent", "due", "failed", "dead"), (90, 4, 4, 2))[0]
            when = now - timedelta(seconds=rng.uniform(0, 3600))
            rows.append(
                {
                    "hit_id": i,
                    "channel": "desk",
                    "alert_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "status": status,
                    "attempts": 0 if status == "due" else 1,
                    "next_attempt_at": when,
                    "last_error": "HTTP 503 Service Unavailable" if status in ("failed", "dead") else None,
                    "created_at": when,
                    "sent_at": when if status == "sent" else None,
                }
            )
        conn.execute(outbox.insert(), rows)
    engine.dispose()
    return len(ids), len(rows)


def main_rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def settle(pid: int, seconds: float = 3.0) -> float:
    """The process's RSS once it has stopped changing by more than 0.2 MB over ``seconds``."""
    last = main_rss_mb(pid)
    for _ in range(20):
        time.sleep(seconds)
        now = main_rss_mb(pid)
        if abs(now - last) < 0.2:
            return now
        last = now
    return last


def start(config: Path, workdir: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"run{'-http' if args else ''}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher", "-c", str(config), "run", *args],
        cwd=workdir,
        env=env_for(REPO),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 120
    while "running:" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"watcher run did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed(session: requests.Session, url: str, count: int) -> list[float]:
    """Milliseconds of each of ``count`` GETs of ``url``."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(url, timeout=30)
        out.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "max_ms": round(ordered[-1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with Workload(args.feeds, args.entries, seed=args.seed) as work:
        config = work.write_config("http")
        polled = subprocess.run(
            [sys.executable, "-m", "watcher", "-c", str(config), "poll"],
            cwd=work.dir,
            env=env_for(REPO),
            capture_output=True,
            check=False,
        )
        if polled.returncode != 0:
            print(polled.stderr.decode(errors="replace"), file=sys.stderr)
            return 1
        stored_hits, alerts = add_history(work.database("http"), args.seed)

        plain, _ = start(config, work.dir)
        try:
            without = settle(plain.pid)
        finally:
            stop(plain)

        served, log = start(config, work.dir, "--http", "127.0.0.1:0")
        try:
            url = re.findall(r"on (http://127\.0\.0\.1:\d+/) \(", log.read_text())[0]
            session = requests.Session()
            page = summary(timed(session, url, 20))
            metrics = summary(timed(session, url + "metrics", args.scrapes))
            size = len(session.get(url + "metrics", timeout=30).content)
            with_http = settle(served.pid)
        finally:
            stop(served)

    added = with_http - without
    result = {
        "feeds": args.feeds,
        "watches": len(work.watches.speakers) + len(work.watches.themes),
        "hits": stored_hits,
        "alerts": alerts,
        "rss_without_http_mb": round(without, 1),
        "rss_with_http_mb": round(with_http, 1),
        "rss_added_mb": round(added, 1),
        "metrics": metrics,
        "metrics_bytes": size,
        "page": page,
    }
    print(f"{args.feeds} feeds, {result['watches']} watches, {stored_hits} hits over 30 days, {alerts} alerts")
    print(f"{'daemon RSS (main process), idle':<44}{without:>8.1f} MB")
    print(f"{'  with the endpoint, after serving':<44}{with_http:>8.1f} MB")
    print(f"{'  added by the endpoint (target < 15 MB)':<44}{added:>8.1f} MB")
    m = metrics
    print(
        f"{'/metrics, ms (target < 50)':<44}median {m['median_ms']}, p95 {m['p95_ms']}, max {m['max_ms']} ({size} bytes)"
    )
    print(f"{'status page /, ms':<44}median {page['median_ms']}, p95 {page['p95_ms']}, max {page['max_ms']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if added < RSS_LIMIT_MB and m["p95_ms"] < METRICS_LIMIT_MS else 1


if __name__ == "__main__":
    sys.exit(main())
