"""Pure scheduling rules of the pipeline: routing, digest periods, failure backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import ChannelSettings
from watcher.pipeline import digest_due, failure_delay, route
from watcher.types import Hit

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)


def channel(
    name: str, *, digest: timedelta | None = None, watches: tuple[str, ...] | None = None, statements_only: bool = False
) -> ChannelSettings:
    return ChannelSettings(
        name=name,
        type="email",
        to=("a@example.org",),
        digest=digest,
        watches=watches,
        statements_only=statements_only,
        url=None,
        secret=None,
    )


STATEMENT = Hit(watch="Jen Zhu Scott", kind="speaker", statement=True, score=100)
MENTION = Hit(watch="Jen Zhu Scott", kind="speaker", statement=False, score=100)
THEME = Hit(watch="Tech decoupling", kind="theme", statement=False, score=95)


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
    assert [name for name, _ in route(hit, channels, NOW)] == expected


def test_immediate_alerts_are_due_now_and_digests_at_the_period_end() -> None:
    routed = dict(
        route(
            STATEMENT,
            [channel("now"), channel("hourly", digest=timedelta(hours=1)), channel("daily", digest=timedelta(days=1))],
            NOW,
        )
    )
    assert routed["now"] == NOW
    assert routed["hourly"] == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert routed["daily"] == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def test_a_digest_period_boundary_belongs_to_the_next_period() -> None:
    boundary = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert digest_due(boundary, timedelta(minutes=30)) == boundary + timedelta(minutes=30)


def test_failure_backoff_doubles_from_the_interval_up_to_a_day() -> None:
    interval = timedelta(minutes=15)
    delays = [failure_delay(interval, n, None) for n in range(12)]
    assert timedelta(minutes=13) < delays[0] < timedelta(minutes=17)
    assert timedelta(minutes=54) < delays[2] < timedelta(minutes=66)
    assert all(d <= timedelta(days=1, hours=3) for d in delays)
    assert delays[-1] > timedelta(hours=21)


def test_retry_after_is_never_undercut_but_is_capped() -> None:
    assert failure_delay(timedelta(minutes=5), 0, 3600) >= timedelta(hours=1)
    assert failure_delay(timedelta(minutes=5), 0, 10 * 86400) <= timedelta(days=1)
