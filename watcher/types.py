"""Values that cross pipeline stages. Frozen, plain, and free of library objects.

Speakers and themes, being configuration, are in ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

HitKind = Literal["speaker", "theme"]


#: Characters of an article's text kept as its lead (the summary, else the content).
LEAD_CHARS = 500


@dataclass(frozen=True)
class Article:
    """One feed entry, reduced to what watcher stores and matches."""

    #: Dedup key, unique within its feed: id/guid, else link, else hash of title+content.
    key: str
    #: The feed's own id/guid, else the link; None only when the entry has neither.
    entry_id: str | None
    link: str | None
    #: Plain text (HTML removed, entities decoded, whitespace folded).
    title: str
    summary: str
    content: str
    #: UTC, or None when the feed gives no usable date.
    published: datetime | None
    #: Changes whenever title, summary or content change; drives re-matching.
    content_hash: str
    #: The story's identity across feeds (see ``parse.story_key``); None when the headline is
    #: too short to tell stories apart.
    story: str | None = None

    @property
    def lead(self) -> str:
        """The start of the article's text, as much as an alert shows: its summary, else its content."""
        return (self.summary or self.content)[:LEAD_CHARS]


@dataclass(frozen=True)
class ParsedFeed:
    """What ``parse`` made of one fetched body."""

    title: str | None
    articles: tuple[Article, ...]
    #: Why the feed is malformed (feedparser's bozo exception) when it still yielded entries.
    problem: str | None = None


@dataclass(frozen=True)
class Processed:
    """One feed body, parsed and matched (in a worker process: see ``workers``)."""

    #: Every entry, with its text (stored for ``watcher replay``).
    articles: tuple[Article, ...]
    #: Hits per article key, for the articles that have any.
    hits: dict[str, list[Hit]]
    #: Why the feed is malformed when it still yielded entries (see ``ParsedFeed.problem``).
    problem: str | None
    #: The keys of the entries whose article page is wanted (``article.wants_page``).
    pages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ArticleMatch:
    """An entry matched once its article page is in (or is not to be had)."""

    #: The entry as matched: with the page's main text as its content when it was read.
    article: Article
    hits: list[Hit]
    #: Why the page's text is not what was matched (not HTML, no article text), or None.
    note: str | None = None


@dataclass(frozen=True)
class Waiting:
    """An entry waiting for its article page: matched once, when the page comes or at ``due``."""

    #: The entry's row id.
    entry: int
    feed: str
    #: The entry with the feed's own text (what is matched if the page does not come).
    article: Article
    #: Where its page is fetched from (its link, unwrapped: see ``article.page_address``).
    page_url: str
    #: True when its feed is public: the page may not be fetched from a non-public address.
    public_only: bool
    due: datetime


@dataclass(frozen=True)
class Evidence:
    """The matched words in their sentence, exactly as they appear in the article text."""

    #: Which field the sentence comes from: "title", "summary" or "content".
    field: str
    #: The sentence (or a window of it) containing the match.
    text: str
    #: (start, end) offsets into ``text`` of each matched phrase, for highlighting.
    spans: tuple[tuple[int, int], ...] = ()

    def as_json(self) -> dict[str, Any]:
        """As stored and as sent in webhooks: ``{"field", "text", "spans": [[start, end], ...]}``."""
        return {"field": self.field, "text": self.text, "spans": [list(span) for span in self.spans]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        return cls(field=data["field"], text=data["text"], spans=tuple((a, b) for a, b in data["spans"]))


@dataclass(frozen=True)
class Hit:
    """One tracked watch matched by one article."""

    watch: str
    kind: HitKind
    #: True when the article attributes speech to the speaker (always False for themes).
    statement: bool
    #: 0-100: 100 for an exact match, lower as the match needed more tolerance.
    score: int
    evidence: tuple[Evidence, ...] = field(default=())

    @property
    def evidence_text(self) -> str:
        """All evidence as one line, for JSON output and plain-text alerts."""
        return " … ".join(e.text for e in self.evidence)


@dataclass(frozen=True)
class Fetched:
    """The result of one successful HTTP (or file) fetch."""

    #: The URL that was requested.
    url: str
    status: int
    #: None when the server answered 304 Not Modified.
    body: bytes | None
    #: Response headers, lower-cased names.
    headers: dict[str, str]
    etag: str | None = None
    last_modified: str | None = None
    #: The new URL when the server answered a permanent redirect (301/308), else None.
    moved_to: str | None = None
    #: True when the URL is on a non-public address (an intranet feed), whose links may be
    #: too; False for a public one (or a file), whose article pages must be public.
    internal: bool = False

    @property
    def not_modified(self) -> bool:
        return self.body is None


FeedStatus = Literal["new", "ok", "empty", "failed", "disabled"]
#: A feed's health as its alerts tell it (see ``watcher.health``): working, failing for longer
#: than its ``failing_after``, gone (410), or silent for longer than its ``expect_every``.
Health = Literal["ok", "failing", "gone", "silent"]


@dataclass(frozen=True)
class FeedState:
    """What the database remembers about one configured feed."""

    name: str
    #: The configured URL.
    url: str
    #: Where to fetch: the configured URL, or where a permanent redirect moved it.
    fetch_url: str
    status: FeedStatus
    etag: str | None
    last_modified: str | None
    last_polled_at: datetime | None
    #: The last poll that fetched the feed (changed or not); None until one has.
    last_success_at: datetime | None
    next_poll_at: datetime | None
    #: One-line reason of the last failure (or of the last malformed-but-used body).
    last_error: str | None
    consecutive_failures: int
    entries_seen: int
    #: "host:pid" of the process that polled it last: which one, in a cluster.
    polled_by: str | None = None
    #: The health last alerted (``ok`` until a problem is).
    health: Health = "ok"
    #: The first failure of the current run of failures; None while the feed works.
    failing_since: datetime | None = None
    #: When the feed last brought a new entry (or was first fetched); None until then.
    quiet_since: datetime | None = None

    @property
    def first_poll(self) -> bool:
        """True until the feed has been fetched successfully once (failed attempts don't count)."""
        return self.last_success_at is None


@dataclass(frozen=True)
class StoredHit:
    """A hit as stored, with the entry and feed it came from."""

    id: int
    feed: str
    entry_id: str | None
    link: str | None
    title: str
    published: datetime | None
    hit: Hit
    created: datetime
    #: The article's summary, else the start of its text; "" when not stored.
    lead: str = ""
    #: Why the hit was made on the feed's text rather than the article page's, when a page
    #: was wanted and could not be had ("HTTP 404 Not Found", "disallowed by robots.txt").
    article_note: str | None = None
    #: True when the hit was made on the article page's full text.
    full_text: bool = False


@dataclass(frozen=True)
class HealthChange:
    """A feed whose health is not the one last alerted."""

    feed: str
    #: The health stored (last alerted); the store changes it only if it still is.
    previous: Health
    health: Health
    #: One line for the alert: the last error, or how long the feed has been silent.
    reason: str
    #: Since when the problem has lasted; None for ``gone`` and a recovery.
    since: datetime | None


@dataclass(frozen=True)
class HealthEvent:
    """A change of a feed's health, as stored: what a ``feed.*`` alert tells."""

    id: int
    feed: str
    #: The feed's URL, credentials and token-like query values masked.
    url: str
    #: What the feed is now.
    health: Health
    #: What it was (the health alerted before).
    previous: Health
    #: One line: the last error, or how long it has been silent.
    reason: str
    #: Since when the problem has lasted (the first failure, the last new entry); None for
    #: ``gone`` and ``recovered``.
    since: datetime | None
    created: datetime

    @property
    def event(self) -> str:
        """``feed.failing``, ``feed.gone``, ``feed.silent`` or ``feed.recovered``."""
        return "feed.recovered" if self.health == "ok" else f"feed.{self.health}"


OutboxStatus = Literal["due", "failed", "dead", "sent"]


@dataclass(frozen=True)
class OutboxItem:
    """One delivery to a channel, as claimed from or listed in the outbox: of a hit
    (``stored``) or of a feed's change of health (``health``)."""

    id: int
    channel: str
    #: Unique beyond this database and stable across retries: receivers drop duplicates by
    #: it (Message-ID, webhook-id).
    alert_id: str
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    #: The hit alerted; None for a health alert.
    stored: StoredHit | None
    #: When the receiving server accepted it; None until then.
    sent_at: datetime | None = None
    #: The health change alerted; None for a hit's alert.
    health: HealthEvent | None = None

    @property
    def created(self) -> datetime:
        """When what it alerts was recorded."""
        return self.stored.created if self.stored else self._event.created

    @property
    def watch(self) -> str:
        """What it is about, for listings: the hit's watch, or the event (``feed.failing``)."""
        return self.stored.hit.watch if self.stored else self._event.event

    @property
    def feed(self) -> str:
        return self.stored.feed if self.stored else self._event.feed

    @property
    def title(self) -> str:
        """A line for listings: the article's title, or the feed and the reason."""
        return self.stored.title if self.stored else f"{self._event.feed}: {self._event.reason}"

    @property
    def _event(self) -> HealthEvent:
        assert self.health is not None, "an outbox row alerts a hit or a health change"
        return self.health


@dataclass(frozen=True)
class NewHit:
    """A hit a poll has just stored: what routing and story dedup weigh (see ``route``)."""

    #: The hit's row id.
    id: int
    #: The name of the feed whose entry made it.
    feed: str
    hit: Hit
    #: The entry's story key (``Article.story``) and publication time.
    story: str | None
    published: datetime | None


@dataclass(frozen=True)
class Alert:
    """One outbox row to write: a new hit, through a channel, due at a time."""

    hit: NewHit
    channel: str
    due: datetime


@dataclass(frozen=True)
class StoryAlert:
    """An alert made earlier for a story, as story dedup weighs it."""

    story: str
    #: The feed whose entry made it.
    feed: str
    watch: str
    channel: str
    statement: bool
    #: The entry's publication time.
    published: datetime | None
    #: When its hit was recorded.
    created: datetime
    status: OutboxStatus
