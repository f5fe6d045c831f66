"""Retry-After parsing and doubling delays, the waiting rules feeds and alerts share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.backoff import doubling_delay

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("doublings", "jitter", "expected"),
    [
        (0, 0.5, timedelta(minutes=4)),
        (3, 0.5, timedelta(minutes=32)),
        (50, 0.5, timedelta(hours=8)),  # capped, and no overflow on huge counts
        (-1, 0.5, timedelta(minutes=4)),
        (0, 0.0, timedelta(minutes=3.2)),  # the low end of a ±20% spread
    ],
)
def test_doubling_delay(doublings: int, jitter: float, expected: timedelta) -> None:
    got = doubling_delay(timedelta(minutes=4), doublings, timedelta(hours=8), jitter=jitter, spread=0.2)
    assert got == expected
