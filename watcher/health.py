"""Source health: whether a feed is failing, gone or silent, and which changes alert.

Pure: does not interact with any dependency, only processes data. A feed is

* ``gone`` when it answered 410 Gone (it is disabled until ``watcher feeds --retry``);
* ``failing`` when every poll has failed for longer than its ``failing_after`` (24 h by
  default): a feed failing for less keeps the health it had, so a server down for an hour
  alerts no one;
* ``silent`` when it has brought no new entry for longer than its ``expect_every`` (off
  by default);
* ``ok`` otherwise.

The health last alerted is stored with the feed. A change makes one ``HealthChange``: the
caller stores it with its alerts only if the feed still has the health it was read with
(``Store.record_health``), so a change alerts once however many processes see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from watcher.config import ChannelSettings, FeedSettings, format_duration
from watcher.render import human_time
from watcher.types import FeedState, Health, HealthChange


def assess(state: FeedState, feed: FeedSettings, now: datetime) -> Health:
    """The feed's health at ``now``."""
    if state.status == "disabled":
        return "gone"
    if state.failing_since is not None:  # no successful poll since the failures began
        if now - state.failing_since >= feed.failing_after:
            return "failing"
        # Not failing long enough to tell, or retried after a 410 and not fetched yet: no change.
        return state.health
    if feed.expect_every is not None and state.quiet_since is not None and now - state.quiet_since > feed.expect_every:
        return "silent"
    return "ok"


def changes(states: Sequence[FeedState], feeds: Sequence[FeedSettings], now: datetime) -> list[HealthChange]:
    """The configured feeds whose health differs from the one last alerted."""
    by_name = {s.name: s for s in states}
    out = []
    for feed in feeds:
        state = by_name.get(feed.name)
        if state is None:
            continue
        health = assess(state, feed, now)
        if health != state.health:
            out.append(HealthChange(feed.name, state.health, health, *_why(state, feed, health)))
    return out


def _why(state: FeedState, feed: FeedSettings, health: Health) -> tuple[str, datetime | None]:
    if health == "failing":
        return f"failing since {_when(state.failing_since)}: {state.last_error}", state.failing_since
    if health == "gone":
        return f"gone: {state.last_error}; fix its URL, then `watcher feeds --retry {feed.name}`", None
    if health == "silent":
        assert feed.expect_every is not None
        every = format_duration(feed.expect_every)
        return f"no new entry since {_when(state.quiet_since)} (expected every {every})", state.quiet_since
    return f"works again (was {state.health})", None


def health_channels(channels: Sequence[ChannelSettings]) -> list[str]:
    """The channels that take health alerts (``health: true``)."""
    return [c.name for c in channels if c.health]


def _when(value: datetime | None) -> str:
    return "?" if value is None else human_time(value)
