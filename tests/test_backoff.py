"""Retry-After parsing and doubling delays, the waiting rules feeds and alerts share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.backoff import MAX_DELAY, doubling_delay, parse_retry_after

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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("99999999999999999999", MAX_DELAY.total_seconds()),  # a stranger's number: clamped
        ("Thu, 01 May 2024 12:02:00 GMT", 120.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_DELAY.total_seconds()),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past
        ("\u00b2", None),  # a digit to str.isdigit, not to float()
        ("-5", None),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after_is_bounded(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_doubling_delay_never_overflows_a_long_interval() -> None:
    assert doubling_delay(timedelta(days=7), 40, timedelta(days=1), jitter=0.5, spread=0.1) == timedelta(days=1)
