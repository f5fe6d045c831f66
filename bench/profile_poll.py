"""Profile ``watcher poll`` on the benchmark's workload: where does the time go?

    python bench/profile_poll.py --feeds 200 --entries 50 [--top 25] [--save DIR]

Runs the real command in this process (``watcher.cli.main(["-c", cfg, "poll", "--json"])``)
under cProfile, for the first poll and then the unchanged poll. cProfile sees only the thread
it runs on, so the poll's worker pool is replaced by a loop over ``poll_feed`` on the main thread:
the profile shows the work, not the concurrency. Prints the top functions by own time and by
cumulative time, and own time grouped by library (feedparser, sgmllib/xml, selectolax,
SQLAlchemy, sqlite3, requests/urllib3, watcher modules...).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import Workload

#: (label, substring of the code's file path), first match wins.
GROUPS = [
    ("feedparser", "/feedparser/"),
    ("sgmllib", "sgmllib"),
    ("xml.sax/expat", "/xml/"),
    ("selectolax", "selectolax"),
    ("sqlalchemy", "/sqlalchemy/"),
    ("alembic", "/alembic/"),
    ("requests", "/requests/"),
    ("urllib3", "/urllib3/"),
    ("http.client/socket", "/http/"),
    ("rapidfuzz", "rapidfuzz"),
    ("watcher.match", "watcher/match"),
    ("watcher.parse", "watcher/parse"),
    ("watcher.store", "watcher/store"),
    ("watcher.fetch", "watcher/fetch"),
    ("watcher (other)", "watcher/"),
    ("re", "/re/"),
    ("threading", "threading"),
]


def _group(filename: str, funcname: str) -> str:
    if filename == "~":  # a C function: attribute by name
        for label, key in [
            ("sqlite3", "sqlite3"),
            ("socket", "socket"),
            ("re", "re.Pattern"),
            ("selectolax", "selectolax"),
            ("expat", "xmlparser"),
            ("hashlib", "hash"),
        ]:
            if key in funcname:
                return label
        return "builtins"
    for label, key in GROUPS:
        if key in filename:
            return label
    return "other python"


def profile_command(config: Path, label: str, top: int, save: Path | None) -> float:
    import watcher.pipeline
    import watcher.service
    from watcher.cli import main as watcher_main

    def sequential(feeds, **parts):  # type: ignore[no-untyped-def]
        return [watcher.pipeline.poll_feed(feed, **parts) for feed in feeds]

    watcher.service.poll_feeds = sequential  # type: ignore[attr-defined]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.enable()
        try:
            watcher_main(["-c", str(config), "poll", "--json"])
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        finally:
            profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    if save:
        stats.dump_stats(str(save / f"{label.replace(' ', '_')}.prof"))
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n## {label}: {wall:.2f}s wall under cProfile (sequential), {total:.2f}s profiled\n")
    groups: Counter[str] = Counter()
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        groups[_group(filename, func)] += tt
    print(
        "own time by library: " + ", ".join(f"{g} {s:.2f}s ({100 * s / total:.0f}%)" for g, s in groups.most_common(12))
    )
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        body = out.getvalue()
        print(f"\n### top {top} by {order}\n")
        print(body[body.find("   ncalls") :].rstrip())
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="also write the .prof files into this directory")
    args = parser.parse_args()
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    with Workload(args.feeds, args.entries, args.seed) as work:
        config = work.write_config("profile")
        profile_command(config, "first poll", args.top, args.save)
        profile_command(config, "unchanged poll", args.top, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
