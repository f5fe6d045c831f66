"""Rendering alerts (pure): subjects, headers, both parts, escaping, links, digests, payloads."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from watcher.render import (
    alert_subject,
    digest_subject,
    group_by_watch,
    message_id,
    render_alert,
    render_digest,
    safe_link,
    sample_item,
    segments,
    webhook_payload,
)
from watcher.types import Evidence, Hit, OutboxItem, StoredHit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SENDER = "watcher <alerts@watcher.example>"
TO = ("analyst@example.org",)


def item(
    row: int = 1,
    *,
    watch: str = "Jen Zhu Scott",
    kind: str = "speaker",
    statement: bool = True,
    title: str = "Jen Zhu Scott on AI chips",
    link: str | None = "https://news.example/a?x=1&y=2",
    published: datetime | None = NOW - timedelta(hours=1),
    feed: str = "wire",
    channel: str = "desk",
    evidence: tuple[Evidence, ...] = (Evidence("summary", "Jen Zhu Scott said chips matter.", ((0, 13),)),),
    score: int = 97,
    lead: str = "",
) -> OutboxItem:
    hit = Hit(watch=watch, kind=kind, statement=statement, score=score, evidence=evidence)  # type: ignore[arg-type]
    stored = StoredHit(
        id=row,
        feed=feed,
        entry_id=f"e{row}",
        link=link,
        title=title,
        published=published,
        hit=hit,
        created=NOW - timedelta(minutes=5),
        lead=lead,
    )
    return OutboxItem(
        id=100 + row,
        channel=channel,
        alert_id=f"{row}.{channel}",
        status="due",
        attempts=1,
        next_attempt_at=NOW,
        last_error=None,
        stored=stored,
    )


def theme(row: int = 1, **kw: Any) -> OutboxItem:
    return item(
        row,
        watch="US-China AI collaboration",
        kind="theme",
        statement=False,
        title=kw.pop("title", "US and China agree on AI talks"),
        **kw,
    )


def reparse(msg: EmailMessage) -> EmailMessage:
    """The message as a receiving mail client sees it: serialized, then parsed."""
    parsed = email.message_from_bytes(msg.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


# -- subjects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert", "subject"),
    [
        (item(title="Chips matter, says CEO"), "[watcher] Jen Zhu Scott said: Chips matter, says CEO"),
        (item(title="Chips matter", statement=False), "[watcher] Jen Zhu Scott mentioned: Chips matter"),
        (theme(), "[watcher] US-China AI collaboration: US and China agree on AI talks"),
        (item(title=""), "[watcher] Jen Zhu Scott said: (no title)"),
        # The title names the speaker already: the name is not read twice (issue 12, point 14).
        (item(), "[watcher] Jen Zhu Scott on AI chips (statement)"),
        (item(statement=False, title="JEN ZHU SCOTT: a profile"), "[watcher] JEN ZHU SCOTT: a profile (mention)"),
    ],
)
def test_subject_says_who_said_or_mentioned_what(alert: OutboxItem, subject: str) -> None:
    assert alert.stored is not None
    assert alert_subject(alert.stored) == subject


def test_a_long_subject_is_cut_with_an_ellipsis() -> None:
    stored = item(title="word " * 100).stored
    assert stored is not None
    subject = alert_subject(stored)
    assert len(subject) <= 120 and subject.endswith("…")


# -- one alert -------------------------------------------------------------------------


def test_alert_email_has_the_headers_inbox_rules_need() -> None:
    msg = reparse(render_alert(item(), sender=SENDER, to=TO, now=NOW))
    assert msg["Subject"] == "[watcher] Jen Zhu Scott on AI chips (statement)"
    assert msg["From"] == SENDER and msg["To"] == "analyst@example.org"
    assert msg["Date"] == "Wed, 25 Nov 2026 12:00:00 +0000"
    assert msg["Message-ID"] == "<watcher.1%2Edesk@watcher.example>"
    assert msg["List-ID"] == "watcher desk <desk.watcher.watcher.example>"
    assert msg["X-Watcher-Watch"] == "Jen Zhu Scott"
    assert msg["X-Watcher-Feed"] == "wire"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in msg.iter_parts())


def test_message_id_is_stable_across_retries_and_distinct_per_channel() -> None:
    first = render_alert(item(), sender=SENDER, to=TO, now=NOW)
    retry = render_alert(item(), sender=SENDER, to=TO, now=NOW + timedelta(hours=3))
    other = render_alert(item(channel="team inbox"), sender=SENDER, to=TO, now=NOW)
    assert first["Message-ID"] == retry["Message-ID"] == message_id("1.desk", SENDER)
    assert other["Message-ID"] == "<watcher.1%2Eteam%20inbox@watcher.example>"


def test_text_part_golden() -> None:
    text, _ = parts(render_alert(item(), sender=SENDER, to=TO, now=NOW))
    assert text == (
        "[watcher] Jen Zhu Scott on AI chips (statement)\n"
        "\n"
        "Jen Zhu Scott said this (statement)\n"
        "Title:     Jen Zhu Scott on AI chips\n"
        "Feed:      wire\n"
        "Published: 2026-11-25 11:00 UTC\n"
        "Link:      https://news.example/a?x=1&y=2\n"
        "Score:     97/100\n"
        "\n"
        "  [summary] *Jen Zhu Scott* said chips matter.\n"
        "\n"
        "-- \n"
        "Sent by watcher.\n"
    )


def test_html_part_highlights_evidence_and_links_the_article() -> None:
    _, html = parts(render_alert(item(), sender=SENDER, to=TO, now=NOW))
    assert "<mark>Jen Zhu Scott</mark> said chips matter." in html
    assert '<a href="https://news.example/a?x=1&amp;y=2">Jen Zhu Scott on AI chips</a>' in html
    assert "Feed: wire" in html and "Published: 2026-11-25 11:00 UTC" in html


def test_a_mention_and_a_theme_say_so() -> None:
    mention, _ = parts(render_alert(item(statement=False), sender=SENDER, to=TO, now=NOW))
    topic, _ = parts(render_alert(theme(), sender=SENDER, to=TO, now=NOW))
    assert "Jen Zhu Scott mentioned this (mention)" in mention
    assert "Theme: US-China AI collaboration" in topic


def test_unicode_survives_headers_and_body() -> None:
    alert = item(title="Jen Zhu Scott 谈中美人工智能合作 — «ça va»", feed="新闻")
    msg = reparse(render_alert(alert, sender=SENDER, to=TO, now=NOW))
    assert msg["Subject"] == "[watcher] Jen Zhu Scott 谈中美人工智能合作 — «ça va» (statement)"
    assert msg["X-Watcher-Feed"] == "新闻"
    text, html = parts(msg)
    assert "谈中美人工智能合作" in text and "谈中美人工智能合作" in html


# -- strangers' text -------------------------------------------------------------------


def test_line_breaks_in_strangers_text_never_reach_a_header() -> None:
    hostile = item(
        title="Hi\r\nBcc: victim@example.org\r\n\r\n<b>body</b>", feed="wire\nX-Evil: 1", watch="Jen\rZhu Scott"
    )
    raw = render_alert(hostile, sender=SENDER, to=TO, now=NOW).as_bytes(policy=email.policy.SMTP)
    msg = reparse(render_alert(hostile, sender=SENDER, to=TO, now=NOW))
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "[watcher] Jen Zhu Scott said: Hi Bcc: victim@example.org <b>body</b>"
    assert msg["X-Watcher-Feed"] == "wire X-Evil: 1"
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in headers and b"\r\nX-Evil:" not in headers


def test_html_and_script_from_feeds_are_escaped() -> None:
    alert = item(
        title='<script>alert("t")</script>',
        evidence=(Evidence("summary", 'Jen Zhu Scott <img src=x onerror="alert(1)"> & co', ((0, 13),)),),
    )
    text, html = parts(render_alert(alert, sender=SENDER, to=TO, now=NOW))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; co" in html
    # The text part is plain text: it shows the characters as they are.
    assert '<img src=x onerror="alert(1)"> & co' in text


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.cookie)",
        " JaVaScRiPt:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "/relative/path",
        "https://ok.example/\nX-Header: 1",
        "http:///no-host",
    ],
)
def test_only_http_links_become_anchors(link: str) -> None:
    alert = item(link=link)
    text, html = parts(render_alert(alert, sender=SENDER, to=TO, now=NOW))
    assert "href" not in html
    assert "not shown" in html and "not shown" in text
    assert link.strip() not in text
    assert webhook_payload(alert)["entry"]["link"] is None


@pytest.mark.parametrize("link", ["https://news.example/x", "HTTP://news.example/x?a=b#c"])
def test_http_links_are_kept(link: str) -> None:
    assert safe_link(link) == link


def test_no_link_shows_no_link_line() -> None:
    text, html = parts(render_alert(item(link=None), sender=SENDER, to=TO, now=NOW))
    assert "Link:" not in text and "Link:" not in html and "href" not in html


# -- highlighting ----------------------------------------------------------------------


def test_highlight_segments_merge_overlaps_and_clip_bad_spans() -> None:
    evidence = Evidence("content", "US and China agree", ((7, 12), (0, 2), (9, 12), (15, 99), (5, 3)))
    assert [(s.text, s.marked) for s in segments(evidence)] == [
        ("US", True),
        (" and ", False),
        ("China", True),
        (" ag", False),
        ("ree", True),
    ]


def test_line_breaks_inside_evidence_keep_the_highlight_in_place() -> None:
    evidence = Evidence("content", "said:\nJen Zhu Scott", ((6, 19),))
    assert [(s.text, s.marked) for s in segments(evidence)] == [("said: ", False), ("Jen Zhu Scott", True)]


# -- digests ---------------------------------------------------------------------------


def digest_items() -> list[OutboxItem]:
    return [
        item(1, title="old statement", published=NOW - timedelta(hours=5)),
        theme(2, title="theme story", published=NOW - timedelta(hours=3)),
        item(3, title="newest statement", published=NOW - timedelta(hours=1)),
        item(4, title="undated mention", statement=False, published=None),  # created NOW-5m: newest
    ]


def test_digest_groups_by_watch_statements_first_then_newest() -> None:
    groups = group_by_watch(digest_items())
    assert [(watch, [i.title for i in group]) for watch, group in groups] == [
        ("Jen Zhu Scott", ["newest statement", "old statement", "undated mention"]),
        ("US-China AI collaboration", ["theme story"]),
    ]


def test_digest_lists_a_theme_most_relevant_first() -> None:
    items = [
        theme(1, title="passing line", score=55, published=NOW - timedelta(hours=1)),
        theme(2, title="headline story", score=100, published=NOW - timedelta(hours=9)),
        theme(3, title="lead story", score=85, published=NOW - timedelta(hours=5)),
        item(4, watch="Semiconductor export controls", kind="theme", statement=False, title="chips", score=75),
    ]
    groups = group_by_watch(items)
    assert [(watch, [i.title for i in group]) for watch, group in groups] == [
        ("US-China AI collaboration", ["headline story", "lead story", "passing line"]),
        ("Semiconductor export controls", ["chips"]),
    ]


def test_digest_email_has_count_in_subject_and_every_alert_in_both_parts() -> None:
    msg = reparse(render_digest(digest_items(), sender=SENDER, to=TO, now=NOW))
    # CPython folds this subject right after "Subject:" (legal) and its parser then keeps
    # the fold's space; mail clients drop it, so the comparison does too.
    assert msg["Subject"].lstrip() == "[watcher] 4 new alerts: Jen Zhu Scott (3), US-China AI collaboration (1)"
    assert msg["X-Watcher-Watch"] == "Jen Zhu Scott, US-China AI collaboration"
    assert msg["X-Watcher-Feed"] == "wire"
    text, html = parts(msg)
    order = ["newest statement", "old statement", "undated mention", "theme story"]
    assert [text.index(t) for t in order] == sorted(text.index(t) for t in order)
    assert [html.index(t) for t in order] == sorted(html.index(t) for t in order)
    assert "== Jen Zhu Scott (3) ==" in text and "== US-China AI collaboration (1) ==" in text
    assert html.count("<mark>") == 4


def test_digest_of_one_is_singular_and_its_id_is_stable_whatever_the_order() -> None:
    one = render_digest([item()], sender=SENDER, to=TO, now=NOW)
    assert one["Subject"] == "[watcher] 1 new alert: Jen Zhu Scott (1)"
    items = digest_items()
    forward = render_digest(items, sender=SENDER, to=TO, now=NOW)["Message-ID"]
    backward = render_digest(items[::-1], sender=SENDER, to=TO, now=NOW + timedelta(hours=1))["Message-ID"]
    assert forward == backward != one["Message-ID"]


def test_an_empty_digest_is_refused() -> None:
    with pytest.raises(ValueError):
        render_digest([], sender=SENDER, to=TO, now=NOW)


# -- webhook payload -------------------------------------------------------------------


def test_webhook_payload_schema_v1() -> None:
    assert webhook_payload(item()) == {
        "type": "watcher.hit.v1",
        "id": "1.desk",
        "channel": "desk",
        "watch": "Jen Zhu Scott",
        "kind": "speaker",
        "statement": True,
        "score": 97,
        "evidence": [{"field": "summary", "text": "Jen Zhu Scott said chips matter.", "spans": [[0, 13]]}],
        "entry": {
            "title": "Jen Zhu Scott on AI chips",
            "link": "https://news.example/a?x=1&y=2",
            "published": "2026-11-25T11:00:00Z",
            "feed": "wire",
        },
        "detected_at": "2026-11-25T11:55:00Z",
    }


def test_webhook_payload_keeps_strangers_text_verbatim_and_null_dates() -> None:
    payload = webhook_payload(theme(title="<b>A</b>\r\nB", published=None))
    assert payload["entry"]["title"] == "<b>A</b>\r\nB"  # JSON carries it safely; receivers escape
    assert payload["entry"]["published"] is None
    assert (payload["kind"], payload["statement"]) == ("theme", False)


def test_send_test_sample_is_marked_as_a_test() -> None:
    sample = sample_item("desk", NOW)
    payload = webhook_payload(sample, test=True)
    assert payload["type"] == "watcher.test.v1" and payload["id"].startswith("test.")
    msg = render_alert(sample, sender=SENDER, to=TO, now=NOW, test=True)
    assert msg["X-Watcher-Test"] == "yes"
    assert msg["Subject"] == "[watcher] test alert: send-test: channel check"


def test_digest_subject_is_cut() -> None:
    many = [item(i, watch=f"watch number {i}") for i in range(30)]
    assert len(digest_subject(many)) <= 120


LEAD = (
    "Beijing and Washington should build AI together, the Power Dynamics CEO told a forum in "
    "Singapore on Tuesday. She proposed shared safety standards. " + "More words follow here. " * 20
)


def test_an_alert_on_the_title_alone_carries_the_lead() -> None:
    """Issue 12, point 14: a hit on the headline alone told nothing of the story."""
    on_title = item(evidence=(Evidence("title", "Jen Zhu Scott on AI chips", ((0, 13),)),), lead=LEAD)
    text, html = parts(render_alert(on_title, sender=SENDER, to=TO, now=NOW))
    assert "Lead:      Beijing and Washington should build AI together" in text
    [lead] = [line for line in text.splitlines() if line.startswith("Lead:")]
    assert "She proposed shared safety standards." in lead
    assert len(lead) <= len("Lead:      ") + 300 and lead.endswith("here.")  # cut after a sentence
    assert "Beijing and Washington should build AI together" in html
    on_summary = item(lead=LEAD)  # the evidence is from the summary: it says enough
    assert "Lead:" not in parts(render_alert(on_summary, sender=SENDER, to=TO, now=NOW))[0]
