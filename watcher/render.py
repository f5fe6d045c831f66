"""Turn outbox items into what a channel sends: emails and webhook payloads.

Pure: no network, no database, no clock (``now`` is a parameter). The Jinja2 templates in
``watcher/templates/`` are read once, on first use.

Titles, evidence, links and feed texts come from strangers, so four rules hold everywhere:

* no CR, LF or other control character reaches an email header (they are folded to spaces);
* HTML is produced only by templates with autoescape on, never by string concatenation;
* only ``http``/``https`` links become anchors or payload links (see :func:`safe_link`);
  ``javascript:``, ``data:`` and the like are never clickable;
* no title or evidence sentence is longer than TEXT_MAX characters, no link than LINK_MAX.

The webhook payload schema is documented in :func:`webhook_payload` and ``docs/webhook.md``.
Webhook channels have no digests (the config offers none), so there is no digest payload.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from watcher.types import Evidence, HealthEvent, Hit, OutboxItem, StoredHit

if TYPE_CHECKING:
    import jinja2

#: Longest subject we build; mail clients show about this much and folding stays readable.
SUBJECT_MAX = 120
#: Longest value of the X-Watcher-* headers (digests list several watches).
HEADER_MAX = 200
#: Longest title or evidence sentence an alert carries: a stranger's 1 MB headline is cut.
TEXT_MAX = 1000
#: Longest link an alert offers; a longer one is refused, not cut (a cut URL leads elsewhere).
LINK_MAX = 2048
#: Webhook payload types, versioned: a breaking change gets a new ``.vN``.
HIT_TYPE = "watcher.hit.v1"
TEST_TYPE = "watcher.test.v1"
#: A feed's change of health: ``watcher.feed.failing.v1``, ``.gone``, ``.silent``, ``.recovered``.
FEED_TYPE = "watcher.{event}.v1"

# C0/C1 controls and the Unicode line/paragraph separators: anything a mail header parser
# or a terminal might treat as a line break.
_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Segment:
    """A run of evidence text, highlighted when it is part of a matched phrase."""

    text: str
    marked: bool


@dataclass(frozen=True)
class HitView:
    """What the templates show for one hit; every string is still raw (templates escape)."""

    watch: str
    verb: str
    kind: str
    statement: bool
    score: int
    title: str
    evidence: tuple[tuple[str, tuple[Segment, ...]], ...]
    feed: str
    published: str
    #: The article's lead, when the evidence has nothing but the headline; else "".
    lead: str
    link: str | None
    link_refused: bool


# -- small text rules ------------------------------------------------------------------


def one_line(value: str) -> str:
    """``value`` with control characters and line breaks folded into single spaces."""
    return _SPACES.sub(" ", _CONTROL_CHAR.sub(" ", value)).strip()


def header_text(value: str, limit: int = HEADER_MAX) -> str:
    """``value`` made safe for one header: :func:`one_line`, cut to ``limit`` characters."""
    return _cut(one_line(value), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def safe_link(url: str | None) -> str | None:
    """The link if it is an absolute http(s) URL without control characters, else None.

    Everything else (``javascript:``, ``data:``, ``file:``, relative or malformed links) is
    refused, so no template and no payload ever offers it as something to follow.
    """
    if not url:
        return None
    url = url.strip()
    if len(url) > LINK_MAX or _CONTROL_CHAR.search(url) or " " in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def capped(evidence: Evidence) -> Evidence:
    """``evidence`` with its text cut to TEXT_MAX characters, and its spans to the text kept."""
    if len(evidence.text) <= TEXT_MAX:
        return evidence
    text = _cut(evidence.text, TEXT_MAX)
    kept = len(text) - 1  # the "…" is not the article's
    spans = tuple((a, min(b, kept)) for a, b in evidence.spans if a < kept)
    return Evidence(evidence.field, text, spans)


def segments(evidence: Evidence) -> tuple[Segment, ...]:
    """Split evidence text into plain and highlighted runs.

    Spans are clipped to the text and overlapping spans merged, so a bad span from a
    stored hit can never raise or duplicate text.
    """
    # One for one, so the spans' offsets still point at the same characters.
    text = _CONTROL_CHAR.sub(" ", evidence.text)
    merged: list[list[int]] = []
    for start, end in sorted((max(0, a), min(len(text), b)) for a, b in evidence.spans):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[Segment] = []
    pos = 0
    for start, end in merged:
        if start > pos:
            out.append(Segment(text[pos:start], False))
        out.append(Segment(text[start:end], True))
        pos = end
    if pos < len(text):
        out.append(Segment(text[pos:], False))
    return tuple(out)


def _published(stored: StoredHit) -> str:
    if stored.published is None:
        return "unknown"
    return human_time(stored.published)


def human_time(value: datetime) -> str:
    """A time for people, to the minute in UTC (``2026-11-25 11:00 UTC``), as every alert,
    table and page watcher shows has it."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC (``2026-11-25T11:00:00Z``), as every JSON watcher writes has it."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _verb(stored: StoredHit) -> str:
    if stored.hit.kind == "theme":
        return ""
    return "said" if stored.hit.statement else "mentioned"


#: Characters of an article's lead an alert shows.
LEAD_MAX = 300


def _lead(stored: StoredHit) -> str:
    """What the article says beyond its headline, when the evidence is the headline alone:
    an alert on a title should still tell what the story is."""
    if any(e.field != "title" for e in stored.hit.evidence):
        return ""
    lead = one_line(stored.lead)
    if len(lead) <= LEAD_MAX:
        return lead
    cut = lead[:LEAD_MAX]
    sentence = cut.rfind(". ")
    return cut[: sentence + 1] if sentence > LEAD_MAX // 2 else _cut(lead, LEAD_MAX)


def _named_in_title(stored: StoredHit) -> bool:
    """The headline names the speaker: the match found them there, or the name is in it."""
    if stored.hit.kind != "speaker":
        return False
    found = any(e.field == "title" and e.spans for e in stored.hit.evidence)
    return found or stored.hit.watch.casefold() in stored.title.casefold()


def hit_view(stored: StoredHit) -> HitView:
    """What an alert (or the status page) shows of a stored hit, safe to put in a template."""
    return HitView(
        watch=stored.hit.watch,
        verb=_verb(stored),
        kind=stored.hit.kind,
        statement=stored.hit.statement,
        score=stored.hit.score,
        title=_cut(one_line(stored.title), TEXT_MAX) or "(no title)",
        evidence=tuple((e.field, segments(capped(e))) for e in stored.hit.evidence),
        feed=one_line(stored.feed),
        published=_published(stored),
        lead=_lead(stored),
        link=safe_link(stored.link),
        link_refused=bool(stored.link) and safe_link(stored.link) is None,
    )


def _most_relevant_first(items: Sequence[OutboxItem]) -> list[OutboxItem]:
    # Statements before mentions, then the higher score (a theme's relevance), then the newest:
    # when the article was published, or when it was detected if the feed gave no date. The
    # row id breaks ties so the order is stable.
    def key(item: OutboxItem) -> tuple[bool, int, datetime, int]:
        stored = _stored(item)
        return (stored.hit.statement, stored.hit.score, stored.published or stored.created, item.id)

    return sorted(items, key=key, reverse=True)


def group_by_watch(items: Sequence[OutboxItem]) -> list[tuple[str, list[OutboxItem]]]:
    """Digest order: one group per watch, the most relevant item first in each (statements,
    then by score, then newest), the group with the most relevant item first."""
    groups: dict[str, list[OutboxItem]] = {}
    for item in _most_relevant_first(items):
        groups.setdefault(_stored(item).hit.watch, []).append(item)
    return list(groups.items())


def _stored(item: OutboxItem) -> StoredHit:
    assert item.stored is not None, "a digest carries hits only (health alerts go alone)"
    return item.stored


# -- subjects and ids ------------------------------------------------------------------


def alert_subject(stored: StoredHit, *, test: bool = False) -> str:
    """``[watcher] <speaker> said: <title>``, ``... mentioned: ...`` or ``[watcher] <theme>: <title>``;
    ``[watcher] <title> (statement)`` or ``(mention)`` when the title names the speaker
    already, so that the name is not read twice."""
    verb = _verb(stored)
    prefix = "[watcher] test alert: " if test else "[watcher] "
    title = stored.title or "(no title)"
    if _named_in_title(stored):
        kind = "statement" if stored.hit.statement else "mention"
        return header_text(
            f"{prefix}{_cut(one_line(title), SUBJECT_MAX - len(prefix) - len(kind) - 3)} ({kind})", SUBJECT_MAX
        )
    head = f"{prefix}{stored.hit.watch} {verb}: " if verb else f"{prefix}{stored.hit.watch}: "
    return header_text(head + title, SUBJECT_MAX)


def digest_subject(items: Sequence[OutboxItem]) -> str:
    """``[watcher] 3 new alerts: Jen Zhu Scott (2), US-China AI collaboration (1)``."""
    count = len(items)
    noun = "alert" if count == 1 else "alerts"
    watches = ", ".join(f"{watch} ({len(group)})" for watch, group in group_by_watch(items))
    return header_text(f"[watcher] {count} new {noun}: {watches}", SUBJECT_MAX)


def _domain(sender: str) -> str:
    _, address = parseaddr(sender)
    domain = address.rpartition("@")[2]
    return domain if re.fullmatch(r"[A-Za-z0-9.-]+", domain or "") else "watcher.invalid"


def _atom(value: str) -> str:
    # Percent-encoding keeps channel names of any spelling valid inside a Message-ID / List-ID.
    return quote(value, safe="").replace(".", "%2E").replace("~", "%7E")


def message_id(alert_id: str, sender: str) -> str:
    """The Message-ID of an alert: the same on every retry, so receivers can drop duplicates."""
    return f"<watcher.{_atom(alert_id)}@{_domain(sender)}>"


def digest_message_id(items: Sequence[OutboxItem], sender: str) -> str:
    """The Message-ID of a digest, derived from its alert ids: a retried digest keeps it."""
    ids = "\n".join(sorted(item.alert_id for item in items))
    return f"<watcher.digest.{hashlib.sha256(ids.encode()).hexdigest()[:24]}@{_domain(sender)}>"


def list_id(channel: str, sender: str) -> str:
    """RFC 2919 List-ID naming the channel, so inbox rules can file all its alerts."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", channel).strip("-").lower() or "channel"
    return f"watcher {header_text(channel, 60)} <{label}.watcher.{_domain(sender)}>"


# -- email -----------------------------------------------------------------------------


@functools.cache
def _templates() -> jinja2.Environment:
    # Imported on first use: a poll with nothing to send never renders, and every
    # short-lived command would otherwise pay for Jinja2's import.
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("watcher", "templates"),
        # Autoescape on for HTML (and any template string); the .txt templates are plain.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def page(name: str, **context: Any) -> str:
    """The HTML page ``templates/<name>.html`` (the daemon's status page), autoescaped."""
    return _templates().get_template(f"{name}.html").render(**context)


def _body(name: str, **context: Any) -> tuple[str, str]:
    env = _templates()
    return env.get_template(f"{name}.txt").render(**context), env.get_template(f"{name}.html").render(**context)


def _message(
    headers: dict[str, str], *, sender: str, to: Sequence[str], now: datetime, channel: str, parts: tuple[str, str]
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["List-ID"] = list_id(channel, sender)
    # RFC 3834: tells auto-responders not to answer alerts.
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in headers.items():
        msg[name] = value
    text, html = parts
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def health_subject(event: HealthEvent) -> str:
    """``[watcher] feed failing: reuters`` (``gone``, ``silent``, ``recovered``)."""
    word = event.event.removeprefix("feed.")
    return header_text(f"[watcher] feed {word}: {event.feed}", SUBJECT_MAX)


def render_alert(
    item: OutboxItem, *, sender: str, to: Sequence[str], now: datetime, test: bool = False
) -> EmailMessage:
    """One alert as a multipart/alternative (text + HTML) email.

    Headers: Subject (see :func:`alert_subject`), From, To, Date (``now``), a Message-ID
    derived from ``item.alert_id``, List-ID, Auto-Submitted, X-Watcher-Watch,
    X-Watcher-Feed and X-Watcher-Alert-Id; with ``test`` also X-Watcher-Test. A health
    alert has the subject of :func:`health_subject` and X-Watcher-Event instead of
    X-Watcher-Watch.
    """
    if item.health is not None:
        return _render_health(item, item.health, sender=sender, to=to, now=now)
    stored = item.stored
    assert stored is not None
    subject = alert_subject(stored, test=test)
    parts = _body("alert", hit=hit_view(stored), subject=subject, test=test)
    headers = {
        "Subject": subject,
        "Message-ID": message_id(item.alert_id, sender),
        "X-Watcher-Watch": header_text(stored.hit.watch),
        "X-Watcher-Feed": header_text(stored.feed),
        "X-Watcher-Alert-Id": header_text(item.alert_id),
    }
    if test:
        headers["X-Watcher-Test"] = "yes"
    return _message(headers, sender=sender, to=to, now=now, channel=item.channel, parts=parts)


def _render_health(
    item: OutboxItem, event: HealthEvent, *, sender: str, to: Sequence[str], now: datetime
) -> EmailMessage:
    subject = health_subject(event)
    since = None if event.since is None else human_time(event.since)
    parts = _body("health", event=event, subject=subject, since=since, reason=_cut(one_line(event.reason), TEXT_MAX))
    headers = {
        "Subject": subject,
        "Message-ID": message_id(item.alert_id, sender),
        "X-Watcher-Event": event.event,
        "X-Watcher-Feed": header_text(event.feed),
        "X-Watcher-Alert-Id": header_text(item.alert_id),
    }
    return _message(headers, sender=sender, to=to, now=now, channel=item.channel, parts=parts)


def render_digest(items: Sequence[OutboxItem], *, sender: str, to: Sequence[str], now: datetime) -> EmailMessage:
    """Several alerts of one channel as one email, grouped by watch, most relevant first.

    X-Watcher-Watch and X-Watcher-Feed list every watch and feed in the digest, comma
    separated, in digest order.
    """
    if not items:
        raise ValueError("a digest needs at least one alert")
    groups = group_by_watch(items)
    subject = digest_subject(items)
    views = [(watch, [hit_view(_stored(i)) for i in group]) for watch, group in groups]
    parts = _body("digest", groups=views, count=len(items), subject=subject)
    feeds = dict.fromkeys(i.feed for _, group in groups for i in group)
    headers = {
        "Subject": subject,
        "Message-ID": digest_message_id(items, sender),
        "X-Watcher-Watch": header_text(", ".join(watch for watch, _ in groups)),
        "X-Watcher-Feed": header_text(", ".join(feeds)),
    }
    return _message(headers, sender=sender, to=to, now=now, channel=items[0].channel, parts=parts)


# -- webhook ---------------------------------------------------------------------------


def _hit_fields(item: OutboxItem) -> dict[str, Any]:
    stored = item.stored
    assert stored is not None
    return {
        "id": item.alert_id,
        "channel": item.channel,
        "watch": stored.hit.watch,
        "kind": stored.hit.kind,
        "statement": stored.hit.statement,
        "score": stored.hit.score,
        "evidence": [capped(e).as_json() for e in stored.hit.evidence],
        "entry": {
            "title": _cut(stored.title, TEXT_MAX),
            "link": safe_link(stored.link),
            "published": iso_time(stored.published),
            "feed": stored.feed,
        },
        "detected_at": iso_time(stored.created),
    }


def webhook_payload(item: OutboxItem, *, test: bool = False) -> dict[str, Any]:
    """The JSON body of one alert. Schema ``watcher.hit.v1``::

        {
          "type": "watcher.hit.v1",
          "id": "5f0c2a9e-8d1b-...",        # alert id (a UUID); equals the webhook-id header
          "channel": "ops-hook",            # channel name from the config
          "watch": "Jen Zhu Scott",         # speaker or theme name from the config
          "kind": "speaker" | "theme",
          "statement": true,                # the article attributes speech to the speaker
          "score": 100,                     # 0-100, 100 = exact match
          "evidence": [{"field": "title"|"summary"|"content",
                        "text": "...",        # the sentence, as in the article
                        "spans": [[start, end], ...]}],  # matched phrases, offsets into text
          "entry": {"title": "...",
                    "link": "https://..." | null,  # only http(s) links; null otherwise
                    "published": "2024-05-01T12:00:00Z" | null,
                    "feed": "reuters"},     # feed name from the config
          "detected_at": "2024-05-01T12:03:00Z"
        }

    Fields are only ever added within a version; receivers should ignore unknown fields.
    ``watcher send-test`` sends the same shape with type ``watcher.test.v1`` and an id
    starting with ``test.``. A feed's change of health is :func:`feed_payload`.
    """
    if item.health is not None:
        return feed_payload(item, item.health)
    payload = {"type": HIT_TYPE, **_hit_fields(item)}
    if test:
        # A distinct id, so a receiver that drops duplicates still shows every test.
        payload.update(type=TEST_TYPE, id=f"test.{item.alert_id}")
    return payload


def feed_payload(item: OutboxItem, event: HealthEvent) -> dict[str, Any]:
    """The JSON body of a health alert. Schema ``watcher.feed.failing.v1`` (and ``gone``,
    ``silent``, ``recovered``, the same fields)::

        {
          "type": "watcher.feed.failing.v1",
          "id": "5f0c2a9e-8d1b-...",        # alert id (a UUID); equals the webhook-id header
          "channel": "ops-hook",
          "feed": {"name": "reuters", "url": "https://..."},  # credentials and tokens masked
          "health": "failing" | "gone" | "silent" | "ok",
          "previous": "ok" | "failing" | "gone" | "silent",
          "reason": "...",                  # one line: the last error, or the silence
          "since": "2024-05-01T12:00:00Z" | null,   # when the problem began
          "detected_at": "2024-05-02T12:00:00Z"
        }
    """
    return {
        "type": FEED_TYPE.format(event=event.event),
        "id": item.alert_id,
        "channel": item.channel,
        "feed": {"name": event.feed, "url": event.url},
        "health": event.health,
        "previous": event.previous,
        "reason": _cut(one_line(event.reason), TEXT_MAX),
        "since": iso_time(event.since),
        "detected_at": iso_time(event.created),
    }


#: Characters of a receiver's error page kept in the error: the gist, not the page.
EXCERPT_MAX = 160
_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.I | re.S)


def error_excerpt(body: bytes, content_type: str | None = None) -> str:
    """A receiver's error answer as one short line of text: an HTML (or XML) error page
    loses its tags, scripts and styles and has its entities decoded; whitespace is folded,
    and the text cut to ``EXCERPT_MAX`` characters."""
    text = body.decode("utf-8", "replace")
    markup = "html" in (content_type or "").lower() or "xml" in (content_type or "").lower()
    if markup or (content_type is None and text.lstrip().startswith("<")):
        text = html.unescape(_MARKUP.sub(" ", text))
    return _cut(one_line(text), EXCERPT_MAX)


def sample_item(channel: str, now: datetime) -> OutboxItem:
    """A made-up alert for ``watcher send-test``; its id changes every second (see above)."""
    text = "This is a test alert from watcher: if you can read it, the channel works."
    start = text.index("test alert")
    hit = Hit(
        watch="send-test",
        kind="theme",
        statement=False,
        score=100,
        evidence=(Evidence("summary", text, spans=((start, start + len("test alert")),)),),
    )
    stored = StoredHit(
        id=int(now.timestamp()),
        feed="watcher",
        entry_id=None,
        link=None,
        title="channel check",
        published=now,
        hit=hit,
        created=now,
    )
    return OutboxItem(
        id=0,
        channel=channel,
        alert_id=f"{stored.id}.{channel}",
        status="due",
        attempts=1,
        next_attempt_at=now,
        last_error=None,
        stored=stored,
    )
