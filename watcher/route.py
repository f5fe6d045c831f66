"""Which alerts the hits of a poll make: the channels that take each hit, when each alert is
due, and which of them a copy of the story already told.

Pure: does not interact with any dependency, only processes data. The pipeline reads what
the database knows (``Store``), asks here, and writes what is returned, in one transaction.

Story dedup: one story carried by several feeds (a Google News and a Bing News search for
the same name, the publisher's own feed), or carried again by one feed under a new id,
alerts each watch once on each channel. Entries with the same story key
(``parse.story_key``: the headline folded) are copies when they were published within
``STORY_PUBLISHED_SLACK`` of each other, whichever feeds they come from (a daily column's
same headline, published a day later, is another story). A copy is held back while the earlier alert counts: for ``STORY_WINDOW`` after its hit,
or for as long as it waits to go out (a digest's); an alert that went dead reached no one and
never counts, and a statement is news over a mere mention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from watcher.config import ChannelSettings, Config
from watcher.types import Alert, NewHit, StoryAlert

#: How long a story that alerted stays told: the same headline in another feed within it
#: does not alert again (aggregators and wires carry a story within hours, not days).
STORY_WINDOW = timedelta(days=2)
#: Copies of one story carry (nearly) the same publication time; the same headline published
#: further apart is another story (a daily column's "Stocks making the biggest moves").
STORY_PUBLISHED_SLACK = timedelta(hours=12)


def route(new: Sequence[NewHit], channels: Sequence[ChannelSettings], now: datetime) -> list[Alert]:
    """Every alert ``new`` hits make, before story dedup.

    A channel takes a hit when its ``watches`` name the hit's watch (or are unset) and, with
    ``statements_only``, when the hit is a statement. Immediate channels are due now; a
    digest channel's alerts are due together at the end of the current digest period.
    """
    alerts = []
    for stored in new:
        for channel in channels:
            if _takes(channel, stored.hit.watch, statement=stored.hit.statement):
                due = now if channel.digest is None else digest_due(now, channel.digest)
                alerts.append(Alert(stored, channel.name, due))
    return alerts


def _takes(channel: ChannelSettings, watch: str, *, statement: bool) -> bool:
    if channel.watches is not None and watch not in channel.watches:
        return False
    return statement or not channel.statements_only


def unheard(config: Config) -> str | None:
    """Why some hits would be stored and alert no one (no channel takes the hits of some
    speakers or themes, not even a speaker's statements), or None. ``watcher validate`` and
    ``watcher run`` warn with it."""
    watches = [(s.name, True) for s in config.speakers] + [(t.name, False) for t in config.themes]
    names = [
        name for name, can_state in watches if not any(_takes(c, name, statement=can_state) for c in config.channels)
    ]
    if not names:
        return None
    if not config.channels:
        return "no channels: hits are stored (see `watcher hits`) but alert no one; add a channel to be alerted"
    listed = ", ".join(f'"{n}"' for n in names)
    return (
        f"no channel takes the hits of {listed}: they are stored (see `watcher hits`) but alert no one; "
        "name them in a channel's watches, or leave its watches out to take every hit"
    )


def digest_due(now: datetime, period: timedelta) -> datetime:
    """The end of the digest period containing ``now``.

    Periods are aligned to the Unix epoch in UTC, so "daily" digests go out at midnight UTC
    and "hourly" ones on the hour, whatever time the daemon started.
    """
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    seconds = period.total_seconds()
    periods = math.floor((now - epoch).total_seconds() / seconds) + 1
    return epoch + timedelta(seconds=periods * seconds)


def stories(alerts: Sequence[Alert]) -> set[str]:
    """The stories whose earlier alerts story dedup needs to see (none: nothing to read)."""
    return {a.hit.story for a in alerts if a.hit.story is not None}


def told_since(now: datetime) -> datetime:
    """The oldest alert that still tells its story (unsent ones count at any age)."""
    return now - STORY_WINDOW


def untold(alerts: Sequence[Alert], earlier: Sequence[StoryAlert], now: datetime) -> list[Alert]:
    """The ``alerts`` that no ``earlier`` alert of their story, nor one before them in
    ``alerts``, has told on their channel."""
    told: dict[tuple[str, str, str], list[StoryAlert]] = {}
    for e in earlier:
        told.setdefault((e.story, e.watch, e.channel), []).append(e)
    kept = []
    for a in alerts:
        new, story = a.hit, a.hit.story
        if story is not None:
            key = (story, new.hit.watch, a.channel)
            if any(_tells(e, a, now) for e in told.get(key, ())):
                continue
            told.setdefault(key, []).append(
                StoryAlert(story, new.feed, new.hit.watch, a.channel, new.hit.statement, new.published, now, "due")
            )
        kept.append(a)
    return kept


def _tells(earlier: StoryAlert, alert: Alert, now: datetime) -> bool:
    """Whether ``earlier`` (same story, watch and channel) already tells what ``alert`` would."""
    new = alert.hit
    if earlier.status == "dead":
        return False  # it reached no one
    if earlier.status == "sent" and earlier.created < told_since(now):
        return False
    if new.hit.statement and not earlier.statement:
        return False  # a statement is news over a mention
    if new.published is None or earlier.published is None:
        return True
    return abs(new.published - earlier.published) <= STORY_PUBLISHED_SLACK


#: How far back a channel that comes back (or that another watcher lacked) gets the hits
#: it missed: a channel put back after a week does not flood its receiver with old news.
MISSED_WINDOW = timedelta(days=7)


def missed_since(now: datetime) -> datetime:
    """The oldest hit a channel that missed it is still routed."""
    return now - MISSED_WINDOW
