"""Run ``watcher`` as a child process and measure it: wall time, CPU and peak RSS from
``os.wait4``'s rusage, and the per-feed JSON of ``watcher poll --json`` summed per stage.

Stage seconds are summed over the poll's worker threads, so with several workers their sum
can exceed the wall time; they show where the work goes, not what the user waits for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

STAGES = ("fetch", "parse", "dedup", "store")


@dataclass
class PollRun:
    label: str
    wall: float
    cpu_user: float
    cpu_sys: float
    #: Peak resident set of the child, MB: its VmHWM, sampled from /proc every 20 ms.
    peak_rss_mb: float
    exit_code: int
    #: The child plus its descendants (fork server, fetch helpers, parse workers): the sum of
    #: each process's peak RSS, MB (an upper bound), and of their CPU seconds (a lower bound).
    tree_peak_rss_mb: float = 0.0
    tree_cpu: float = 0.0
    #: The largest PSS of the whole tree at one moment, MB (sampled every 0.1 s).
    tree_pss_mb: float = 0.0
    #: ru_maxrss from wait4, MB. Linux carries the parent's high-water mark into a forked
    #: child, so this is max(benchmark process at fork, child); kept for reference only.
    ru_maxrss_mb: float = 0.0
    feeds: int = 0
    new: int = 0
    hits: int = 0
    not_modified: int = 0
    errors: int = 0
    #: Seconds per stage, summed over feeds (and so over worker threads).
    stages: dict[str, float] = field(default_factory=dict)
    delivery: dict[str, Any] | None = None
    first_errors: list[str] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu": self.cpu}


def env_for(repo: Path) -> dict[str, str]:
    """The environment of a child: ``watcher`` imported from ``repo``, no stray database."""
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHER_DATABASE_URL", "WATCHER_CONFIG")}
    env["PYTHONPATH"] = str(repo)
    return env


def run_measured(label: str, argv: list[str], *, repo: Path, workdir: Path, timeout: float) -> tuple[PollRun, str]:
    """Run ``argv`` to completion (killed after ``timeout``); return the measures and stdout."""
    out_path, err_path = workdir / f"{label}.out", workdir / f"{label}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=workdir, env=env_for(repo), stdout=out, stderr=err)
        killer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
        killer.start()
        hwm = _HighWater(proc.pid)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            hwm.stop()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    stderr = err_path.read_text(errors="replace")
    run = PollRun(
        label=label,
        wall=wall,
        cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime,
        peak_rss_mb=hwm.mb,
        exit_code=proc.returncode,
        tree_peak_rss_mb=hwm.tree_mb,
        tree_pss_mb=hwm.tree_pss_mb,
        # wait4 counts the child and the children it reaped; the fork server, and the
        # processes it forks, are not among them.
        tree_cpu=usage.ru_utime + usage.ru_stime + hwm.descendants_cpu,
        ru_maxrss_mb=usage.ru_maxrss / 1024,
        stderr_tail="\n".join(stderr.strip().splitlines()[-25:]),
    )
    return run, out_path.read_text(errors="replace")


class _HighWater:
    """Samples ``VmHWM`` (the peak RSS of the process's current address space, which exec
    starts afresh) from ``/proc/<pid>/status`` until stopped. The peak is monotonic, so only
    growth in the last interval before exit can be missed.

    Every fifth sample also visits the descendants (watcher's fork server, fetch helpers and
    parse workers): each one's own VmHWM and CPU time, as last seen. Their sum with the child's
    is the tree's figure: an upper bound for memory (shared pages count once per process, and
    peaks that did not coincide are added), a lower bound for CPU (a process's last 0.1 s
    before it exits can be missed). The same visit sums the tree's PSS (proportional set
    size: a page shared by n processes counts 1/n in each), the memory the tree really holds
    at that moment; ``tree_pss_mb`` is its largest sum.
    """

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.path, self.every, self.kb = f"/proc/{pid}/status", every, 0
        self.pid = pid
        #: pid -> (peak RSS kB, CPU seconds) of each descendant seen.
        self.descendants: dict[int, tuple[int, float]] = {}
        self.pss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hwm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self.kb = max(self.kb, _kb(self.path, "VmHWM:"))
            if tick % 5 == 0:
                self._visit_descendants()
            tick += 1
            self._stop.wait(self.every)

    def _visit_descendants(self) -> None:
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        pss = _kb(f"/proc/{self.pid}/smaps_rollup", "Pss:")
        for child in children:
            try:
                times = child.cpu_times()
                kb = _kb(f"/proc/{child.pid}/status", "VmHWM:")
            except psutil.Error:
                continue
            seen_kb, _ = self.descendants.get(child.pid, (0, 0.0))
            self.descendants[child.pid] = (max(seen_kb, kb), times.user + times.system)
            pss += _kb(f"/proc/{child.pid}/smaps_rollup", "Pss:")
        self.pss_kb = max(self.pss_kb, pss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def mb(self) -> float:
        return self.kb / 1024

    @property
    def tree_mb(self) -> float:
        return (self.kb + sum(kb for kb, _ in self.descendants.values())) / 1024

    @property
    def tree_pss_mb(self) -> float:
        return self.pss_kb / 1024

    @property
    def descendants_cpu(self) -> float:
        return sum(cpu for _, cpu in self.descendants.values())


def _kb(path: str, field: str) -> int:
    """A ``field: N kB`` line of a /proc file (status, smaps_rollup); 0 if it is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_poll(label: str, config: Path, *, python: str, repo: Path, workdir: Path, timeout: float = 1800) -> PollRun:
    """``python -m watcher -c config poll --json``, measured and summarised."""
    run, stdout = run_measured(
        label,
        [python, "-m", "watcher", "-c", str(config), "poll", "--json"],
        repo=repo,
        workdir=workdir,
        timeout=timeout,
    )
    stages: Counter[str] = Counter()
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if "delivery" in row:
            run.delivery = row["delivery"]
            continue
        run.feeds += 1
        run.new += row.get("new", 0)
        run.hits += row.get("hits", 0)
        run.not_modified += bool(row.get("not_modified"))
        if row.get("error"):
            run.errors += 1
            if len(run.first_errors) < 5:
                run.first_errors.append(f"{row.get('feed')}: {row['error']}")
        for stage, seconds in (row.get("timings") or {}).items():
            stages[stage] += seconds
    run.stages = {s: stages.get(s, 0.0) for s in STAGES} | {s: v for s, v in stages.items() if s not in STAGES}
    return run


def run_peer(
    label: str, argv: list[str], *, repo: Path, workdir: Path, timeout: float = 1800
) -> tuple[PollRun, dict[str, Any]]:
    """A ``bench.peers`` mode as a child, measured like a poll; with the JSON it printed."""
    run, stdout = run_measured(label, argv, repo=repo, workdir=workdir, timeout=timeout)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if run.exit_code != 0 or not lines:
        raise RuntimeError(f"{label} failed (exit {run.exit_code}):\n{run.stderr_tail}")
    return run, json.loads(lines[-1])


def startup_cost(*, python: str, repo: Path, workdir: Path) -> PollRun:
    """The interpreter plus watcher's imports, with no work: the fixed cost in every poll's wall."""
    code = "import watcher.cli, watcher.service, watcher.store, watcher.parse, feedparser"
    run, _ = run_measured("startup", [python, "-c", code], repo=repo, workdir=workdir, timeout=120)
    return run
