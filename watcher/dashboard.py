"""The daemon's status page: feeds, latest hits, the outbox and a chart of hits per day.

Pure: it takes what the store read and the time, and returns HTML. The page is one Jinja2
template with autoescape on (``render.page``), so every string from a feed or a server
(titles, evidence, errors, feed names) is text, never markup; links are offered only when
``render.safe_link`` allows them. The chart is SVG drawn here, server-side: no script at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from watcher.errors import redact_url
from watcher.render import hit_view, human_time, page
from watcher.types import FeedState, OutboxItem, StoredHit

#: Days the chart covers, today (UTC) included.
CHART_DAYS = 30
#: Watches the chart draws a row for, those with the most hits first; the rest are counted.
CHART_ROWS = 40
_LABEL_WIDTH = 190
_BAR_WIDTH = 14
_BAR_GAP = 2
_ROW_HEIGHT = 18
_TOTAL_WIDTH = 60


@dataclass(frozen=True)
class Bar:
    """One day of one watch in the chart."""

    day: str
    count: int
    x: int
    y: int
    height: int


@dataclass(frozen=True)
class Row:
    """One watch's line of the chart."""

    watch: str
    total: int
    y: int
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Chart:
    """Hits per day per watch over ``CHART_DAYS`` days, laid out for SVG."""

    days: tuple[str, ...]
    rows: tuple[Row, ...]
    #: Watches with hits in the period that got no row (beyond ``CHART_ROWS``).
    left_out: int
    width: int
    height: int
    #: Where the day labels under the chart go: (x, text).
    ticks: tuple[tuple[int, str], ...]
    #: The most hits one watch had in one day: the height of a full bar.
    peak: int


def chart(per_day: Sequence[tuple[str, str, int]], today: date) -> Chart:
    """Lay out ``per_day`` ((YYYY-MM-DD, watch, hits)) for the ``CHART_DAYS`` days up to ``today``.

    One row per watch, the busiest first; every bar on one scale, so rows compare.
    """
    days = tuple((today - timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1))
    counts: dict[str, dict[str, int]] = {}
    for day, watch, n in per_day:
        if day in days:
            by_day = counts.setdefault(watch, {})
            by_day[day] = by_day.get(day, 0) + n
    ranked = sorted(counts, key=lambda w: (-sum(counts[w].values()), w))
    shown = ranked[:CHART_ROWS]
    peak = max((n for w in shown for n in counts[w].values()), default=0)
    bar_room = _ROW_HEIGHT - 4
    rows = []
    for i, watch in enumerate(shown):
        top = 4 + i * _ROW_HEIGHT
        bars = []
        for j, day in enumerate(days):
            n = counts[watch].get(day, 0)
            height = max(1, round(bar_room * n / peak)) if n else 0
            x = _LABEL_WIDTH + j * (_BAR_WIDTH + _BAR_GAP)
            bars.append(Bar(day, n, x, top + bar_room - height, height))
        rows.append(Row(_cut(watch, 28), sum(counts[watch].values()), top, tuple(bars)))
    plot = 4 + len(rows) * _ROW_HEIGHT
    ticks = tuple(
        (_LABEL_WIDTH + j * (_BAR_WIDTH + _BAR_GAP), days[j][5:]) for j in range(0, CHART_DAYS, 7) if j < len(days)
    )
    width = _LABEL_WIDTH + CHART_DAYS * (_BAR_WIDTH + _BAR_GAP) + _TOTAL_WIDTH
    return Chart(days, tuple(rows), len(ranked) - len(shown), width, plot + 20, ticks, peak)


def status_page(
    *,
    feeds: Sequence[FeedState],
    hits: Sequence[StoredHit],
    outbox: Sequence[OutboxItem],
    per_day: Sequence[tuple[str, str, int]],
    now: datetime,
    version: str,
    started: datetime,
    last_cycle: datetime | None,
    alive: bool,
) -> str:
    """The whole page. ``outbox`` holds the alerts not sent (due, failed, dead)."""
    # Problems first: a failing feed is what an operator opens the page for.
    order = {"failed": 0, "disabled": 1, "empty": 2, "new": 3, "ok": 4}
    return page(
        "status",
        version=version,
        now=when(now),
        started=when(started),
        last_cycle=when(last_cycle),
        alive=alive,
        # The feeds whose trouble alerted (failing, gone, silent) before those only failing now.
        feeds=sorted(feeds, key=lambda f: (f.health == "ok", order.get(f.status, 5), f.name.casefold())),
        feed_url=lambda f: redact_url(f.fetch_url),
        hits=[(hit_view(s), when(s.created)) for s in hits],
        outbox=outbox,
        chart=chart(per_day, now.astimezone(UTC).date()),
        when=when,
    )


def when(value: datetime | None) -> str:
    return "never" if value is None else human_time(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
