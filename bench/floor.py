"""The floor: what plain libraries need for the same bodies, measured in the benchmark's process.

* fetch: one ``requests.Session``, sequential GETs of every feed (as the issue's table did);
* parse: ``feedparser.parse(bytes)`` with its defaults (sanitising, relative-URI resolution);
* not modified: the same session sending ``If-None-Match`` for every feed (all 304);
* lower bounds for reference: feedparser without sanitising, and lxml (no feed semantics).

Each measurement reports wall and CPU seconds (``time.process_time``, this process only; the
server runs in another process).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import feedparser
import requests


@dataclass(frozen=True)
class Measure:
    name: str
    wall: float
    cpu: float
    items: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(name: str, items: int, work: Callable[[], object]) -> Measure:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Measure(name, time.perf_counter() - wall, time.process_time() - cpu, items)


def fetch_all(urls: Sequence[str]) -> tuple[Measure, list[bytes], list[str]]:
    """GET every URL with one session; return the measure, the bodies and their ETags."""
    bodies: list[bytes] = []
    etags: list[str] = []

    def work() -> None:
        with requests.Session() as s:
            for url in urls:
                r = s.get(url, timeout=30)
                r.raise_for_status()
                bodies.append(r.content)
                etags.append(r.headers.get("ETag", ""))

    return _timed("fetch (requests, 1 session, sequential)", len(urls), work), bodies, etags


def fetch_not_modified(urls: Sequence[str], etags: Sequence[str]) -> Measure:
    """GET every URL with If-None-Match; every answer must be 304."""

    def work() -> None:
        with requests.Session() as s:
            for url, etag in zip(urls, etags, strict=True):
                r = s.get(url, headers={"If-None-Match": etag}, timeout=30)
                if r.status_code != 304:
                    raise RuntimeError(f"{url}: expected 304, got {r.status_code}")

    return _timed("fetch unchanged (requests, If-None-Match, all 304)", len(urls), work)


def fetch_not_modified_threads(urls: Sequence[str], etags: Sequence[str], threads: int = 16) -> Measure:
    """The same 304 pass from ``threads`` threads sharing one session (a fair floor for a
    program that fetches concurrently)."""
    from concurrent.futures import ThreadPoolExecutor

    def work() -> None:
        with requests.Session() as s, ThreadPoolExecutor(threads) as pool:
            got = pool.map(
                lambda pair: s.get(pair[0], headers={"If-None-Match": pair[1]}, timeout=60),
                zip(urls, etags, strict=True),
            )
            if {r.status_code for r in got} != {304}:
                raise RuntimeError("expected only 304s")

    return _timed(f"fetch unchanged (requests, {threads} threads, all 304)", len(urls), work)


def parse_all(bodies: Sequence[bytes], **options: Any) -> tuple[Measure, int]:
    """``feedparser.parse`` every body; return the measure and the entry count."""
    counted = [0]

    def work() -> None:
        for body in bodies:
            counted[0] += len(feedparser.parse(body, **options).entries)

    label = "parse (feedparser defaults)" if not options else f"parse (feedparser {options})"
    m = _timed(label, len(bodies), work)
    return Measure(m.name, m.wall, m.cpu, counted[0]), counted[0]


def parse_lxml(bodies: Sequence[bytes]) -> Measure | None:
    """lxml XML parse of every body (no feed semantics): a lower bound; None without lxml."""
    try:
        from lxml import etree
    except ImportError:
        return None
    return _timed("parse (lxml.etree, no feed semantics)", len(bodies), lambda: [etree.fromstring(b) for b in bodies])
