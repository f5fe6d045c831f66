"""What the benchmark runs as child processes, beside ``watcher poll``: the 304 floor, reader,
and watcher's own poll inside a running process (the daemon's case, without start-up).

    python -m bench.peers floor304 URLS ETAGS [--threads 16]
    python -m bench.peers reader DB URLS [--workers 8]
    python -m bench.peers daemon CONFIG [--polls 3]

``URLS`` and ``ETAGS`` are files with one value per line. Each mode prints one JSON object on
stdout: ``seconds`` is the measured part (for ``daemon``, each in-process poll's, best first).
reader is the peer for the whole-process times: it must be installed in the benchmark's own
environment (``pip install -r bench/requirements.txt``), never in watcher's dependencies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def floor304(urls: list[str], etags: list[str], threads: int) -> dict[str, float]:
    """Plain ``requests``: every URL with If-None-Match, from ``threads`` threads, one session."""
    import requests

    started = time.perf_counter()
    with requests.Session() as session, ThreadPoolExecutor(threads) as pool:

        def get(pair: tuple[str, str]) -> int:
            return session.get(pair[0], headers={"If-None-Match": pair[1]}, timeout=60).status_code

        statuses = list(pool.map(get, zip(urls, etags, strict=True)))
    if set(statuses) != {304}:
        raise SystemExit(f"expected only 304s, got {sorted(set(statuses))}")
    return {"seconds": time.perf_counter() - started}


def reader_update(db: str, urls: list[str], workers: int) -> dict[str, float]:
    """reader's own update of every feed: fetch, parse and store (the first run adds them)."""
    from reader import make_reader

    started = time.perf_counter()
    reader = make_reader(db)
    for url in urls:
        reader.add_feed(url, exist_ok=True)
    new = sum(
        r.value.new for r in reader.update_feeds_iter(workers=workers, scheduled=False) if hasattr(r.value, "new")
    )
    reader.close()
    return {"seconds": time.perf_counter() - started, "new": new}


def daemon_polls(config: str, polls: int) -> dict[str, object]:
    """``Watcher.poll()`` of every feed, ``polls`` times in one process: the daemon's cost."""
    from watcher.config import load_config
    from watcher.service import make_watcher

    watcher = make_watcher(load_config(config))
    try:
        seconds = []
        for _ in range(polls):
            started = time.perf_counter()
            results = watcher.poll()
            seconds.append(time.perf_counter() - started)
            errors = [r.error for r in results if r.error]
            if errors:
                raise SystemExit(f"{len(errors)} feeds failed: {errors[:3]}")
    finally:
        watcher.close()
    return {"seconds": min(seconds), "samples": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    floor = sub.add_parser("floor304")
    floor.add_argument("urls", type=Path)
    floor.add_argument("etags", type=Path)
    floor.add_argument("--threads", type=int, default=16)
    peer = sub.add_parser("reader")
    peer.add_argument("db")
    peer.add_argument("urls", type=Path)
    peer.add_argument("--workers", type=int, default=8)
    daemon = sub.add_parser("daemon")
    daemon.add_argument("config")
    daemon.add_argument("--polls", type=int, default=3)
    args = parser.parse_args(argv)
    if args.mode == "floor304":
        lines = args.urls.read_text().split(), args.etags.read_text().split("\n")
        result: dict[str, object] = dict(floor304(lines[0], lines[1][: len(lines[0])], args.threads))
    elif args.mode == "reader":
        result = dict(reader_update(args.db, args.urls.read_text().split(), args.workers))
    else:
        result = daemon_polls(args.config, args.polls)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
