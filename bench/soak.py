"""Soak: ``watcher run`` as a daemon for a fixed time, with entries trickling in, sampling RSS.

The daemon polls every feed of the workload every ``interval``; a background thread adds
one entry to a random feed every ``trickle_every`` seconds; the daemon's resident memory
(psutil, the process and any children) is sampled every ``sample_every`` seconds. Growth is
measured from the end of a warm-up (the first poll of every feed stores the whole backlog,
which is a one-off) to the end. At the end the daemon gets SIGTERM and must exit 0 within
``stop_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from bench.child import env_for
from bench.workload import REPO, Workload


@dataclass
class SoakResult:
    seconds: float
    interval: str
    feeds: int
    entries_added: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, RSS MB)
    start_rss_mb: float = 0.0
    warm_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    end_rss_mb: float = 0.0
    growth_pct: float = 0.0
    exit_code: int | None = None
    stop_seconds: float = 0.0
    cpu_seconds: float = 0.0
    stored_entries: int = 0
    stored_entries_expected: int = 0
    log_polls_with_new: int = 0
    log_warnings: int = 0
    log_errors: int = 0
    #: Distinct WARNING/ERROR/CRITICAL messages (digits folded to #) with their counts.
    log_problems: dict[str, int] = field(default_factory=dict)
    stderr_tail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rss_mb(proc: psutil.Process) -> tuple[float, float]:
    """(RSS of the process tree in MB, CPU seconds of the process)."""
    try:
        rss = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                rss += child.memory_info().rss
        t = proc.cpu_times()
        return rss / 2**20, t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0, 0.0


def run_soak(
    work: Workload,
    seconds: float,
    *,
    interval: str = "5s",
    trickle_every: float = 0.5,
    sample_every: float = 5.0,
    warmup: float | None = None,
    stop_timeout: float = 60.0,
) -> SoakResult:
    """Run the daemon on ``work``'s feeds for ``seconds``; see the module docstring."""
    config = work.write_config("soak", interval=interval)
    warmup = min(max(30.0, seconds * 0.2), seconds / 2) if warmup is None else warmup
    err_path = work.dir / "soak.err"
    result = SoakResult(seconds=seconds, interval=interval, feeds=work.feeds, entries_added=0)
    stop = threading.Event()
    rng = random.Random(f"soak:{work.seed}")
    added = [0]

    def trickle() -> None:
        while not stop.wait(trickle_every):
            work.site.bump(1 / work.feeds, rng)  # one feed
            added[0] += 1

    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [work.python, "-m", "watcher", "-c", str(config), "run"],
            cwd=work.dir,
            env=env_for(REPO),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        ps = psutil.Process(proc.pid)
        started = time.monotonic()
        feeder = threading.Thread(target=trickle, name="trickle", daemon=True)
        feeder.start()
        try:
            while (t := time.monotonic() - started) < seconds and proc.poll() is None:
                rss, cpu = _rss_mb(ps)
                result.samples.append((round(t, 1), round(rss, 1)))
                result.cpu_seconds = cpu
                time.sleep(min(sample_every, max(0.0, seconds - t)))
        finally:
            stop.set()
            feeder.join(timeout=10)
        rss, cpu = _rss_mb(ps)
        result.samples.append((round(time.monotonic() - started, 1), round(rss, 1)))
        result.cpu_seconds = cpu or result.cpu_seconds
        sent = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            result.exit_code = proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            result.exit_code = None
        result.stop_seconds = time.monotonic() - sent

    result.entries_added = added[0]
    live = [rss for _, rss in result.samples if rss > 0]
    warm = [rss for t, rss in result.samples if t >= warmup and rss > 0]
    if live:
        result.start_rss_mb, result.peak_rss_mb, result.end_rss_mb = live[0], max(live), live[-1]
    if warm:
        result.warm_rss_mb = warm[0]
        result.growth_pct = 100 * (warm[-1] - warm[0]) / warm[0]
    log = err_path.read_text(errors="replace")
    result.log_polls_with_new = log.count("new or changed entries")
    result.log_warnings = log.count(" WARNING ")
    result.log_errors = log.count(" ERROR ") + log.count(" CRITICAL ")
    for line in log.splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            key = re.sub(r"\d+", "#", f"{parts[2]} {parts[4]}")[:200]
            result.log_problems[key] = result.log_problems.get(key, 0) + 1
    result.stderr_tail = "\n".join(log.strip().splitlines()[-15:])
    result.stored_entries_expected = work.feeds * work.entries + added[0]
    try:
        with sqlite3.connect(work.database("soak")) as db:
            result.stored_entries = db.execute("select count(*) from entries").fetchone()[0]
    except sqlite3.Error:
        result.stored_entries = -1
    return result
