"""When to try again: the rules feeds and alerts share. Pure: ``now`` and jitter are arguments."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta

#: The longest wait any rule here returns. A server's Retry-After is a stranger's number
#: ("99999999999999999999" does not fit a timedelta), so every delay is clamped to this
#: before it becomes one; the callers' own caps (a day for feeds and alerts) are shorter.
MAX_DELAY = timedelta(days=365)

_DELAY_SECONDS = re.compile(r"[0-9]+")


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header value, or None when absent or unreadable.

    Both forms of RFC 9110: delay-seconds (``"120"``) and an HTTP-date, counted from ``now``
    (timezone-aware). A date in the past means 0; anything beyond MAX_DELAY means MAX_DELAY.
    """
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(0.0, seconds), MAX_DELAY.total_seconds())


def doubling_delay(first: timedelta, doublings: int, cap: timedelta, *, jitter: float, spread: float) -> timedelta:
    """``first`` doubled ``doublings`` times, at most ``cap``, then spread by ±``spread``.

    ``jitter`` in [0, 1) picks the point in the spread, so that things that failed together
    (an outage) do not all come back at the same second. Computed in float seconds, so no
    count of doublings and no interval overflows a timedelta.
    """
    seconds = min(first.total_seconds() * 2.0 ** min(max(doublings, 0), 64), cap.total_seconds())
    return timedelta(seconds=seconds * (1 - spread + 2 * spread * jitter))
