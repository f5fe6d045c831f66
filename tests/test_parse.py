"""parse_feed and html_to_text: what a user sees of a feed once watcher has read it."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watcher.errors import ParseError
from watcher.parse import html_to_text, parse_feed, story_key
from watcher.types import Article

DATA = Path(__file__).parent / "data" / "parse"


def parse_file(name: str) -> dict[str, Article]:
    parsed = parse_feed((DATA / name).read_bytes(), url=f"file:{name}")
    return {a.key: a for a in parsed.articles}


def one_entry_feed(item: str, *, channel: str = "<title>T</title>") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel>{channel}<item>{item}</item></channel></rss>"
    ).encode()


def only_article(body: bytes) -> Article:
    (article,) = parse_feed(body, url="http://feed.example/rss").articles
    return article


# -- HTML to text ---------------------------------------------------------------------------

HTML_TO_TEXT = [
    (
        "tags are word breaks (R3)",
        '<a href="/p">Jen Zhu</a>-Scott said',
        "Jen Zhu -Scott said",
    ),
    ("adjacent tags", "<b>Jen</b><i>Zhu</i>", "Jen Zhu"),
    (
        "entities decoded",
        "Tom &amp; Jerry &lt;3 &eacute;t&eacute;",
        "Tom & Jerry <3 été",
    ),
    ("numeric NBSP folded", "Jen&#160;Zhu&nbsp;Scott", "Jen Zhu Scott"),
    ("source line breaks folded, paragraphs kept", "<p>one\n\n  two</p>\r\n<p>three</p>", "one two\nthree"),
    ("a <br> or a list item starts a line", "one<br>two<ul><li>three</li><li>four</li></ul>", "one\ntwo\nthree\nfour"),
    (
        "script body dropped",
        "before<script>var secret = 'x';</script>after",
        "before after",
    ),
    ("style body dropped", "<style>p { color: red }</style><p>text</p>", "text"),
    (
        "attributes are not text",
        '<img alt="Jen Zhu Scott" src="x.png">caption',
        "caption",
    ),
    ("plain text passes through", "a plain sentence", "a plain sentence"),
    ("empty", "", ""),
]


@pytest.mark.parametrize(("case", "html", "text"), HTML_TO_TEXT, ids=[c for c, _, _ in HTML_TO_TEXT])
def test_html_to_text(case: str, html: str, text: str) -> None:
    assert html_to_text(html) == text


# -- fields, ids and dates from real feed files -----------------------------------------------


def test_rss2_cdata_description_and_content_encoded() -> None:
    article = parse_file("01_meridian_rss2_cdata_content.xml")["meridian-3300"]
    assert article.entry_id == "meridian-3300"
    assert article.link == "https://meridian.example/wire/3300"
    assert article.title == "Power Dynamics CEO makes case for AI built by ‘US plus China’"
    assert article.summary == "Jen Zhu Scott said rivalry between the two AI superpowers was wasting talent and money."
    assert article.content.startswith("Speaking at an international technology conference, Jen Zhu Scott said")
    assert "<p>" not in article.content
    assert article.published == datetime(2025, 4, 18, 17, 45, tzinfo=UTC)


def test_atom_html_content_with_a_link_inside_a_name() -> None:
    articles = parse_file("02_harbourpolicy_atom.xml")
    article = articles["tag:harbourpolicy.example,2025:672"]
    assert article.summary == "A conversation about data centres, chips and trust."
    assert article.content.startswith("In an interview, Jen Zhu -Scott said that cross-border")
    assert "href" not in article.content
    assert article.published == datetime(2025, 4, 14, 1, 52, tzinfo=UTC)
    assert len(articles) == 27


def test_rdf_id_date_and_non_breaking_spaces() -> None:
    article = parse_file("03_pacificsignal_rdf.xml")["https://pacificsignal.example/story/41460"]
    assert article.entry_id == "https://pacificsignal.example/story/41460"
    assert article.summary.startswith("Jen Zhu Scott warned that an arms race")
    assert article.published == datetime(2025, 4, 11, 17, 50, tzinfo=UTC)


def test_feed_title() -> None:
    parsed = parse_feed((DATA / "02_harbourpolicy_atom.xml").read_bytes(), url="file:x")
    assert parsed.title == "Harbour Policy Review"
    assert parsed.problem is None


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "feedparser__entry_content_script.xml",
            "safe description",
        ),  # escaped <script> in Atom content
        (
            "feedvalidator__content_encoded_contains_script.xml",
            "",
        ),  # content:encoded that is only a script
    ],
)
def test_script_bodies_never_become_text(name: str, content: str) -> None:
    (article,) = parse_file(name).values()
    assert article.content == content


def test_plain_text_fields_are_not_read_as_html() -> None:
    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><entry><id>e1</id><title type="text">'
        b"If a &lt; b then &lt;b&gt; is not bold</title>"
        b'<summary type="text">Tom &amp;amp; Jerry</summary></entry></feed>'
    )
    article = only_article(body)
    assert article.title == "If a < b then <b> is not bold"
    assert article.summary == "Tom &amp; Jerry"


def test_all_content_values_are_joined() -> None:
    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><entry><id>e1</id><title>t</title>'
        b'<content type="html">&lt;p&gt;first part&lt;/p&gt;</content>'
        b'<content type="text">second part</content></entry></feed>'
    )
    assert only_article(body).content == "first part second part"


# -- keys and hashes ------------------------------------------------------------------------------


def test_key_falls_back_from_guid_to_link_to_a_content_hash() -> None:
    with_guid = only_article(one_entry_feed("<guid>g-1</guid><link>http://x.example/1</link><title>A</title>"))
    assert (with_guid.key, with_guid.entry_id) == ("g-1", "g-1")
    with_link = only_article(one_entry_feed("<link>http://x.example/2</link><title>A</title>"))
    assert (with_link.key, with_link.entry_id) == (
        "http://x.example/2",
        "http://x.example/2",
    )
    bare = only_article(one_entry_feed("<title>A</title><description>body</description>"))
    assert bare.entry_id is None
    assert bare.key == hashlib.sha256(b"A\x1f").hexdigest()
    # The same bare entry polled again keeps its key, so it is not re-alerted.
    assert only_article(one_entry_feed("<title>A</title><description>body</description>")).key == bare.key


def test_content_hash_follows_title_summary_and_content() -> None:
    def article(summary: str) -> Article:
        return only_article(one_entry_feed(f"<guid>g</guid><title>A</title><description>{summary}</description>"))

    assert article("one").content_hash == article("one").content_hash
    assert article("one").content_hash != article("two").content_hash


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Fri, 18 Apr 2025 19:45:00 +0200", datetime(2025, 4, 18, 17, 45, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
    ],
)
def test_published_is_utc_or_none(date: str, expected: datetime | None) -> None:
    article = only_article(one_entry_feed(f"<guid>g</guid><title>A</title><pubDate>{date}</pubDate>"))
    assert article.published == expected


# -- malformed, foreign and empty bodies --------------------------------------------------------


def test_malformed_feed_with_entries_is_used_and_says_why() -> None:
    # windows-1252 bytes declared as nothing: feedparser falls back and flags the feed bozo.
    parsed = parse_feed(
        (DATA / "rss-parser__uolNoticias.rss").read_bytes(),
        url="http://uol.example/rss",
    )
    assert len(parsed.articles) == 15
    assert parsed.problem is not None and "windows-1252" in parsed.problem
    assert "\n" not in parsed.problem
    assert parsed.articles[0].title.startswith("Ibope: Bolsonaro")
    assert "Líder" in parsed.articles[0].summary


def test_charset_from_response_headers() -> None:
    body = (
        one_entry_feed("<guid>g</guid><title>Zoé</title>")
        .replace(b'encoding="utf-8"', b"")
        .replace("Zoé".encode(), "Zoé".encode("latin-1"))
    )
    article = only_article_with_headers(body, {"Content-Type": "application/rss+xml; charset=ISO-8859-1"})
    assert article.title == "Zoé"


def only_article_with_headers(body: bytes, headers: dict[str, str]) -> Article:
    (article,) = parse_feed(body, url="http://feed.example/rss", headers=headers).articles
    return article


def test_gzip_body_sent_without_content_encoding() -> None:
    raw = (DATA / "03_pacificsignal_rdf.xml").read_bytes()
    assert len(parse_feed(gzip.compress(raw), url="http://x.example/rdf").articles) == 26


def test_valid_feed_without_entries_is_empty_not_an_error() -> None:
    parsed = parse_feed(one_entry_feed("").replace(b"<item></item>", b""), url="http://x.example/rss")
    assert parsed.articles == ()
    assert parsed.problem is None
    assert parsed.title == "T"


def test_empty_feed_with_a_wrong_charset_declaration_is_empty_not_an_error() -> None:
    body = b'<?xml version="1.0" encoding="us-ascii"?><rss version="2.0"><channel><title>Caf\xc3\xa9</title></channel></rss>'
    parsed = parse_feed(body, url="http://x.example/rss")
    assert parsed.articles == ()
    assert parsed.title == "Café"
    assert parsed.problem is not None and "us-ascii" in parsed.problem


NOT_A_FEED = [
    ("empty body", b"", "empty body"),
    ("whitespace", b" \n\t ", "empty body"),
    (
        "HTML page",
        b"<!DOCTYPE html><html><head><title>Home</title></head><body>hi</body></html>",
        "HTML page",
    ),
    (
        "JSON, but no JSON Feed",
        b'{"rss": {"version": "2.0", "channel": {"title": "Scripting News"}}}',
        "not a JSON Feed",
    ),
    ("a JSON list", b'[{"title": "x"}]', "JSON"),
    ("broken JSON", b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "not valid JSON"),
    (
        "other XML",
        b"<?xml version='1.0'?><catalog><book/></catalog>",
        "no RSS, Atom or RDF",
    ),
    ("plain text", b"hello world", "not a feed"),
    (
        "truncated feed (server crashed mid-body)",
        (DATA / "feed-rs__rss_2.0_invalid_1.xml").read_bytes(),
        "line 19",
    ),
    ("a URL is not fetched", b"http://127.0.0.1:9/feed.xml", "not a feed"),
    (
        "a path is not opened",
        str(DATA / "02_harbourpolicy_atom.xml").encode(),
        "not a feed",
    ),
]


@pytest.mark.parametrize(("case", "body", "reason"), NOT_A_FEED, ids=[c for c, _, _ in NOT_A_FEED])
def test_unusable_bodies_raise_a_one_line_reason(case: str, body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(body, url="http://feed.example/x")
    assert info.value.url == "http://feed.example/x"
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<b>Jen Zhu Scott</b>, CEO of Power Dynamics, said", "Jen Zhu Scott, CEO of Power Dynamics, said"),
        ("said “<i>US plus China</i>”.", "said “US plus China”."),
        ("(<a href='x'>Reuters</a>)", "(Reuters)"),
        ("<a>Jen Zhu</a>-Scott", "Jen Zhu -Scott"),  # a tag still separates words (R3)
    ],
)
def test_inline_tags_leave_punctuation_where_it_was_written(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # Google News names the publisher after the headline, and in <source>.
        (
            ("US and China must share AI safety rules - SCMP", "SCMP"),
            ("US and China must share AI safety rules", None),
            True,
        ),
        (
            ("US and China must share AI safety rules | Reuters", "Reuters"),
            ("US and China Must Share AI-Safety Rules!", None),
            True,
        ),
        # A dash inside a headline is part of it unless what follows is the named source.
        (("Chips - the new oil of AI geopolitics", "SCMP"), ("Chips", None), False),
        (("Chips - the new oil of AI geopolitics", None), ("the new oil of AI geopolitics", None), False),
        (
            ("US and China must share AI safety rules", None),
            ("US and China must share AI safety standards", None),
            False,
        ),
    ],
)
def test_one_story_has_one_key_in_every_feed(a: tuple[str, str | None], b: tuple[str, str | None], same: bool) -> None:
    assert (story_key(*a) == story_key(*b)) is same
    assert story_key(*a) is not None


@pytest.mark.parametrize("headline", ["Live updates", "Opinion", "Jen Zhu Scott speaks", "", "— SCMP —"])
def test_a_headline_too_short_to_tell_stories_apart_has_no_key(headline: str) -> None:
    assert story_key(headline) is None


def test_parsed_articles_carry_their_story_without_the_publisher_suffix() -> None:
    body = b"""<rss version="2.0"><channel><title>t</title>
      <item><title>US and China must share AI safety rules - SCMP</title><guid>g1</guid>
        <source url="https://www.scmp.com">SCMP</source></item>
      <item><title>US and China must share AI safety rules</title><guid>g2</guid></item>
    </channel></rss>"""
    first, second = parse_feed(body, url="https://news.example/rss").articles
    assert first.story is not None and first.story == second.story


# -- characters no database stores, bytes that are not UTF-8 -------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("said &#xD800; it", "said \ufffd it"),  # a lone surrogate, by hex reference
        ("said &#56320; it", "said \ufffd it"),  # and by decimal reference
        ("said &#xD83D;&#xDE00; it", "said \ufffd\ufffd it"),  # a pair split in two references
        ("said &#x110000; it", "said \ufffd it"),  # beyond Unicode
        ("said &#0; it", "said it"),  # NUL: PostgreSQL refuses it in text
        ("said \x00 it", "said it"),
    ],
)
def test_characters_no_text_may_hold_are_replaced_or_dropped(title: str, expected: str) -> None:
    feed = one_entry_feed(f"<guid>g&#xD800;\x00</guid><title>{title}</title><link>http://a.example/x\x00</link>")
    article = only_article(feed)
    assert (article.title, article.link, article.key) == (expected, "http://a.example/x", "g\ufffd")


def test_a_few_bad_bytes_keep_the_good_utf8_around_them() -> None:
    body = one_entry_feed("<title>Café crème ünd \xff</title>").replace("ÿ".encode(), b"\xff")
    parsed = parse_feed(body, url="http://feed.example/rss")
    assert parsed.articles[0].title == "Café crème ünd \ufffd"
    assert parsed.problem == "invalid UTF-8: 1 bad byte sequence replaced"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # Latin-1 labelled UTF-8: nothing in it is valid UTF-8, feedparser's fallback reads it.
        ("<title>Café crème</title>".encode("latin-1"), {}),
        # A declared other charset is obeyed, whatever the bytes look like.
        (
            "<title>Café \xff</title>".encode().replace("ÿ".encode(), b"\xff"),
            {"content-type": "text/xml; charset=iso-8859-1"},
        ),
    ],
)
def test_bodies_that_are_not_mostly_utf8_are_left_to_feedparser(body: bytes, headers: dict[str, str]) -> None:
    feed = one_entry_feed("X").replace(b"X", body)
    parsed = parse_feed(feed, url="http://feed.example/rss", headers=headers)
    assert "invalid UTF-8" not in (parsed.problem or "")
    assert "\ufffd" not in parsed.articles[0].title


# -- JSON Feed (issue 12, point 18) --------------------------------------------------------


def test_json_feed_1_0_from_feedparsers_own_tests() -> None:
    parsed = parse_feed((DATA / "feedparser__example.json").read_bytes(), url="https://wire.example/feed.json")
    assert parsed.title == "My Example Feed" and parsed.problem is None
    second, first = parsed.articles
    assert (second.entry_id, second.link, second.title) == ("2", "https://example.org/second-item", "post 2")
    assert second.content == "This is a second item."
    assert first.content == "Hello, world!"  # content_html as text; the <script> body dropped


JSON_FEED_1_1 = r"""{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "Wire &amp; Wire",
  "language": "en",
  "authors": [{"name": "Desk"}],
  "items": [
    {"id": 42, "url": "https://wire.example/42", "title": "Jen Zhu Scott says \"US plus China\"",
     "summary": "A call for collaboration.", "content_html": "<p>Jen Zhu Scott said:</p><p>Work together.</p>",
     "date_published": "2026-11-24T09:30:00+01:00", "authors": [{"name": "Reporter"}]},
    {"id": "b", "external_url": "https://elsewhere.example/b", "content_text": "Plain words.\n\nTwo paragraphs.",
     "date_modified": "2026-11-25T10:00:00Z"},
    {"id": "c", "content_html": "&lt;p&gt;Escaped &amp;amp; twice&lt;/p&gt;", "date_published": "yesterday"},
    "not an item"
  ]
}"""


def test_json_feed_1_1_with_what_publishers_really_write() -> None:
    parsed = parse_feed(
        JSON_FEED_1_1.encode(), url="https://wire.example/feed.json", headers={"Content-Type": "application/feed+json"}
    )
    assert parsed.title == "Wire & Wire"
    assert parsed.problem == "malformed JSON Feed: 1 item not an object"
    said, plain, escaped = parsed.articles
    assert (said.entry_id, said.key, said.link) == ("42", "42", "https://wire.example/42")
    assert said.title == 'Jen Zhu Scott says "US plus China"' and said.summary == "A call for collaboration."
    assert said.content == "Jen Zhu Scott said:\nWork together."
    assert said.published == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert said.story is not None
    assert (plain.link, plain.content) == ("https://elsewhere.example/b", "Plain words.\nTwo paragraphs.")
    assert plain.published == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert escaped.content == "Escaped & twice" and escaped.published is None
