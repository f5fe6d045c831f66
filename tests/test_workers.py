"""Parsing and matching in worker processes: same results as inline, and no hang lasts."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.errors import ParseError
from watcher.types import Speaker, Theme
from watcher.workers import InlineWorkers, ProcessWorkers

SAMPLE = (Path(__file__).resolve().parent.parent / "watcher" / "demo_feeds" / "forum-wire.xml").read_bytes()
SPEAKERS = (Speaker("Jen Zhu Scott", ("Zhu Scott",)),)
THEMES = (Theme("Decoupling", all_of=(("decoupling",),)),)


def big_feed(items: int) -> bytes:
    item = "<item><guid>g{}</guid><title>Story {}</title><description>{}</description></item>"
    body = "".join(item.format(i, i, "words and more words " * 40) for i in range(items))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>big</title>{body}</channel></rss>'.encode()


def test_worker_processes_give_the_same_articles_and_hits_as_inline() -> None:
    inline, pool = InlineWorkers(SPEAKERS, THEMES), ProcessWorkers(SPEAKERS, THEMES, processes=1)
    try:
        expected = inline.parse(SAMPLE, url="http://x/feed")
        got = pool.parse(SAMPLE, url="http://x/feed")
        assert got == expected
        assert pool.match(got.articles) == inline.match(expected.articles) != {}
    finally:
        pool.close()


def test_a_parse_that_runs_past_the_time_limit_fails_its_feed_and_the_pool_recovers() -> None:
    # 2 s: ample for a worker to start and parse a small feed, far short of the ~5-10 s
    # feedparser needs for 20,000 items.
    pool = ProcessWorkers(SPEAKERS, THEMES, processes=1, time_limit=2.0)
    try:
        with pytest.raises(ParseError, match=r"parsing took longer than 2s"):
            pool.parse(big_feed(20_000), url="http://x/big")
        assert pool.parse(SAMPLE, url="http://x/feed").articles  # a fresh pool took over
    finally:
        pool.close()
