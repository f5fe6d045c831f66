"""Turn a fetched feed body into :class:`~watcher.types.ParsedFeed`. Pure: no I/O, no clock.

feedparser reads the *bytes* and the response headers, never a URL (it would fetch it itself,
and a bytes argument that happens to be a file name would be opened from disk, so the body
goes in as a stream). HTML sanitising and relative-URI resolution are switched off: they are
the slowest part of feedparser and useless here, because :func:`html_to_text` keeps only
text and drops ``<script>``/``<style>`` bodies itself.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import html as html_lib
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.sax import SAXParseException

import feedparser
from selectolax.lexbor import LexborHTMLParser

from watcher.errors import ParseError
from watcher.types import Article, ParsedFeed

#: Elements whose content is code or markup, never article text.
_NON_TEXT_TAGS = ["script", "style", "noscript", "template"]
#: A gzip body sent without Content-Encoding is decompressed up to this size (a zip-bomb cap).
_MAX_GUNZIPPED_BYTES = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
#: bozo reasons that leave the document fully parsed (a lying charset or Content-Type).
_HARMLESS_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
#: Fewer words than this in a headline name no one story (see ``story_key``).
_STORY_MIN_WORDS = 5


def parse_feed(body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse an RSS/Atom/RDF body, or a JSON Feed (1.0 or 1.1), into articles with
    plain-text fields.

    A malformed feed that still yields entries is used, with ``problem`` set to a one-line
    reason. A well-formed feed with no entries gives an empty ``ParsedFeed``.

    Raises:
        ParseError: the body is empty, is not a feed (an HTML page, JSON that is no JSON
            Feed, random XML), or is so broken that no entry could be read from it.
    """
    if not body.strip():
        raise ParseError(url, "empty body")
    body = _gunzip_if_needed(body, url)
    if body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return _json_feed(body, url)
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    body, replaced = _repair_utf8(body, response_headers)
    parsed = _feedparser(body, response_headers, url)
    problem = _bozo_reason(parsed)
    if replaced and (problem is None or _harmless_bozo(parsed)):
        problem = f"invalid UTF-8: {replaced} bad byte sequence{'s' if replaced > 1 else ''} replaced"
    if not parsed.entries:
        _raise_if_unusable(parsed, body, url, harmless=_harmless_bozo(parsed), problem=problem)
    articles = tuple(_article(entry) for entry in parsed.entries)
    feed_title = _detail_text(parsed.feed.get("title_detail")) or None
    return ParsedFeed(title=feed_title, articles=articles, problem=problem)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags become word breaks, entities are decoded,
    ``<script>``/``<style>`` bodies are dropped, and whitespace (incl. NBSP) is folded, except
    that a block element (a paragraph, a list item, a ``<br>``) starts a new line: matching
    reads paragraphs."""
    if "<" not in html and "&" not in html:
        return fold_whitespace(html)
    tree = LexborHTMLParser(_BLOCK_TAG.sub(lambda m: _PARAGRAPH_MARK + m.group(), html))
    tree.strip_tags(_NON_TEXT_TAGS)
    root = tree.root
    text = root.text(separator=" ") if root is not None else ""
    lines = (" ".join(line.split()) for line in _no_nul(text).split(_PARAGRAPH_MARK))
    # The separator also lands between an inline tag and punctuation next to it
    # ("<b>Jen Zhu Scott</b>, CEO" -> "Scott , CEO"); evidence should read as written.
    return "\n".join(_SPACE_BEFORE_PUNCTUATION.sub("", line) for line in lines if line)


_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[,.;:!?)\]”’])|(?<=[(\[“]) ")
#: Tags that start or end a block of text (and ``<br>``), where a paragraph break goes.
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|br|li|ul|ol|h[1-6]|blockquote|pre|table|tr|section|article|header|footer|aside|figure"
    r"|figcaption|dd|dt|dl|hr|address|main|nav)\b[^>]*>",
    re.IGNORECASE,
)
#: A private-use character: no feed text contains it, and it survives HTML parsing as text.
_PARAGRAPH_MARK = "\ue000"


def fold_whitespace(text: str) -> str:
    """Collapse every run of whitespace into one space, except that a blank line (a paragraph
    break in plain text) stays a line break.

    A NUL counts as whitespace: it is no text, and PostgreSQL refuses to store it.
    """
    paragraphs = (" ".join(p.split()) for p in _BLANK_LINE.split(_no_nul(text)))
    return "\n".join(p for p in paragraphs if p)


_BLANK_LINE = re.compile(r"\n\s*\n")


def _no_nul(text: str) -> str:
    return text.replace("\x00", " ") if "\x00" in text else text


def _feedparser(body: bytes, headers: Mapping[str, str], url: str) -> Any:
    """feedparser on ``body``, once more with bad character references made U+FFFD if it fails on one.

    Its lenient parser turns every numeric character reference into a character, and raises
    on one that is none (a lone surrogate ``&#xD800;``, ``&#x110000;``): one such reference in
    one entry would fail the whole feed on every poll. The retry keeps the common case free
    of a pass over every reference.
    """

    def parse(data: bytes) -> Any:
        return feedparser.parse(
            io.BytesIO(data), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )

    try:
        return parse(body)
    except (UnicodeEncodeError, ValueError, OverflowError):
        fixed = _CHAR_REF.sub(_valid_char_ref, body)
        if fixed == body:
            raise
        return parse(fixed)


_CHAR_REF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")


def _valid_char_ref(ref: re.Match[bytes]) -> bytes:
    digits = ref.group(1)
    code = int(digits[1:], 16) if digits[:1] in (b"x", b"X") else int(digits)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return b"&#xFFFD;"
    return ref.group(0)


#: Charsets under which a body that is not valid UTF-8 may still be UTF-8 with a few bad bytes.
_UTF8_LABELS = {"utf-8", "utf8", "us-ascii", "ascii"}
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def _repair_utf8(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, int]:
    """``body`` with its few invalid UTF-8 sequences replaced by U+FFFD, and how many.

    feedparser decodes a document as a whole: one bad byte in a UTF-8 feed makes it fall back
    to Windows-1252 for every character, and each accent of the feed becomes mojibake. A
    body declared as UTF-8 (or not declared) whose valid non-ASCII characters outnumber its
    invalid sequences is taken as UTF-8 with a few bad bytes. Anything else (Latin-1 sent as
    UTF-8, a declared other charset, UTF-16) is left to feedparser's own fallbacks.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return body, 0
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body, 0
    declared = [_charset(headers.get("content-type", ""))]
    xml = _XML_ENCODING.match(body[:512])
    declared.append(xml.group(1).decode("ascii").lower() if xml else None)
    if any(label is not None and label not in _UTF8_LABELS for label in declared):
        return body, 0
    text = body.decode("utf-8", "replace")
    bad = text.count("\ufffd") - body.count("\ufffd".encode())
    if len(_NON_ASCII.findall(text)) <= bad:
        return body, 0
    return text.encode("utf-8"), bad


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() or None
    return None


def _gunzip_if_needed(body: bytes, url: str) -> bytes:
    # Some servers gzip the feed without saying so; feedparser would report a SAX error.
    if not body.startswith(_GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, _MAX_GUNZIPPED_BYTES)
    except zlib.error as e:
        raise ParseError(url, f"not a feed: corrupt gzip data ({e})") from e
    if inflater.unconsumed_tail:
        raise ParseError(url, f"not a feed: gzip body expands beyond {_MAX_GUNZIPPED_BYTES} bytes")
    return data


def _bozo_reason(parsed: Any) -> str | None:
    """One line saying why feedparser found the feed malformed, or None if it did not."""
    if not parsed.get("bozo"):
        return None
    exc = parsed.get("bozo_exception")
    if exc is None:
        return "malformed feed"
    if isinstance(exc, feedparser.NonXMLContentType):
        # Read as XML all the same: a missing Content-Type (every file feed) or a server's
        # text/html label says nothing about the feed.
        return None
    if isinstance(exc, SAXParseException):
        return f"XML error at line {exc.getLineNumber()}, column {exc.getColumnNumber()}: {exc.getMessage()}"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _harmless_bozo(parsed: Any) -> bool:
    """The feed was read whole and only its declared charset or media type was wrong."""
    exc = parsed.get("bozo_exception")
    return exc is None or isinstance(exc, _HARMLESS_BOZO)


def _raise_if_unusable(parsed: Any, body: bytes, url: str, *, harmless: bool, problem: str | None) -> None:
    """No entries: fine for a real (even empty) feed, a ParseError for anything else."""
    if parsed.get("version") and harmless:
        return
    head = body[:1024].lstrip().lower()
    if head.startswith(b"["):
        raise ParseError(url, "not a feed: looks like JSON, but a JSON Feed is an object")
    if b"<html" in head or head.startswith(b"<!doctype html"):
        raise ParseError(url, "not a feed: looks like an HTML page")
    if not parsed.get("version"):
        detail = f" ({problem})" if problem else ""
        raise ParseError(url, f"not a feed: no RSS, Atom or RDF root element{detail}")
    raise ParseError(url, f"malformed feed with no readable entries: {problem}")


def _article(entry: Any) -> Article:
    title = " ".join(_detail_text(entry.get("title_detail")).split())  # a headline is one line
    summary = _detail_text(entry.get("summary_detail"))
    content = " ".join(filter(None, (_detail_text(c) for c in entry.get("content") or ())))
    link = _no_nul(entry.get("link") or "").strip() or None
    entry_id = _no_nul(entry.get("id") or "").strip() or link
    return _new_article(
        entry_id,
        link,
        title,
        summary,
        content,
        # Plain dict lookups: FeedParserDict.get would remap and warn (feedparser issue 310).
        published=_utc(dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")),
        source=(entry.get("source") or {}).get("title"),
    )


def _new_article(
    entry_id: str | None,
    link: str | None,
    title: str,
    summary: str,
    content: str,
    *,
    published: datetime | None,
    source: str | None = None,
) -> Article:
    """An Article with its dedup key, content hash and story key, however the feed was read."""
    return Article(
        key=entry_id or _sha256(title, content),
        entry_id=entry_id,
        link=link,
        title=title,
        summary=summary,
        content=content,
        published=published,
        # Hashed with paragraph breaks folded, so entries stored before matching read paragraphs
        # do not all look edited.
        content_hash=_sha256(title, " ".join(summary.split()), " ".join(content.split())),
        story=story_key(title, source),
    )


def _json_feed(body: bytes, url: str) -> ParsedFeed:
    """A JSON Feed (https://jsonfeed.org/version/1.1, and 1 before it) as articles.

    The format is plain JSON with a short spec, and feedparser's releases do not read it,
    so it is mapped here, onto the same ``Article`` as feedparser's entries (as lemon24/reader
    does): ``content_html`` or ``content_text`` is the content, ``summary`` the summary,
    ``url`` (else ``external_url``) the link, ``date_published`` (else ``date_modified``) the
    date. An ``id`` given as a number is taken as text, as the spec asks.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ParseError(url, f"not a feed: looks like JSON but is not valid JSON ({e})") from None
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise ParseError(url, "not a feed: JSON, but not a JSON Feed (no jsonfeed.org version)")
    items = data.get("items")
    if not isinstance(items, list):
        raise ParseError(url, "malformed feed with no readable entries: a JSON Feed without an items list")
    articles = tuple(_json_item(item) for item in items if isinstance(item, dict))
    skipped = len(items) - len(articles)
    problem = f"malformed JSON Feed: {skipped} item{'s' if skipped > 1 else ''} not an object" if skipped else None
    return ParsedFeed(title=_json_text(data.get("title")) or None, articles=articles, problem=problem)


def _json_item(item: dict[str, Any]) -> Article:
    title = " ".join(_json_text(item.get("title")).split())
    summary = _json_text(item.get("summary"))
    html = _json_string(item.get("content_html"))
    if "<" not in html and "&lt;" in html:
        html = html_lib.unescape(html)  # escaped once too often, as some publishers do
    content = html_to_text(html) if html else fold_whitespace(_json_string(item.get("content_text")))
    link = _json_string(item.get("url")).strip() or _json_string(item.get("external_url")).strip() or None
    raw_id = item.get("id")
    entry_id = (_json_string(raw_id) if isinstance(raw_id, int | float | str) else "").strip() or link
    return _new_article(
        entry_id,
        link,
        title,
        summary,
        content,
        published=_rfc3339(item.get("date_published")) or _rfc3339(item.get("date_modified")),
    )


def _json_string(value: object) -> str:
    """A JSON value as text: a number is written out (ids), anything else not text is "".
    A lone surrogate (``"\\ud800"`` decodes to one) becomes U+FFFD: it cannot be stored."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return _LONE_SURROGATE.sub("\ufffd", _no_nul(str(value)))


def _json_text(value: object) -> str:
    # Plain text by the spec, yet publishers escape it as if for HTML ("Task &amp; Sub Tasks").
    return fold_whitespace(html_lib.unescape(_json_string(value)))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _rfc3339(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def story_key(title: str, source: str | None = None) -> str | None:
    """One story's identity in every feed that carries it, so that it alerts once.

    The headline, case and punctuation folded, without the " - Publisher" that aggregators
    such as Google News append (they name the publisher in the item's ``<source>``). None
    for a headline of fewer than five words: "Live updates" or "Opinion" name no one story.
    """
    headline = title.strip()
    if source and (source := source.strip()):
        for separator in (" - ", " – ", " — ", " | "):
            if headline.endswith(separator + source):
                headline = headline[: -len(separator + source)]
                break
    words = re.findall(r"\w+", unicodedata.normalize("NFKC", headline).casefold())
    if len(words) < _STORY_MIN_WORDS:
        return None
    return _sha256(" ".join(words))


def _detail_text(detail: Mapping[str, Any] | None) -> str:
    """Plain text of a feedparser ``*_detail`` value, parsing HTML only when it is HTML,
    so a plain-text "a < b" stays as written."""
    if not detail:
        return ""
    value = detail.get("value") or ""
    kind = (detail.get("type") or "text/html").lower()
    if "html" in kind or "xml" in kind:
        return html_to_text(value)
    return fold_whitespace(value)


def _utc(parsed_time: Any) -> datetime | None:
    # feedparser normalises every date it understands to a UTC struct_time.
    if parsed_time is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed_time), tz=UTC)
    except (OverflowError, ValueError, TypeError, OSError):
        return None


def _sha256(*parts: str) -> str:
    # A unit separator keeps ("ab", "c") and ("a", "bc") apart.
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
