"""An article's text as matching reads it. Pure: no I/O, no clock.

Each field (title, summary, content) is kept in three aligned forms of the same length, so an
offset found in one is valid in all: the text as written (what evidence quotes), the text with
dotted acronyms collapsed ("U.S." -> "US  ", where acronym case is read), and that folded to
lower case without accents (where words are found). A field's :class:`Layout` splits it into
paragraphs (the line breaks ``parse`` keeps between HTML blocks), sentences and quotations.

Reading order is title, summary, content; a field found whole inside another adds nothing.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from dataclasses import dataclass, field

from watcher.types import Article

#: The fields matched, in the order a reader meets them (and evidence is listed).
FIELD_NAMES = ("title", "summary", "content")

WORD = re.compile(r"[^\W_]+")
_DOTTED_ACRONYM = re.compile(r"(?<![^\W_])(?:[A-Z]\.){2,4}(?![^\W_])")
_DOTTED_HINT = re.compile(r"\.[A-Z]\.")  # starts with a literal, so the scan is fast


@dataclass(eq=False)
class Field:
    """One article field, in the three aligned forms matching needs (same length, same offsets)."""

    name: str
    #: Position in reading order among the fields kept (0 is the first).
    index: int
    #: NFC text: what evidence quotes.
    text: str
    #: ``text`` with dotted acronyms collapsed ("U.S." -> "US  "): acronym case is read here.
    cased: str
    #: ``cased`` lower-cased and stripped of accents: words are found here.
    folded: str
    words: set[str]
    _layout: Layout | None = field(default=None, repr=False)

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = Layout(self.text)
        return self._layout


def fields(article: Article) -> list[Field]:
    """The article's non-empty fields in reading order, without one repeated inside another."""
    raws = [(name, getattr(article, name)) for name in FIELD_NAMES]
    kept = [(name, raw) for i, (name, raw) in enumerate(raws) if raw and not _repeated(i, raws)]
    return [prepare(name, raw, i) for i, (name, raw) in enumerate(kept)]


def _repeated(i: int, raws: list[tuple[str, str]]) -> bool:
    """Feeds often repeat the summary as (the start of) the content: a field found whole inside
    a longer one, or equal to an earlier one, adds nothing to match. Paragraph breaks do not
    count: a summary is often the content's first paragraphs run together."""
    raw = raws[i][1]
    for j, (_, other) in enumerate(raws):
        if j == i or len(other) < len(raw) or (len(other) == len(raw) and j > i):
            continue
        if raw in other or ("\n" in raw and " ".join(raw.split()) in " ".join(other.split())):
            return True
    return False


def prepare(name: str, raw: str, index: int = 0) -> Field:
    text = raw if raw.isascii() else unicodedata.normalize("NFC", raw)
    cased = collapse_dotted_acronyms(text)
    folded = fold(cased)
    return Field(name, index, text, cased, folded, word_set(folded))


#: Character -> " " for every ASCII character that is not part of a word (what ``WORD`` skips).
#: On ASCII text ``str.translate`` with it runs in C at memcpy-like speed, and splitting the
#: result is several times faster than ``WORD.findall``; it gives the same words.
_WORD_BREAKS: dict[int, str] = {c: " " for c in range(128) if not chr(c).isalnum()}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
#: Character -> its folded form, filled as characters are first seen (bounded by Unicode).
_FOLDED_CHARS: dict[str, str] = {}


def fold(text: str) -> str:
    """Lower-case, then strip accents: the same length as ``text``, so offsets stay valid.

    ``str.translate`` with a dict is slow on non-ASCII text (a dict lookup per character), so
    the text is lower-cased in C and only its few distinct non-ASCII characters are replaced."""
    lower = text.lower()
    if text.isascii():
        return lower
    if len(lower) != len(text):
        # Some character lower-cases to two ("İ"): fold character by character instead.
        return "".join(map(_folded_char, text))
    for ch in set(_NON_ASCII.findall(lower)):
        folded = _folded_char(ch)
        if folded != ch:
            lower = lower.replace(ch, folded)
    return lower


def word_set(folded: str) -> set[str]:
    """The distinct words of folded text (maximal runs of letters and digits)."""
    if not folded.isascii():
        # Non-ASCII punctuation (’ — “) is a word break: made a space, the text may be ASCII.
        for ch in set(_NON_ASCII.findall(folded)):
            if not ch.isalnum():
                folded = folded.replace(ch, " ")
        if not folded.isascii():
            return set(WORD.findall(folded))
    return set(folded.translate(_WORD_BREAKS).split())


def _folded_char(ch: str) -> str:
    folded = _FOLDED_CHARS.get(ch)
    if folded is None:
        folded = _FOLDED_CHARS[ch] = _fold_char(ch)
    return folded


def _fold_char(ch: str) -> str:
    """``ch`` lower-cased and stripped of accents when that is one character; else lower-cased
    when that is one character; else ``ch``. Folding a character's lower case gives the same."""
    lower = ch.lower()
    base = "".join(
        c for c in unicodedata.normalize("NFKD", lower if len(lower) == 1 else ch) if not unicodedata.combining(c)
    ).lower()
    if len(base) == 1:
        return base
    return lower if len(lower) == 1 else ch


def collapse_dotted_acronyms(text: str) -> str:
    """ "U.S." -> "US  ", padded so offsets stay valid; "U.S." and "US" are the same word."""
    if _DOTTED_HINT.search(text) is None:
        return text
    return _DOTTED_ACRONYM.sub(lambda m: m.group().replace(".", "").ljust(len(m.group())), text)


def split_phrase(phrase: str) -> tuple[list[str], list[str]]:
    """The words of a configured name or phrase (case kept) and the separators between them."""
    text = collapse_dotted_acronyms(unicodedata.normalize("NFC", phrase.strip()))
    matches = list(WORD.finditer(text))
    gaps = [text[a.end() : b.start()] for a, b in itertools.pairwise(matches)]
    return [m.group() for m in matches], gaps


# -- paragraphs, sentences and quotations ------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_BOUNDARY = re.compile(r"([.!?…])[.!?…]*[\"”’')\]]*(\s+)(?=[\"“‘«(\[]*[^\W_a-z])")
_QUOTE_MARK = re.compile(r"[“”\"‘’«»]")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")
_ABBREVIATIONS = _words(
    """mr mrs ms dr prof st jr sr inc ltd co corp gen gov sen rep vs etc jan feb mar apr jun jul aug
    sep sept oct nov dec mt ft lt col capt sgt rev hon approx dept univ fig"""
)
_LONGEST_ABBREVIATION = max(map(len, _ABBREVIATIONS))

#: After "U.S." these open a new sentence; other capitalised words ("U.S. Commerce") do not.
SENTENCE_OPENERS = _words("he she it they we i the but and this that in a an his her their its there")


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    text: str
    lower: str

    @property
    def is_word(self) -> bool:
        return self.text[0].isalnum()


class Layout:
    """Paragraphs, sentences and quotations of one field, computed on first use.

    Sentences never cross a paragraph break, nor a quotation's end; quotations never cross a
    paragraph break (a quote running on into the next paragraph reopens there, as in print)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.paragraphs: list[tuple[int, int]] = []
        self.sentences: list[tuple[int, int]] = []
        #: Index of the paragraph each sentence is in.
        self.sentence_paragraph: list[int] = []
        self.quotes: list[tuple[int, int]] = []
        pos = 0
        for line in text.split("\n"):
            start, end = pos, pos + len(line)
            pos = end + 1
            if not line.strip():
                continue
            quotes = _quote_spans(text, start, end)
            self.quotes.extend(quotes)
            for sentence in _split_sentences(text, start, end, quotes):
                self.sentences.append(sentence)
                self.sentence_paragraph.append(len(self.paragraphs))
            self.paragraphs.append((start, end))
        if not self.sentences:
            self.sentences, self.sentence_paragraph, self.paragraphs = [(0, 0)], [0], [(0, 0)]
        self._starts = [s for s, _ in self.sentences]
        self._tokens: dict[int, list[Token]] = {}

    def sentence_of(self, pos: int) -> int:
        return max(0, bisect.bisect_right(self._starts, pos) - 1)

    def in_quote(self, pos: int) -> bool:
        return any(a < pos < b for a, b in self.quotes)

    def tokens(self, index: int) -> list[Token]:
        if index not in self._tokens:
            start, end = self.sentences[index]
            self._tokens[index] = [
                Token(m.start(), m.end(), m.group(), m.group().lower()) for m in _TOKEN.finditer(self.text, start, end)
            ]
        return self._tokens[index]


def _quote_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """[open, close] offsets of quotations: “…”, "…", «…», and ‘…’ (not apostrophes)."""
    spans: list[tuple[int, int]] = []
    double_open: int | None = None
    single_open: int | None = None
    for m in _QUOTE_MARK.finditer(text, start, end):
        i, ch = m.start(), m.group()
        if ch in "“«" or (ch == '"' and double_open is None):
            if double_open is None:
                double_open = i
        elif ch in '”»"':
            if double_open is not None:
                spans.append((double_open, i))
                double_open = None
        elif ch == "‘" and single_open is None and (i == start or not text[i - 1].isalnum()):
            single_open = i
        elif ch == "’" and single_open is not None and (i + 1 == end or not text[i + 1].isalnum()):
            spans.append((single_open, i))
            single_open = None
    return spans


def _split_sentences(text: str, start: int, end: int, quotes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentence spans: a full stop, ! or ? (and closing quotes) then space and a capital or
    digit, unless the stop ends an abbreviation or initial, or sits inside a quotation."""
    spans: list[tuple[int, int]] = []
    while start < end and text[start].isspace():
        start += 1
    for m in _BOUNDARY.finditer(text, start, end):
        gap_start = m.start(2)
        if quotes and any(a < gap_start < b for a, b in quotes):
            continue
        if m.group(1) == "." and _abbreviation_ends(text, m):
            continue
        spans.append((start, gap_start))
        start = m.end()
    spans.append((start, len(text[:end].rstrip())))
    return spans


def _abbreviation_ends(text: str, m: re.Match[str]) -> bool:
    """The full stop ends an abbreviation or an initial, not a sentence."""
    stop = m.start()
    if stop > _LONGEST_ABBREVIATION and text[stop - _LONGEST_ABBREVIATION - 1 : stop].isalnum():
        return False  # a word longer than any abbreviation (most sentences end on one)
    start = stop
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    word = text[start:stop]
    if word.lower() in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():
        # An initial ("J. Smith") or the end of "U.S."; only the latter may also end a sentence.
        dotted = start >= 2 and text[start - 1] == "." and text[start - 2].isalpha()
        following = WORD.match(text, m.end())
        return not (dotted and following is not None and following.group().lower() in SENTENCE_OPENERS)
    return False
