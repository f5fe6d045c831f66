"""When to try again: the rules feeds and alerts share. Pure: ``now`` and jitter are arguments."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header value, or None when absent or unreadable.

    Both forms of RFC 9110: delay-seconds (``"120"``) and an HTTP-date, counted from ``now``
    (timezone-aware). A date in the past means 0.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def doubling_delay(first: timedelta, doublings: int, cap: timedelta, *, jitter: float, spread: float) -> timedelta:
    """``first`` doubled ``doublings`` times, at most ``cap``, then spread by ±``spread``.

    ``jitter`` in [0, 1) picks the point in the spread, so that things that failed together
    (an outage) do not all come back at the same second.
    """
    base = min(first * (1 << min(max(doublings, 0), 30)), cap)
    return base * (1 - spread + 2 * spread * jitter)
