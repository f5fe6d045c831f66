"""The status page's chart, laid out from (day, watch, hits) alone (issue 13)."""

from __future__ import annotations

from datetime import date

from watcher.dashboard import CHART_DAYS, CHART_ROWS, chart

TODAY = date(2031, 1, 30)


def test_one_row_per_watch_the_busiest_first_on_one_scale() -> None:
    laid = chart(
        [
            ("2031-01-30", "Jen Zhu Scott", 4),
            ("2031-01-29", "Jen Zhu Scott", 2),
            ("2031-01-30", "AI race", 1),
            ("2030-12-31", "AI race", 9),  # the 31st day back: outside the chart
        ],
        TODAY,
    )
    assert len(laid.days) == CHART_DAYS and laid.days[0] == "2031-01-01" and laid.days[-1] == "2031-01-30"
    assert [(r.watch, r.total) for r in laid.rows] == [("Jen Zhu Scott", 6), ("AI race", 1)]
    top, other = laid.rows
    assert laid.peak == 4
    today, yesterday = top.bars[-1], top.bars[-2]
    assert (today.day, today.count, yesterday.count) == ("2031-01-30", 4, 2)
    assert today.height == 2 * yesterday.height and today.y + today.height == yesterday.y + yesterday.height
    assert other.bars[-1].height >= 1, "a single hit still shows"
    assert all(b.height == 0 for b in top.bars[:-2])
    assert today.x > yesterday.x and top.y < other.y


def test_watches_beyond_the_rows_drawn_are_counted() -> None:
    per_day = [("2031-01-30", f"watch {n:03}", n + 1) for n in range(CHART_ROWS + 5)]
    laid = chart(per_day, TODAY)
    assert len(laid.rows) == CHART_ROWS and laid.left_out == 5
    assert laid.rows[0].watch == f"watch {CHART_ROWS + 4:03}"


def test_no_hits_no_rows() -> None:
    laid = chart([], TODAY)
    assert laid.rows == () and laid.peak == 0 and laid.left_out == 0
