"""Which alerts new hits make: routing, digest periods and story dedup, decided without a database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import ChannelSettings
from watcher.route import STORY_PUBLISHED_SLACK, STORY_WINDOW, digest_due, route, stories, told_since, untold
from watcher.types import Alert, Hit, NewHit, OutboxStatus, StoryAlert

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)


def channel(
    name: str, *, digest: timedelta | None = None, watches: tuple[str, ...] | None = None, statements_only: bool = False
) -> ChannelSettings:
    return ChannelSettings(
        name=name, type="email", to=("a@example.org",), digest=digest, watches=watches, statements_only=statements_only
    )


STATEMENT = Hit(watch="Jen Zhu Scott", kind="speaker", statement=True, score=100)
MENTION = Hit(watch="Jen Zhu Scott", kind="speaker", statement=False, score=100)
THEME = Hit(watch="Tech decoupling", kind="theme", statement=False, score=95)


def new(hit: Hit = STATEMENT, *, feed: str = "search", story: str | None = "s1", published: datetime = NOW) -> NewHit:
    return NewHit(id=1, feed=feed, hit=hit, story=story, published=published)


@pytest.mark.parametrize(
    ("hit", "channels", "expected"),
    [
        (THEME, [channel("all")], ["all"]),
        (THEME, [channel("people", watches=("Jen Zhu Scott",))], []),
        (MENTION, [channel("people", watches=("Jen Zhu Scott",))], ["people"]),
        (MENTION, [channel("quotes", statements_only=True)], []),
        (STATEMENT, [channel("quotes", statements_only=True)], ["quotes"]),
        (THEME, [channel("quotes", statements_only=True), channel("all")], ["all"]),
    ],
)
def test_route_follows_watches_and_statements_only(
    hit: Hit, channels: list[ChannelSettings], expected: list[str]
) -> None:
    assert [a.channel for a in route([new(hit)], channels, NOW)] == expected


def test_immediate_alerts_are_due_now_and_digests_at_the_period_end() -> None:
    channels = [
        channel("now"),
        channel("hourly", digest=timedelta(hours=1)),
        channel("daily", digest=timedelta(days=1)),
    ]
    due = {a.channel: a.due for a in route([new()], channels, NOW)}
    assert due["now"] == NOW
    assert due["hourly"] == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert due["daily"] == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def test_a_digest_period_boundary_belongs_to_the_next_period() -> None:
    boundary = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert digest_due(boundary, timedelta(minutes=30)) == boundary + timedelta(minutes=30)


# -- story dedup -------------------------------------------------------------------------


def earlier(
    *,
    feed: str = "wire",
    watch: str = "Jen Zhu Scott",
    channel: str = "desk",
    statement: bool = True,
    published: datetime = NOW,
    created: datetime = NOW - timedelta(hours=1),
    status: OutboxStatus = "sent",
) -> StoryAlert:
    return StoryAlert("s1", feed, watch, channel, statement, published, created, status)


def alert(hit: NewHit | None = None, channel: str = "desk") -> Alert:
    return Alert(hit or new(), channel, NOW)


def kept(candidate: Alert, *told: StoryAlert) -> bool:
    return untold([candidate], told, NOW) == [candidate]


def test_a_story_told_from_another_feed_is_not_alerted_again() -> None:
    assert not kept(alert(), earlier())


def test_a_told_story_still_alerts_other_watches_and_channels() -> None:
    assert kept(alert(channel="quotes"), earlier())
    assert kept(alert(new(THEME)), earlier())


def test_a_story_the_same_feed_told_under_another_id_is_not_alerted_again() -> None:
    # A feed that makes up new guids on every request: its stories came back, not news.
    assert not kept(alert(new(feed="wire")), earlier(feed="wire"))
    # A daily column keeps its headline ("Stocks making the biggest moves midday"): a day on,
    # it is another story.
    assert kept(alert(new(feed="wire", published=NOW + timedelta(days=1))), earlier(feed="wire"))


def test_copies_of_a_story_among_the_new_alerts_alert_once() -> None:
    first, copy, elsewhere = alert(new(feed="wire")), alert(new(feed="search")), alert(new(), channel="quotes")
    assert untold([first, copy, elsewhere], [], NOW) == [first, elsewhere]


def test_the_same_headline_published_a_day_apart_is_another_story() -> None:
    assert kept(alert(new(published=NOW + timedelta(days=1))), earlier())
    assert not kept(alert(new(published=NOW + STORY_PUBLISHED_SLACK)), earlier())
    undated = dataclasses.replace(new(), published=None)
    assert not kept(alert(undated), earlier()), "undated copies are copies"


def test_a_sent_alert_tells_its_story_for_the_window_and_a_waiting_one_until_it_goes_out() -> None:
    old = NOW - STORY_WINDOW - timedelta(minutes=1)
    assert not kept(alert(), earlier(created=NOW - STORY_WINDOW + timedelta(minutes=1)))
    assert kept(alert(), earlier(created=old)), "the same headline days later is news again"
    assert not kept(alert(), earlier(created=old, status="due")), "a digest still waiting to go out"
    assert not kept(alert(), earlier(created=old, status="failed"))
    assert told_since(NOW) == NOW - STORY_WINDOW


def test_an_alert_that_went_dead_tells_no_one() -> None:
    assert kept(alert(), earlier(status="dead"))


def test_a_statement_is_news_over_a_mention_of_the_same_story() -> None:
    assert kept(alert(new(STATEMENT)), earlier(statement=False))
    assert not kept(alert(new(MENTION)), earlier(statement=True))
    assert not kept(alert(new(MENTION)), earlier(statement=False))


def test_hits_without_a_story_are_never_held_back_and_need_nothing_read() -> None:
    lone = alert(new(story=None))
    assert kept(lone, earlier())
    assert stories([lone]) == set()
    assert stories([lone, alert()]) == {"s1"}
