"""Deterministic generator of realistic news feeds and of the watches that track them.

Everything here is a pure function of a seed, so two runs of the benchmark serve byte-identical
bodies. A feed is addressed by its index ``i`` and a *version* ``v``: version ``v`` holds the
``entries`` newest items ``v .. v+entries-1`` of an endless stream, so ``v + 1`` is "one new
entry appeared and the oldest fell off", exactly what a news feed does between two polls.

Items are ~300 words of news prose as HTML (paragraphs, links, emphasis, named and numeric
entities). About a fifth name a tracked speaker (some as quoted statements), and about a
fifth carry the phrases of a tracked theme, so the matcher has real work to do.
Every fifth feed is Atom, the others RSS 2.0 (half with CDATA ``content:encoded``, half escaped).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

#: Publication time of item 0 of every feed; item n is n * 7 minutes later (plus jitter).
EPOCH = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)

_FIRST = """Amara Okafor Jonas Lindqvist Mei Tanaka Rafael Ortiz Ingrid Solberg Tomasz Kowalczyk
Priya Raman Lucas Ferreira Hana Novak Samuel Adeyemi Elena Petrova Marco Bellini Aisha Rahman
Kenji Watanabe Sofia Mendes Daniel Okonkwo Leila Haddad Pieter Devries Chloe Martin Arjun Mehta
Fatima Benali Oliver Brandt Yuki Sato Gabriel Duarte Nadia Kowalski Henrik Nilsson
Camila Rojas Viktor Horvath Zainab Musa Thomas Moreau""".split()
_TITLES = [
    "Finance Minister",
    "Senator",
    "Governor",
    "Central Bank Chair",
    "CEO",
    "Prime Minister",
    "Foreign Minister",
    "Trade Commissioner",
    "Mayor",
    "Chief Economist",
]
_ORGS = [
    "Northwind Capital",
    "Helios Energy",
    "the Meridian Institute",
    "Atlas Semiconductors",
    "the Harbor Authority",
    "Bluewater Analytics",
    "the Civic Budget Office",
    "Polar Logistics",
    "Crescent Health",
    "the Riverbank Trust",
    "Summit Telecom",
    "Orchid Pharmaceuticals",
]
_PLACES = [
    "Brussels",
    "Lagos",
    "São Paulo",
    "Jakarta",
    "Warsaw",
    "Nairobi",
    "Montréal",
    "Osaka",
    "Geneva",
    "Santiago",
    "Mumbai",
    "Rotterdam",
    "Tbilisi",
    "Auckland",
    "Zürich",
]
_TOPICS = [
    ("interest rates", "inflation", "central bank"),
    ("carbon tax", "emissions", "climate policy"),
    ("export controls", "semiconductors", "chip supply"),
    ("housing shortage", "rent", "zoning reform"),
    ("wind power", "grid capacity", "energy transition"),
    ("data privacy", "encryption", "surveillance"),
    ("trade agreement", "tariffs", "customs union"),
    ("public health", "vaccine", "hospital capacity"),
    ("artificial intelligence", "AI safety", "machine learning"),
    ("water scarcity", "drought", "irrigation"),
    ("shipping lanes", "port congestion", "freight rates"),
    ("pension reform", "retirement age", "social security"),
    ("election security", "voter turnout", "ballot access"),
    ("rare earths", "mining permits", "critical minerals"),
    ("wildfire", "evacuation", "forest management"),
    ("minimum wage", "labor union", "collective bargaining"),
    ("space launch", "satellite", "orbital debris"),
    ("food prices", "fertilizer", "grain exports"),
    ("cyberattack", "ransomware", "critical infrastructure"),
    ("bond yields", "sovereign debt", "credit rating"),
    ("high-speed rail", "transit funding", "congestion pricing"),
    ("nuclear power", "reactor", "uranium"),
    ("antitrust", "merger review", "market dominance"),
    ("refugees", "asylum", "border policy"),
    ("ocean plastics", "recycling", "packaging rules"),
]
#: Neutral subjects for filler prose and untracked items: no theme phrase occurs in them.
_SUBJECTS = [
    "the spending review",
    "the quarterly figures",
    "the new rules",
    "the court ruling",
    "the staffing plan",
    "the budget talks",
    "the merger talks",
    "the audit findings",
    "the coalition talks",
    "the procurement process",
    "the licensing regime",
    "the fiscal outlook",
    "the reorganisation",
    "the board vote",
    "the regional plan",
    "the safety inspection",
]
_VERBS = [
    "announced",
    "warned",
    "argued",
    "confirmed",
    "questioned",
    "signalled",
    "rejected",
    "welcomed",
    "proposed",
    "criticised",
    "defended",
    "outlined",
]
_NOUNS = [
    "plan",
    "proposal",
    "budget",
    "report",
    "framework",
    "review",
    "strategy",
    "deal",
    "investigation",
    "forecast",
    "package",
    "timeline",
]
_FILLER = """the committee expects further talks before the end of the quarter while analysts
remain divided over how quickly the measures could take effect and whether smaller firms will
bear most of the cost officials said the figures would be revised after consultations with
regional partners and industry groups that have lobbied for a longer transition period
according to documents seen by reporters the draft includes several exemptions that critics
describe as loopholes although supporters insist they are temporary and narrowly targeted
markets reacted cautiously with shares in the sector trading slightly lower in early
afternoon as investors weighed the outlook for demand over the coming months""".split()
_ENTITIES = ["&amp;", "&rsquo;", "&mdash;", "&eacute;", "&#8220;", "&#8221;", "&nbsp;", "&euro;"]


@dataclass(frozen=True)
class SpeakerSpec:
    name: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ThemeSpec:
    name: str
    all_of: tuple[tuple[str, ...], ...]
    any_of: tuple[str, ...]
    none_of: tuple[str, ...]


@dataclass(frozen=True)
class Watches:
    speakers: tuple[SpeakerSpec, ...]
    themes: tuple[ThemeSpec, ...]


def make_watches(seed: int, n_speakers: int = 50, n_themes: int = 50) -> Watches:
    """``n_speakers`` people with aliases (surname, title + surname, initials) and ``n_themes``
    themes with ``all_of`` groups, ``any_of`` phrases and ``none_of`` vetoes."""
    rng = random.Random(f"watches:{seed}")
    firsts, lasts = _FIRST[0::2], _FIRST[1::2]
    people: list[SpeakerSpec] = []
    seen: set[str] = set()
    while len(people) < n_speakers:
        first, last = rng.choice(firsts), rng.choice(lasts)
        name = f"{first} {last}"
        if name in seen:
            continue
        seen.add(name)
        aliases = [f"{rng.choice(_TITLES)} {last}", f"{first[0]}. {last}"]
        if rng.random() < 0.3:
            aliases.append(f"{first} {rng.choice('ABDEJKLMRST')}. {last}")
        people.append(SpeakerSpec(name, tuple(aliases)))
    themes: list[ThemeSpec] = []
    for k in range(n_themes):
        a, b, c = _TOPICS[k % len(_TOPICS)]
        other = _TOPICS[(k * 7 + 3) % len(_TOPICS)]
        place = _PLACES[k % len(_PLACES)]
        variant = k // len(_TOPICS)
        all_of: tuple[tuple[str, ...], ...] = ((a, b),) if variant == 0 else ((a, b), (place,))
        themes.append(
            ThemeSpec(
                name=f"{a.title()} watch {k + 1}",
                all_of=all_of,
                any_of=(c, other[0]) if k % 3 else (),
                none_of=("opinion", "sponsored") if k % 4 == 0 else (),
            )
        )
    return Watches(tuple(people), tuple(themes))


class FeedGenerator:
    """Bodies of feed ``i`` at version ``v``; see the module docstring."""

    def __init__(self, seed: int, entries: int, watches: Watches, base_url: str = "https://news.example") -> None:
        self.seed = seed
        self.entries = entries
        self.watches = watches
        self.base_url = base_url
        rng = random.Random(f"sentences:{seed}")
        # A pool of sentences keeps generation fast; each item draws its own mix and adds
        # names, places and numbers, so no two items share their text.
        self._pool = [self._sentence(rng) for _ in range(3000)]

    def is_atom(self, i: int) -> bool:
        return i % 5 == 4

    def body(self, i: int, version: int) -> bytes:
        items = [self._item(i, n) for n in range(version + self.entries - 1, version - 1, -1)]
        return (self._atom(i, items, version) if self.is_atom(i) else self._rss(i, items, version)).encode("utf-8")

    # -- items ------------------------------------------------------------------------------

    def _sentence(self, rng: random.Random) -> str:
        words = rng.sample(_FILLER, rng.randint(9, 16))
        subject = rng.choice(_SUBJECTS)
        org = rng.choice(_ORGS)
        words.insert(rng.randrange(len(words)), subject)
        lead = f"{org} {rng.choice(_VERBS)} a {rng.choice(_NOUNS)} on {subject}"
        return f"{lead}, {' '.join(words)}."

    def _item(self, i: int, n: int) -> dict[str, str]:
        rng = random.Random(f"item:{self.seed}:{i}:{n}")
        place = rng.choice(_PLACES)
        speaker = rng.choice(self.watches.speakers) if rng.random() < 0.2 else None
        theme = rng.choice(self.watches.themes) if rng.random() < 0.2 else None
        # The item's subject: its theme's first phrase when it carries one, else neutral
        # wording that no theme tracks (real news mostly matches nothing).
        topic = theme.all_of[0] if theme is not None else (rng.choice(_SUBJECTS),)
        paragraphs: list[str] = []
        words = 0
        while words < 270:
            sentences = [rng.choice(self._pool) for _ in range(rng.randint(2, 4))]
            text = " ".join(sentences)
            words += text.count(" ") + 1
            paragraphs.append(text)
        paragraphs[0] = f"{place.upper()} &mdash; " + paragraphs[0]
        paragraphs[-1] += (
            f" Costs rose to &euro;{rng.randint(2, 900)} million {rng.choice(_ENTITIES)} "
            f"officials&rsquo; estimates &amp; forecasts were revised."
        )
        if speaker is not None:
            who = rng.choice((speaker.name, *speaker.aliases))
            if rng.random() < 0.5:
                quote = f"&#8220;We will not accept a {rng.choice(_NOUNS)} that ignores {topic[0]},&#8221; said {who}."
            else:
                quote = f"Observers expect {who} to comment on the {rng.choice(_NOUNS)} later this week."
            paragraphs.insert(rng.randint(1, len(paragraphs)), quote)
        if theme is not None:
            phrases = [rng.choice(group) for group in theme.all_of]
            if theme.any_of:
                phrases.append(rng.choice(theme.any_of))
            paragraphs.insert(
                rng.randint(1, len(paragraphs)),
                f"The debate over {' and '.join(phrases)} dominated the session in {place}.",
            )
        html = []
        for k, p in enumerate(paragraphs):
            if k % 3 == 1:
                anchor = rng.choice(_ORGS)
                p = p.replace(
                    anchor, f'<a href="{self.base_url}/org/{anchor.replace(" ", "-").lower()}">{anchor}</a>', 1
                )
            if k % 4 == 2:
                p = p.replace(" the ", " <em>the</em> ", 1)
            html.append(f"<p>{p.replace(' & ', ' &amp; ')}</p>")
        if rng.random() < 0.3:
            html.append(f'<p><img src="{self.base_url}/img/{i}-{n}.jpg" alt="Photo: {escape(place)}" /></p>')
        title = f"{rng.choice(_ORGS).removeprefix('the ').title()} {rng.choice(_VERBS)} {topic[0]} {rng.choice(_NOUNS)}"
        if speaker is not None and rng.random() < 0.5:
            title = f"{speaker.name} {rng.choice(_VERBS)} {topic[0]} {rng.choice(_NOUNS)}"
        published = EPOCH + timedelta(minutes=7 * n + rng.randint(0, 5), seconds=i % 60)
        return {
            "title": title,
            "link": f"{self.base_url}/{i}/{published:%Y/%m/%d}/story-{n}",
            "guid": f"urn:bench:{self.seed}:{i}:{n}",
            "summary": f"<p>{paragraphs[0].split('. ')[0]}.</p>",
            "html": "\n".join(html),
            "published": published.isoformat(),
            "pubdate": format_datetime(published),
            "author": f"{rng.choice(_FIRST[0::2])} {rng.choice(_FIRST[1::2])}",
            "category": topic[0],
        }

    # -- documents ----------------------------------------------------------------------------

    def _rss(self, i: int, items: list[dict[str, str]], version: int) -> str:
        cdata = i % 2 == 0
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">',
            "<channel>",
            f"<title>Bench Wire {i} &amp; Co</title>",
            f"<link>{self.base_url}/{i}/</link>",
            f'<atom:link href="{self.base_url}/{i}/rss.xml" rel="self" type="application/rss+xml"/>',
            f"<description>News from desk {i}</description>",
            "<language>en</language>",
            f"<lastBuildDate>{items[0]['pubdate']}</lastBuildDate>",
        ]
        for it in items:
            content = f"<![CDATA[{it['html']}]]>" if cdata else escape(it["html"], quote=False)
            out += [
                "<item>",
                f"<title>{escape(it['title'], quote=False)}</title>",
                f"<link>{it['link']}</link>",
                f'<guid isPermaLink="false">{it["guid"]}</guid>',
                f"<pubDate>{it['pubdate']}</pubDate>",
                f"<dc:creator>{it['author']}</dc:creator>",
                f"<category>{it['category']}</category>",
                f"<description>{escape(it['summary'], quote=False)}</description>",
                f"<content:encoded>{content}</content:encoded>",
                "</item>",
            ]
        out += ["</channel>", "</rss>", ""]
        return "\n".join(out)

    def _atom(self, i: int, items: list[dict[str, str]], version: int) -> str:
        out = [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<feed xmlns="http://www.w3.org/2005/Atom">',
            f"<title>Bench Journal {i}</title>",
            f'<link href="{self.base_url}/{i}/"/>',
            f'<link rel="self" href="{self.base_url}/{i}/atom.xml"/>',
            f"<id>urn:bench:{self.seed}:feed:{i}</id>",
            f"<updated>{items[0]['published']}</updated>",
        ]
        for it in items:
            out += [
                "<entry>",
                f'<title type="html">{escape(escape(it["title"], quote=False), quote=False)}</title>',
                f'<link rel="alternate" href="{it["link"]}"/>',
                f"<id>{it['guid']}</id>",
                f"<published>{it['published']}</published>",
                f"<updated>{it['published']}</updated>",
                f"<author><name>{it['author']}</name></author>",
                f'<category term="{it["category"]}"/>',
                f'<summary type="html">{escape(it["summary"], quote=False)}</summary>',
                f'<content type="html">{escape(it["html"], quote=False)}</content>',
                "</entry>",
            ]
        out += ["</feed>", ""]
        return "\n".join(out)


def etag_of(body: bytes) -> str:
    """A strong ETag for ``body``."""
    return '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
