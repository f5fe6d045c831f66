"""Match articles against tracked speakers and themes. Pure: no I/O, no clock; the only
state kept between calls is a per-word memo that never changes a result.

The contract is ``shared/corpus/dev/README.md`` (readings R1-R12); the algorithm:

1. **Compile once** (``Matcher(...)``). Every name, alias and theme phrase is split into words
   ("terms") normalised like article text: NFC, dotted acronyms collapsed ("U.S." -> "US"),
   case-folded, accents stripped. Terms are shared between watches. Each term knows its exact
   forms (theme words also with -s/-es added or dropped); terms allowed a one-letter typo also
   enter a symmetric-deletion index (each spelling and its one-letter deletions, as in
   SymSpell). Each phrase has one *anchor*, its rarest-looking word (not a common English word
   or acronym; then the longest); each theme is woken through its rarest-looking group only,
   since every group must be met anyway.
2. **Prefilter** (per article): fold each field once and take the *set* of its words. One set
   intersection finds the anchor words present; words never seen before are looked up once in
   the deletion index (memoised), so typos cost nothing on later articles. A woken phrase must
   have all its words present (set checks) before anything is located. These are C-level set
   operations: the cost follows the text and the watches it touches, not text x watches.
3. **Locate** (on demand, once per phrase): find the anchor word as a whole word and walk word
   by word, checking separators (names: whitespace, hyphens, dashes only, R2; themes: any
   punctuation), the case of short acronyms (R11), and typos with rapidfuzz's OSA distance (at
   most one per name, never in a part of <= 3 letters, R1). A phrase stays inside one field (R6).
4. **Decide**: a speaker is mentioned when a name or alias is located, and makes a statement
   when an attribution rule in ``_attribution`` holds for an unquoted mention. A theme matches
   when every ``all_of`` group and ``any_of`` (if any) has a located phrase and no ``none_of``
   phrase is located (R10).
5. **Explain**: each hit carries the sentences of its decisive occurrences, with spans.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from rapidfuzz.distance import OSA

from watcher.config import Speaker, Theme
from watcher.types import Article, Evidence, Hit

__all__ = ["Matcher"]

_WORD = re.compile(r"[^\W_]+")
_NEXT_WORD = re.compile(r"([\W_]+)([^\W_]+)")
#: R2: between name parts only whitespace (NBSP included), hyphens and dashes.
_NAME_GAP = re.compile(r"[\s\u00ad\u2010-\u2015\u2212-]+")
_DOTTED_ACRONYM = re.compile(r"(?<![^\W_])(?:[A-Z]\.){2,4}(?![^\W_])")
_DOTTED_HINT = re.compile(r"\.[A-Z]\.")  # starts with a literal, so the scan is fast
#: Contract: one-letter typos are tolerated in theme words and names of this many characters.
_TYPO_MIN_LENGTH = 8
#: R1: never a typo inside a name part this short (and, by the same token, a theme word).
_TYPO_MIN_PART = 4
#: Words per generation of the typo memo: at most twice this many are kept (~20 MB).
_MAX_MEMO_WORDS = 100_000
_MAX_EVIDENCE_CHARS = 320
_MAX_EVIDENCE_PER_HIT = 3


class Matcher:
    """Speakers and themes compiled once; ``match(article)`` is then cheap and thread-safe."""

    def __init__(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        self._terms: dict[tuple[object, ...], _Term] = {}
        self._phrases: dict[tuple[object, ...], _Phrase] = {}
        self._speakers = [
            _SpeakerWatch(
                s,
                tuple(self._name_phrase(v, s.threshold) for v in (s.name, *s.aliases)),
            )
            for s in speakers
        ]
        self._themes = [self._compile_theme(t) for t in themes]
        self._index()

    def match(self, article: Article) -> list[Hit]:
        """Every tracked speaker and theme the article matches, speakers first, in config order."""
        fields = _fields(article)
        # The prefilter runs once over all fields' words; phrases are then located per field (R6).
        words = set().union(*(f.words for f in fields))
        scan = _Scan(fields, words, self._typo_words(words))
        woken_names, woken_themes = self._wake(scan)
        located = {p: occ for p in woken_names if scan.present(p) and (occ := scan.locate(p))}
        speakers = sorted({i for p in located for i in self._speakers_by_phrase[p]})
        mentions = {i: _outermost([o for p in self._speakers[i].phrases for o in located.get(p, ())]) for i in speakers}
        hits = [_speaker_hit(self._speakers[i], mentions[i], mentions, i) for i in speakers]
        hits.extend(h for i in sorted(woken_themes) if (h := _theme_hit(self._themes[i], scan)) is not None)
        return hits

    # -- compile ---------------------------------------------------------------------------

    def _name_phrase(self, name: str, threshold: int | None) -> _Phrase:
        words, gaps = _split_config_phrase(name)
        # Contract: typos only in names of 8+ characters; R1: never inside a part of <= 3 letters.
        may_typo = threshold < 100 if threshold is not None else len(name.strip()) >= _TYPO_MIN_LENGTH
        terms = tuple(
            self._term(
                _fold(w),
                acronym=None,
                plural=False,
                fuzzy=may_typo and len(w) >= _TYPO_MIN_PART,
                threshold=threshold,
            )
            for w in words
        )
        odd_gaps = tuple(sorted({g for g in gaps if not _NAME_GAP.fullmatch(g)}))
        return self._phrase(name, terms, is_name=True, odd_gaps=odd_gaps)

    def _theme_phrase(self, phrase: str, threshold: int | None) -> _Phrase:
        words, _ = _split_config_phrase(phrase)
        terms = []
        for w in words:
            # Short all-caps acronyms match only as that uppercase word ("us" is not "US").
            acronym = w if 2 <= len(w) <= 4 and w.isalpha() and w.isupper() else None
            folded = _fold(w)
            if threshold is not None:
                fuzzy = threshold < 100 and len(folded) >= _TYPO_MIN_PART
            else:
                fuzzy = len(folded) >= _TYPO_MIN_LENGTH
            terms.append(
                self._term(
                    folded,
                    acronym=acronym,
                    plural=True,
                    fuzzy=fuzzy and not acronym,
                    threshold=threshold,
                )
            )
        return self._phrase(phrase, tuple(terms), is_name=False, odd_gaps=())

    def _compile_theme(self, theme: Theme) -> _ThemeWatch:
        def compile_all(phrases: Sequence[str]) -> tuple[_Phrase, ...]:
            return tuple(self._theme_phrase(p, theme.threshold) for p in phrases)

        groups = [_Group.of(compile_all(group)) for group in theme.all_of if group]
        if theme.any_of:
            groups.append(_Group.of(compile_all(theme.any_of)))
        groups.sort(key=lambda g: g.rarity, reverse=True)
        return _ThemeWatch(theme, groups=tuple(groups), none_of=compile_all(theme.none_of))

    def _term(
        self,
        word: str,
        *,
        acronym: str | None,
        plural: bool,
        fuzzy: bool,
        threshold: int | None,
    ) -> _Term:
        key = (word, acronym, plural, fuzzy, threshold if fuzzy else None)
        if key not in self._terms:
            bases = (word, *_singulars(word)) if plural and not acronym else (word,)
            self._terms[key] = _Term(
                word=word,
                forms=frozenset(_forms(word, acronym=acronym, plural=plural)),
                acronym=acronym,
                plural=plural,
                typo_bases=bases if fuzzy else (),
                min_similarity=threshold if fuzzy else None,
            )
        return self._terms[key]

    def _phrase(
        self,
        label: str,
        terms: tuple[_Term, ...],
        *,
        is_name: bool,
        odd_gaps: tuple[str, ...],
    ) -> _Phrase:
        key = (is_name, tuple(id(t) for t in terms), odd_gaps)
        if key not in self._phrases:
            self._phrases[key] = _Phrase(label, terms, is_name, odd_gaps, _anchor_index(terms))
        return self._phrases[key]

    def _index(self) -> None:
        """Build the lookups ``match`` uses: cost per article then follows its words, not the config.

        A name phrase is woken by its anchor word; a theme only by the anchor words of its
        rarest-looking group, since every group must be met anyway. A woken theme then goes on
        only if every other group has an anchor word present (two C-level set tests a group).
        Other words are checked only for watches that get that far.
        """
        self._speakers_by_phrase: dict[_Phrase, list[int]] = {}
        names: dict[_Term, dict[_Phrase, None]] = {}
        for i, speaker in enumerate(self._speakers):
            for phrase in dict.fromkeys(speaker.phrases):
                self._speakers_by_phrase.setdefault(phrase, []).append(i)
                names.setdefault(phrase.terms[phrase.anchor], {})[phrase] = None
        themes: dict[_Term, dict[_Phrase, list[int]]] = {}
        for i, theme in enumerate(self._themes):
            if theme.groups:
                for phrase in theme.groups[0].phrases:
                    themes.setdefault(phrase.terms[phrase.anchor], {}).setdefault(phrase, []).append(i)
        self._wakes = {
            term: _Wake(
                names=tuple(names.get(term, ())),
                # A one-word phrase is present when its (anchor) word is; longer ones are checked.
                themes=frozenset(i for p, ids in themes.get(term, {}).items() if len(p.terms) == 1 for i in ids),
                themes_if_present=tuple(
                    (tuple(t for t in p.terms if t is not term), tuple(ids))
                    for p, ids in themes.get(term, {}).items()
                    if len(p.terms) > 1
                ),
            )
            for term in {*names, *themes}
        }
        self._wake_exact: dict[str, list[_Term]] = {}
        for term in self._wakes:
            for form in term.forms:
                self._wake_exact.setdefault(form, []).append(term)
        self._wake_keys = frozenset(self._wake_exact)
        self._wake_terms = frozenset(self._wakes)
        #: Per theme, for each group but the first (which wakes it): its anchor words' forms
        #: and terms. A theme goes on only if each group meets one, exactly or through a typo.
        self._theme_rest = [tuple((g.anchor_forms, g.anchor_terms) for g in theme.groups[1:]) for theme in self._themes]
        typo_terms = {t for t in self._terms.values() if t.typo_bases}
        self._deletes: dict[str, list[tuple[str, _Term]]] = {}
        for term in typo_terms:
            for base in term.typo_bases:
                for key in {base, *_deletions(base)}:
                    self._deletes.setdefault(key, []).append((base, term))
        lengths = [len(b) for t in typo_terms for b in t.typo_bases]
        self._typo_lengths = (min(lengths) - 1, max(lengths) + 3) if lengths else (0, -1)
        # The typo memo: word -> the terms it reaches through a typo (mostly none), in two
        # generations so that memory stays bounded (see _learn_typos).
        self._memo: dict[str, tuple[_Term, ...]] = {}
        self._memo_old: dict[str, tuple[_Term, ...]] = {}
        #: The words of ``_memo`` that reach a term: one set intersection finds an article's.
        self._memo_typo_words: set[str] = set()

    # -- prefilter -------------------------------------------------------------------------

    def _typo_words(self, words: set[str]) -> dict[str, tuple[_Term, ...]]:
        """The article's words that reach terms through a tolerated typo, with those terms."""
        if not self._deletes:
            return {}
        memo, typo_words = self._learn_typos(words)
        return {w: memo[w] for w in words & typo_words}

    def _wake(self, scan: _Scan) -> tuple[dict[_Phrase, None], set[int]]:
        """Name phrases and themes worth a closer look: name phrases whose anchor word is
        present; themes whose first group has a phrase present and every other group at least
        an anchor word. (The hot loop of the matcher: written for speed, tests inlined.)"""
        words, typos = scan.words, scan.typos
        names: dict[_Phrase, None] = {}
        themes: set[int] = set()
        for term in self._woken_terms(scan):
            wake = self._wakes[term]
            if wake.names:
                names.update(dict.fromkeys(wake.names))
            if wake.themes:
                themes |= wake.themes
            for others, ids in wake.themes_if_present:
                for t in others:
                    if words.isdisjoint(t.forms) and t not in typos:
                        break
                else:
                    themes.update(ids)
        woken: set[int] = set()
        for i in themes:
            for forms, terms in self._theme_rest[i]:
                if words.isdisjoint(forms) and terms.isdisjoint(typos):
                    break
            else:
                woken.add(i)
        return names, woken

    def _woken_terms(self, scan: _Scan) -> list[_Term]:
        """Wake-up terms present in the article (exactly, or through a typo)."""
        terms = [t for word in scan.words & self._wake_keys for t in self._wake_exact[word]]
        terms.extend(scan.typos & self._wake_terms)
        return terms

    def _learn_typos(self, words: set[str]) -> tuple[dict[str, tuple[_Term, ...]], set[str]]:
        """Memoise the typo lookup of the words not seen yet; return the memo that has them all.

        Memory is bounded without a per-word cost: past ``_MAX_MEMO_WORDS`` words the memo
        becomes the old generation and a new one starts; a word still in use is moved over from
        the old one when next seen, unused ones go with the old generation when it is dropped.
        The memo is returned, not re-read, so a concurrent turnover cannot hide a word."""
        if len(self._memo) >= _MAX_MEMO_WORDS:
            self._memo_old, self._memo, self._memo_typo_words = self._memo, {}, set()
        memo, old, typo_words = self._memo, self._memo_old, self._memo_typo_words
        new = words.difference(memo)
        if new:
            low, high = self._typo_lengths
            for word in new:
                terms = old.get(word)
                if terms is None:
                    terms = self._typo_lookup(word) if low <= len(word) <= high else ()
                memo[word] = terms
                if terms:
                    typo_words.add(word)
        return memo, typo_words

    def _typo_lookup(self, word: str) -> tuple[_Term, ...]:
        found: dict[_Term, None] = {}
        for variant in (word, *_singulars(word)):
            for key in {variant, *_deletions(variant)}:
                for _, term in self._deletes.get(key, ()):
                    if term not in found and _typo_score(term, word) is not None:
                        found[term] = None
        return tuple(found)


class _Scan:
    """One article being matched: its fields and words, with phrases checked on demand, once."""

    def __init__(
        self,
        fields: list[_Field],
        words: set[str],
        typo_words: dict[str, tuple[_Term, ...]],
    ) -> None:
        self.fields = fields
        self.words = words
        #: Words that reach terms only through a tolerated typo, with those terms.
        self.typo_words = typo_words
        #: Every term reached through a typo.
        self.typos: set[_Term] = set().union(*typo_words.values())
        self._present: dict[_Phrase, bool] = {}
        self._located: dict[_Phrase, list[_Occurrence]] = {}

    def present(self, phrase: _Phrase) -> bool:
        """Every word of the phrase is in the article, exactly or through a tolerated typo."""
        known = self._present.get(phrase)
        if known is None:
            known = True
            for t in phrase.terms:
                if self.words.isdisjoint(t.forms) and t not in self.typos:
                    known = False
                    break
            self._present[phrase] = known
        return known

    def locate(self, phrase: _Phrase) -> list[_Occurrence]:
        """Occurrences of a present phrase, field by field: every one for a name (each may be a
        statement), for a theme phrase only up to the first exact one per field."""
        if phrase not in self._located:
            self._located[phrase] = [o for f in self.fields for o in self._locate_in(f, phrase)]
        return self._located[phrase]

    def _locate_in(self, f: _Field, phrase: _Phrase) -> list[_Occurrence]:
        found: dict[int, _Occurrence] = {}
        idx = phrase.anchor
        term = phrase.terms[idx]
        words = term.forms & f.words
        if term in self.typos:
            words |= {w for w, ts in self.typo_words.items() if term in ts} & f.words
        for word in words:
            for start in _find_word(f.folded, word):
                score = _word_score(term, f, start, start + len(word))
                if score is None:
                    continue
                occurrence = _extend(f, phrase, idx, start, start + len(word), score)
                if occurrence is None:
                    continue
                found.setdefault(occurrence.start, occurrence)
                if occurrence.score == 100 and not phrase.is_name:
                    return [occurrence]
        return sorted(found.values(), key=lambda o: o.start)


# -- compiled watches -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Term:
    """One configured word, shared by every phrase that uses it (hashed by identity)."""

    word: str
    #: Folded spellings that match exactly (theme words: with -s/-es added or dropped, R8).
    forms: frozenset[str]
    #: "US" for a 2-4 letter all-caps word: the text must have it in capitals (R11).
    acronym: str | None
    plural: bool
    #: Spellings a one-letter typo is measured against; empty when typos are not tolerated.
    typo_bases: tuple[str, ...]
    #: The watch's threshold; None means the contract's rule (any single edit).
    min_similarity: int | None


@dataclass(frozen=True, eq=False)
class _Phrase:
    label: str
    terms: tuple[_Term, ...]
    is_name: bool
    #: Separators a configured name itself uses that R2 would not allow (e.g. "O'Brien").
    odd_gaps: tuple[str, ...]
    #: Index of the term the phrase is woken by and located from (see _anchor_index).
    anchor: int


def _anchor_index(terms: tuple[_Term, ...]) -> int:
    """The rarest-looking word (see ``_rarity``), so it wakes the phrase least often.
    One anchor suffices because a phrase is present only when all its words are, each exactly
    or through a typo that the typo index has already resolved to its term."""
    return max(range(len(terms)), key=lambda i: _rarity(terms[i]))


def _rarity(term: _Term) -> tuple[int, int]:
    """How rare a word looks in news text, as a sort key (higher is rarer).

    Acronyms rank lowest: they are found through their folded form, which also wakes on the
    everyday word ("us", "it"). Then the common English and news words of ``_COMMON_WORDS``
    (singular or plural). Then every other word, longer ones first: length is the best cheap
    guess left, and any configured topic or surname outranks the common words."""
    if term.acronym:
        return (0, len(term.word))
    if term.word in _COMMON_WORDS or not _COMMON_WORDS.isdisjoint(_singulars(term.word)):
        return (1, len(term.word))
    return (2, len(term.word))


#: Words frequent in English news prose: a phrase is better woken by any other of its words.
#: Function words, then frequent news nouns, verbs and titles (as in "Commissioner X").
_COMMON_WORDS = frozenset(
    """the of and to a in is it that for on with as was at by be this are from or have an
    they which one you had not but what all were when we there can been has more if will no
    would who so about out up into them than its only other new some could time these two
    may then do first any my now such like our over man me even most made after also did
    many before must through back years where much your way well down should because each
    just those people how too little state good very make world still own see men work long
    get here between both life being under never day same another know while last might us
    great old year off come since against go came right used take three states himself few
    house use during without again place around however home small found thought went say
    part once general high upon school every does got united left number course war
    until always away something fact though water less public put think almost hand enough
    far took head yet government system better set told nothing night end why called
    eyes find going look asked later knew point next program city business give group toward
    young days let room president side social given present several order national possible
    rather second face per among form important often things looking early white case john
    become large big need four within felt along children saw best church ever least power
    development light thing seemed family interest want members mind country area others
    done turned although open god service certain kind problem began different door thus
    help means sense whole matter perhaps itself york times law human line above name
    example action company hands local show whether five history gave today either act
    feet across taken past quite anything seen having death week experience body word half
    really field am car words already themselves information tell together college shall
    money period held keep sure probably free seems political real behind clear
    said says according report reported reports officials official minister ministry
    market markets percent million billion trillion economy economic industry sector plan
    policy policies companies countries nation nations international global foreign
    security trade data technology research support deal talks statement spokesperson
    spokesman spokeswoman chief executive director chairman chair senator governor
    commissioner secretary prime central federal bank investors growth prices energy network
    service workers rules agency department council committee court party leader leaders
    monday tuesday wednesday thursday friday saturday sunday january february march april
    june july august september october november december month months""".split()
)


@dataclass(frozen=True, eq=False)
class _SpeakerWatch:
    speaker: Speaker
    phrases: tuple[_Phrase, ...]


@dataclass(frozen=True)
class _Wake:
    """What one present anchor word wakes up."""

    names: tuple[_Phrase, ...]
    #: Themes woken outright (their one-word phrase is the anchor word itself).
    themes: frozenset[int]
    #: Themes woken only once the other words of their multi-word phrase are present too.
    themes_if_present: tuple[tuple[tuple[_Term, ...], tuple[int, ...]], ...]


@dataclass(frozen=True, eq=False)
class _Group:
    """Alternative phrases of which one must be present."""

    phrases: tuple[_Phrase, ...]
    #: Every phrase needs its anchor word: if none of these is in the article, nor reached
    #: through a typo, the group cannot be met.
    anchor_forms: frozenset[str]
    anchor_terms: frozenset[_Term]

    @classmethod
    def of(cls, phrases: tuple[_Phrase, ...]) -> _Group:
        anchors = frozenset(p.terms[p.anchor] for p in phrases)
        return cls(phrases, frozenset(f for t in anchors for f in t.forms), anchors)

    @property
    def rarity(self) -> tuple[int, int]:
        """How rarely the group is likely met: the ``_rarity`` of its most common-looking
        anchor word. Themes are woken by their rarest group."""
        return min(_rarity(t) for t in self.anchor_terms)


@dataclass(frozen=True, eq=False)
class _ThemeWatch:
    theme: Theme
    #: Each must have a phrase present: the all_of groups and any_of (when not empty), the
    #: rarest-looking first: it is the one that wakes the theme up.
    groups: tuple[_Group, ...]
    none_of: tuple[_Phrase, ...]


@dataclass(frozen=True)
class _Occurrence:
    field: _Field
    start: int
    end: int
    score: int


# -- text preparation -------------------------------------------------------------------------


@dataclass(eq=False)
class _Field:
    """One article field, in the three aligned forms matching needs (same length, same offsets)."""

    name: str
    #: NFC text: what evidence quotes.
    text: str
    #: ``text`` with dotted acronyms collapsed ("U.S." -> "US  "): acronym case is read here.
    cased: str
    #: ``cased`` lower-cased and stripped of accents: words are found here.
    folded: str
    words: set[str]
    _layout: _Layout | None = field(default=None, repr=False)

    @property
    def layout(self) -> _Layout:
        if self._layout is None:
            self._layout = _Layout(self.text)
        return self._layout


#: The fields matched, in the order a reader meets them (and evidence is listed).
_FIELD_NAMES = ("title", "summary", "content")


def _fields(article: Article) -> list[_Field]:
    raws = [(name, getattr(article, name)) for name in _FIELD_NAMES]
    return [_prepare(name, raw) for i, (name, raw) in enumerate(raws) if raw and not _repeated(i, raws)]


def _repeated(i: int, raws: list[tuple[str, str]]) -> bool:
    """Feeds often repeat the summary as (the start of) the content: a field found whole inside
    a longer one, or equal to an earlier one, adds nothing to match."""
    raw = raws[i][1]
    return any(j != i and raw in other and (len(other) > len(raw) or j < i) for j, (_, other) in enumerate(raws))


def _prepare(name: str, raw: str) -> _Field:
    text = raw if raw.isascii() else unicodedata.normalize("NFC", raw)
    cased = _collapse_dotted_acronyms(text)
    folded = _fold(cased)
    return _Field(name, text, cased, folded, _word_set(folded))


#: Character -> " " for every ASCII character that is not part of a word (what ``_WORD`` skips).
#: On ASCII text ``str.translate`` with it runs in C at memcpy-like speed, and splitting the
#: result is several times faster than ``_WORD.findall``; it gives the same words.
_WORD_BREAKS: dict[int, str] = {c: " " for c in range(128) if not chr(c).isalnum()}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
#: Character -> its folded form, filled as characters are first seen (bounded by Unicode).
_FOLDED_CHARS: dict[str, str] = {}


def _fold(text: str) -> str:
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


def _word_set(folded: str) -> set[str]:
    """The distinct words of folded text (maximal runs of letters and digits)."""
    if not folded.isascii():
        if any(ch.isalnum() for ch in set(_NON_ASCII.findall(folded))):
            return set(_WORD.findall(folded))
        # Non-ASCII punctuation only (’ — “): as "?" it stays a word break, and the text ASCII.
        folded = folded.encode("ascii", "replace").decode("ascii")
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


def _collapse_dotted_acronyms(text: str) -> str:
    """ "U.S." -> "US  ", padded so offsets stay valid; the contract treats both alike."""
    if _DOTTED_HINT.search(text) is None:
        return text
    return _DOTTED_ACRONYM.sub(lambda m: m.group().replace(".", "").ljust(len(m.group())), text)


def _split_config_phrase(phrase: str) -> tuple[list[str], list[str]]:
    """The words of a configured name or phrase (case kept) and the separators between them."""
    text = _collapse_dotted_acronyms(unicodedata.normalize("NFC", phrase.strip()))
    matches = list(_WORD.finditer(text))
    gaps = [text[a.end() : b.start()] for a, b in itertools.pairwise(matches)]
    return [m.group() for m in matches], gaps


def _forms(word: str, *, acronym: str | None, plural: bool) -> set[str]:
    if acronym:
        return {word, word + "s"}  # "GPUs"; the case check happens on the text
    if not plural:
        return {word}
    return {word, word + "s", word + "es", *_singulars(word)}


def _singulars(word: str) -> tuple[str, ...]:
    """R8: singular/plural means only adding or dropping -s/-es."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith("ss"):
        return ()
    return (word[:-1], word[:-2]) if word.endswith("es") else (word[:-1],)


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


# -- word-level comparisons -------------------------------------------------------------------


def _find_word(text: str, word: str) -> Iterator[int]:
    """Start offsets of ``word`` as a whole word (not inside a longer one) in ``text``."""
    n, end = len(word), len(text)
    i = text.find(word)
    while i != -1:
        j = i + n
        if (i == 0 or not text[i - 1].isalnum()) and (j == end or not text[j].isalnum()):
            yield i
        i = text.find(word, i + 1)


def _word_score(term: _Term, f: _Field, start: int, end: int) -> int | None:
    """100 for an exact (or plural) match, the typo similarity for a tolerated typo, else None."""
    if term.acronym:
        cased = f.cased[start:end]
        return 100 if cased in (term.acronym, term.acronym + "s") else None
    word = f.folded[start:end]
    if word in term.forms:
        return 100
    return _typo_score(term, word) if term.typo_bases else None


def _typo_score(term: _Term, word: str) -> int | None:
    """Similarity (0-100) when ``word`` is one letter dropped, added, changed or swapped away from
    the term (plural-tolerant for theme words) and the watch's threshold allows it."""
    variants = (word, *_singulars(word)) if term.plural else (word,)
    best: int | None = None
    for variant in variants:
        for base in term.typo_bases:
            if OSA.distance(variant, base, score_cutoff=1) != 1:
                continue
            score = round(100 * (1 - 1 / max(len(variant), len(base))))
            if term.min_similarity is not None and score < term.min_similarity:
                continue
            best = score if best is None else max(best, score)
    return best


def _extend(f: _Field, phrase: _Phrase, idx: int, start: int, end: int, score: int) -> _Occurrence | None:
    """Grow a match of ``phrase.terms[idx]`` at [start, end) into the whole phrase, or None."""
    scores = [score]
    pos = end
    for term in phrase.terms[idx + 1 :]:
        m = _NEXT_WORD.match(f.folded, pos)
        if m is None or not _gap_ok(phrase, m.group(1)):
            return None
        word_score = _word_score(term, f, m.start(2), m.end(2))
        if word_score is None:
            return None
        scores.append(word_score)
        pos = m.end(2)
    phrase_end, pos = pos, start
    for term in reversed(phrase.terms[:idx]):
        word_start, word_end = _previous_word(f.folded, pos)
        if word_start == word_end or not _gap_ok(phrase, f.folded[word_end:pos]):
            return None
        word_score = _word_score(term, f, word_start, word_end)
        if word_score is None:
            return None
        scores.append(word_score)
        pos = word_start
    # A name tolerates one typo in all; theme words each tolerate their own.
    if phrase.is_name and sum(s < 100 for s in scores) > 1:
        return None
    return _Occurrence(f, pos, _visible_end(f, phrase_end), min(scores))


def _visible_end(f: _Field, end: int) -> int:
    """Extend an end offset over the padding of a collapsed "U.S." so evidence shows it whole."""
    while end < len(f.cased) and f.cased[end] == " " and not f.text[end].isspace():
        end += 1
    return end


def _outermost(occurrences: list[_Occurrence]) -> list[_Occurrence]:
    """Drop occurrences inside a longer one (alias "Zhu Scott" inside "Jen Zhu Scott")."""
    out: list[_Occurrence] = []
    # Field order, not id(field): evidence must come out the same in every process.
    for o in sorted(occurrences, key=lambda o: (_FIELD_NAMES.index(o.field.name), o.start, -o.end)):
        if not (out and out[-1].field is o.field and out[-1].start <= o.start and o.end <= out[-1].end):
            out.append(o)
    return out


def _previous_word(text: str, pos: int) -> tuple[int, int]:
    """(start, end) of the word before the separator that ends at ``pos``; empty if none.
    A plain scan: names are short, and a regex cannot search backwards."""
    end = pos
    while end > 0 and not text[end - 1].isalnum():
        end -= 1
    start = end
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    return start, end


def _gap_ok(phrase: _Phrase, gap: str) -> bool:
    # Theme phrases tolerate any punctuation between words ("U.S.-China"); names do not (R2).
    return not phrase.is_name or _NAME_GAP.fullmatch(gap) is not None or gap in phrase.odd_gaps


# -- hits ---------------------------------------------------------------------------------------


def _speaker_hit(
    watch: _SpeakerWatch,
    mentions: list[_Occurrence],
    everyone: dict[int, list[_Occurrence]],
    me: int,
) -> Hit:
    others = [o for key, occ in everyone.items() if key != me for o in occ]
    proofs: list[tuple[_Field, int]] = []
    for m in mentions:
        others_here = [(o.start, o.end) for o in others if o.field is m.field]
        own_here = [(o.start, o.end) for o in mentions if o.field is m.field]
        sentences = _attribution(m.field.layout, m.start, m.end, others_here, own_here)
        proofs.extend((m.field, s) for s in sentences)
    statement = bool(proofs)
    if not statement:
        proofs = [(m.field, m.field.layout.sentence_of(m.start)) for m in mentions]
    evidence = _sentence_evidence(proofs, mentions)
    return Hit(
        watch=watch.speaker.name,
        kind="speaker",
        statement=statement,
        score=max(m.score for m in mentions),
        evidence=evidence,
    )


def _theme_hit(watch: _ThemeWatch, scan: _Scan) -> Hit | None:
    """Every all_of group, and one any_of phrase if there are any, and no none_of phrase (R6, R10).

    Checked at word level first (cheap), then located, so most woken themes cost little."""
    if not all(any(scan.present(p) for p in g.phrases) for g in watch.groups):
        return None
    decisive: list[_Occurrence] = []
    for group in watch.groups:
        occurrences = [o for p in group.phrases if scan.present(p) for o in scan.locate(p)]
        if not occurrences:
            return None
        decisive.append(max(occurrences, key=lambda o: (o.score, -o.start)))
    if any(scan.present(p) and scan.locate(p) for p in watch.none_of):
        return None
    proofs = [(o.field, o.field.layout.sentence_of(o.start)) for o in decisive]
    return Hit(
        watch=watch.theme.name,
        kind="theme",
        statement=False,
        score=min(o.score for o in decisive),
        evidence=_sentence_evidence(proofs, decisive),
    )


def _sentence_evidence(proofs: list[tuple[_Field, int]], marks: list[_Occurrence]) -> tuple[Evidence, ...]:
    """One Evidence per distinct sentence (at most a few), highlighting ``marks`` inside it."""
    out: list[Evidence] = []
    for f, index in dict.fromkeys(proofs):
        start, end = f.layout.sentences[index]
        spans = [(o.start, o.end) for o in marks if o.field is f and start <= o.start and o.end <= end]
        out.append(_evidence(f, start, end, spans))
        if len(out) == _MAX_EVIDENCE_PER_HIT:
            break
    return tuple(out)


def _evidence(f: _Field, start: int, end: int, spans: list[tuple[int, int]]) -> Evidence:
    if end - start > _MAX_EVIDENCE_CHARS and spans:
        # A long sentence is cut to a window around its highlights, at word boundaries.
        margin = max(0, (_MAX_EVIDENCE_CHARS - (spans[-1][1] - spans[0][0])) // 2)
        lo, hi = max(start, spans[0][0] - margin), min(end, spans[-1][1] + margin)
        while lo > start and not f.text[lo - 1].isspace():
            lo -= 1
        while hi < end and not f.text[hi].isspace():
            hi += 1
        start, end = lo, hi
    return Evidence(
        field=f.name,
        text=f.text[start:end],
        spans=tuple(sorted({(s - start, e - start) for s, e in spans})),
    )


# -- sentences, quotations and speech attribution ---------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_BOUNDARY = re.compile(r"([.!?…])[.!?…]*[\"”’')\]]*(\s+)(?=[\"“‘«(\[]*[^\W_a-z])")
_QUOTE_MARK = re.compile(r"[“”\"‘’«»]")
_SENTENCE_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")
_ABBREVIATIONS = _words(
    """mr mrs ms dr prof st jr sr inc ltd co corp gen gov sen rep vs etc jan feb mar apr jun jul aug
    sep sept oct nov dec mt ft lt col capt sgt rev hon approx dept univ fig"""
)
#: After "U.S." these open a new sentence; other capitalised words ("U.S. Commerce") do not.
_SENTENCE_OPENERS = _words("he she it they we i the but and this that in a an his her their its there")
_OPENING_QUOTES = frozenset('“"‘«')
_CLOSING_QUOTES = frozenset('”"’»')
_DASHES = frozenset("-–—")

#: Reporting verbs whose subject is the speaker ("X said", "X has warned", "X and Y argue").
_SPEECH_VERBS = _words(
    """said says say stated states told tells tell argued argues argue warned warns warn
    emphasised emphasises emphasized emphasizes emphasise emphasize stressed stresses stress
    urged urges urge wrote writes write added adds add replied replies reply explained explains
    noted notes insisted insists insist claimed claims asserted asserts declared declares
    remarked commented suggested suggests predicted predicts cautioned cautions contended
    contends maintained maintains acknowledged admitted admits conceded concedes countered
    counters responded answered asked asks recalled recalls observed tweeted testified"""
)
#: "X is warning", "X has been saying".
_SPEECH_ING = _words(
    """saying telling arguing warning urging writing adding insisting claiming stressing
    emphasising emphasizing noting explaining cautioning predicting suggesting"""
)
_CALL_FOR = _words("call calls called calling")
_BE = _words("is was are were been")
#: Verbs that take the speaker after them in an inverted attribution ("..., said X").
_INVERTING_VERBS = _words(
    """said says added adds wrote writes argued argues warned warns noted notes explained
    explains replied asked continued insisted insists stated stressed emphasised emphasized
    cautioned countered observed recalled remarked tweeted concluded predicted"""
)
#: Words that may stand between the subject and its verb: "X has also said", "X on Monday said".
_ADVERBIALS = _words(
    """has have had also again later then earlier previously once recently already herself
    himself themselves today yesterday tonight on last this week month year morning afternoon
    evening night long often still too in at a an the statement interview speech letter post
    blog event conference summit forum meeting monday tuesday wednesday thursday friday saturday
    sunday first just even since twice now january february march april june july august
    september october november december"""
)
#: At most this many asides between a subject and its verb ("X, 61, a former operator, said").
_MAX_ASIDES = 3
#: Words that open a further aside after a comma: relative pronouns, articles, "of Phoenix".
_ASIDE_OPENERS = _words("who whom whose which where a an the his her their its of from")
#: "X and his co-founder said": a determiner opening the second subject.
_COORDINATED_DETERMINERS = _words("his her their its the a an other several two three")
_AUXILIARIES = _words("is was are were be been has have had will would can could may might should do does did")
_NOT_ADVERBS = _words("only family early daily july italy")
#: Words that start a clause, so a name right after them can be its subject.
_CLAUSE_OPENERS = _words(
    """and but or nor that as when while after before because since although though where
    whereas if unless once then so yet meanwhile however also now later separately"""
)
#: A name right after these is their object, not a subject ("founded by X", "met X").
_NOT_BEFORE_SUBJECT = _words(
    """by of with from to for about at on in into onto upon over under between among amongst
    alongside beside besides beyond without within toward towards around through throughout
    despite except regarding concerning including excluding featuring like unlike than against
    versus vs via per plus include includes included met meet meets told asked thanked saw
    beat chose took gave sent brought interviewed is was are were be been being"""
)
#: Lower-case words of a title before a name ("Power Dynamics co-founder X", "the lab's chief X").
_TITLE_WORDS = _words(
    """co founder cofounder chief executive ceo cto cfo coo chair chairman chairwoman
    chairperson president director head minister secretary investor analyst economist
    entrepreneur author professor researcher scientist spokesperson spokeswoman spokesman
    partner adviser advisor officer deputy vice senior former veteran managing general lead
    principal venture capitalist billionaire activist commissioner regulator governor senator
    ambassador envoy negotiator representative manager strategist boss leader expert engineer
    lawyer founding the a an its their his her s"""
)
_TIME_WORDS = _words(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december"""
)
_PRONOUNS = frozenset(("he", "she"))
#: A capitalised run right after these names a thing ("the Volta Foundry line").
_THING_DETERMINERS = _words("the a an this that these those its their our your")
#: Words that start a sentence with a capital without being part of a name ("In Stockholm").
_FUNCTION_WORDS = _SENTENCE_OPENERS | _NOT_BEFORE_SUBJECT | _CLAUSE_OPENERS
_CONNECTIVES = _words("but and however later then also separately meanwhile")
#: Capitalised words that mark a place, organisation or date rather than a person.
_NOT_PERSON = (
    _words(
        """united states kingdom nations union european hong kong new york zealand delhi san
    francisco los angeles silicon valley south north east west southeast middle central asia
    asian pacific atlantic white house street wall downing capitol hill department ministry
    council commission committee agency bureau office board bank fund group holdings capital
    partners labs lab laboratory inc ltd corp corporation company co dynamics technologies
    technology systems foundation institute university college school academy association
    society forum summit conference congress parliament senate court review times news post
    journal daily tribune reuters bloomberg digital economic world global international
    national federal republic party cloud security energy media network centre center
    authority exchange standards western eastern northern southern foundry works plant grid
    power electric utilities motors airlines hospital museum airport station port park square
    road avenue river city county province region island islands act treaty accord alliance
    prize award cup league festival expo project programme program initiative public service services"""
    )
    | _TIME_WORDS
)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str
    lower: str

    @property
    def is_word(self) -> bool:
        return self.text[0].isalnum()


class _Layout:
    """Sentences and quotations of one field, computed on first use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.quotes = _quote_spans(text)
        self.sentences = _split_sentences(text, self.quotes)
        self._starts = [s for s, _ in self.sentences]
        self._tokens: dict[int, list[_Token]] = {}

    def sentence_of(self, pos: int) -> int:
        return max(0, bisect.bisect_right(self._starts, pos) - 1)

    def in_quote(self, pos: int) -> bool:
        return any(a < pos < b for a, b in self.quotes)

    def tokens(self, index: int) -> list[_Token]:
        if index not in self._tokens:
            start, end = self.sentences[index]
            self._tokens[index] = [
                _Token(m.start(), m.end(), m.group(), m.group().lower())
                for m in _SENTENCE_TOKEN.finditer(self.text, start, end)
            ]
        return self._tokens[index]


def _quote_spans(text: str) -> list[tuple[int, int]]:
    """[open, close] offsets of quotations: “…”, "…", «…», and ‘…’ (not apostrophes)."""
    spans: list[tuple[int, int]] = []
    double_open: int | None = None
    single_open: int | None = None
    for m in _QUOTE_MARK.finditer(text):
        i, ch = m.start(), m.group()
        if ch in "“«" or (ch == '"' and double_open is None):
            if double_open is None:
                double_open = i
        elif ch in '”»"':
            if double_open is not None:
                spans.append((double_open, i))
                double_open = None
        elif ch == "‘" and single_open is None and (i == 0 or not text[i - 1].isalnum()):
            single_open = i
        elif ch == "’" and single_open is not None and (i + 1 == len(text) or not text[i + 1].isalnum()):
            spans.append((single_open, i))
            single_open = None
    return spans


def _split_sentences(text: str, quotes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentence spans: a full stop, ! or ? (and closing quotes) then space and a capital or
    digit, unless the stop ends an abbreviation or initial, or sits inside a quotation."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        gap_start = m.start(2)
        if quotes and any(a < gap_start < b for a, b in quotes):
            continue
        if m.group(1) == "." and _abbreviation_ends(text, m):
            continue
        spans.append((start, gap_start))
        start = m.end()
    spans.append((start, len(text.rstrip())))
    return spans


def _abbreviation_ends(text: str, m: re.Match[str]) -> bool:
    """The full stop ends an abbreviation or an initial, not a sentence."""
    start = m.start()
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    word = text[start : m.start()]
    if word.lower() in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():
        # An initial ("J. Smith") or the end of "U.S."; only the latter may also end a sentence.
        dotted = start >= 2 and text[start - 1] == "." and text[start - 2].isalpha()
        following = _WORD.match(text, m.end())
        return not (dotted and following is not None and following.group().lower() in _SENTENCE_OPENERS)
    return False


def _attribution(
    layout: _Layout,
    start: int,
    end: int,
    others: list[tuple[int, int]],
    own: list[tuple[int, int]],
) -> list[int]:
    """Indexes of the sentences that attribute speech to the speaker named at [start, end),
    or [] when the mention is not a statement.

    The speaker speaks when, outside a quotation (R5: a name inside someone else's quote is a
    mention only): the name is the subject of a reporting verb, possibly after an appositive or
    adverbials ("X, CEO of Y, said on Monday"); a reporting verb inverts after a quote or comma
    ("…,” said X); "according to X"; "in an interview" with X as subject; X introduces a quote
    with a colon; or the next sentence opens with He/She + reporting verb and no other named
    person comes between.
    """
    if layout.in_quote(start):
        return []
    index = layout.sentence_of(start)
    tokens = layout.tokens(index)
    i = next((k for k, t in enumerate(tokens) if t.start >= start), len(tokens))
    j = next((k for k, t in enumerate(tokens) if t.start >= end), len(tokens))
    if _inverted_after(tokens, i) or _according_to(tokens, i) or _relative_clause_speaks(tokens, j):
        return [index]
    if _subject_position(tokens, i) and not _possessive(tokens, j):
        sentence = layout.text[slice(*layout.sentences[index])].lower()
        if _subject_speaks(tokens, i, j) or "in an interview" in sentence or _introduces_quote(tokens, j):
            return [index]
    if (
        index + 1 < len(layout.sentences)
        and _pronoun_speaks(layout, index + 1)
        # The speaker's own He/She, unless someone else named in the sentence may own it: anyone
        # after the name, and anyone before it when the name is not the subject ("Anna Berg
        # rejected a request from X. She said …").
        and not _person_between(layout, start, end, index, others, own, before=not _subject_position(tokens, i))
    ):
        return [index, index + 1]
    return []


def _subject_position(tokens: list[_Token], i: int) -> bool:
    """The name at ``tokens[i]`` can be a clause subject: it opens the sentence or a clause,
    perhaps after a title ("Power Dynamics CEO X"), and is not the object of a preposition or
    verb ("founded by X", "met X")."""
    if i == 0:
        return True
    before = tokens[i - 1]
    if before.lower in _NOT_BEFORE_SUBJECT:
        return False
    if before.is_word and before.text.islower() and before.lower.endswith(("ed", "ing")):
        return False
    k = i - 1
    while k >= 0 and _title_token(tokens, k):
        if tokens[k].lower in _TIME_WORDS and k > 0 and tokens[k - 1].lower in ("on", "in", "last", "this"):
            return True  # "On Thursday X said"
        k -= 1
    if k < 0 or not tokens[k].is_word:
        return True
    word = tokens[k].lower
    return word in _CLAUSE_OPENERS or word not in _NOT_BEFORE_SUBJECT


def _title_token(tokens: list[_Token], k: int) -> bool:
    t = tokens[k]
    if not t.is_word:
        # Hyphens inside titles ("co-founder") and possessive apostrophes ("the lab's chief").
        return t.text in _DASHES or t.text in "'’"
    if t.lower in _NOT_BEFORE_SUBJECT:
        return False
    # A possessor is part of the title too: "the company's founder", "the lab's chief".
    return t.text[0].isupper() or t.lower in _TITLE_WORDS or _possessive(tokens, k + 1)


def _possessive(tokens: list[_Token], j: int) -> bool:
    """ "X's lab said": the name only modifies the subject."""
    return (
        j + 1 < len(tokens)
        and tokens[j].text in "'’"
        and tokens[j + 1].lower == "s"
        and tokens[j + 1].start == tokens[j].end
    )


def _subject_speaks(tokens: list[_Token], i: int, j: int) -> bool:
    """A reporting verb follows the subject named at ``tokens[i:j]``: right away, after a
    coordinated subject, or after one or more asides ("X, 61, a former operator who …, said").
    A name that is itself the aside ("The minister, X, said") is the subject too."""
    j = _skip_coordinated_name(tokens, j)
    if j < len(tokens) and tokens[j].text in ",(" + "".join(_DASHES):
        opener = tokens[j].text
        appositive = i > 0 and opener != "(" and tokens[i - 1].text == opener
        if appositive and _speech_verb_at(tokens, _skip_adverbials(tokens, j + 1)):
            return True
        for _ in range(_MAX_ASIDES):
            close = _skip_aside(tokens, j)
            if close is None:
                return False
            # "X, the minister, and Y said": a coordinated subject may follow the aside.
            if _speech_verb_at(tokens, _skip_adverbials(tokens, _skip_coordinated_name(tokens, close))):
                return True
            # A further comma-delimited aside only if it reads as one ("…, which runs …,"), not
            # as the sentence going on ("X, the CEO, has raised prices, said the governor").
            if tokens[close - 1].text != "," or close >= len(tokens) or not _opens_aside(tokens[close]):
                return False
            j = close - 1
        return False
    return _speech_verb_at(tokens, _skip_adverbials(tokens, j))


def _opens_aside(t: _Token) -> bool:
    return t.lower in _ASIDE_OPENERS or t.text.isdigit()


def _relative_clause_speaks(tokens: list[_Token], j: int) -> bool:
    """ "X, who said last week that …": the speaker is the relative clause's subject, wherever
    X stands in the sentence ("Guests included X, who said …")."""
    return (
        j + 1 < len(tokens)
        and tokens[j].text == ","
        and tokens[j + 1].lower == "who"
        and _speech_verb_at(tokens, _skip_adverbials(tokens, j + 2))
    )


def _skip_coordinated_name(tokens: list[_Token], j: int) -> int:
    """Past "and Tobias Wrenfield" in "X and Tobias Wrenfield said", or past a short noun phrase
    with a determiner when a reporting verb follows ("X and her Finnish counterpart argued"):
    both are subjects."""
    if j < len(tokens) and tokens[j].lower == "and":
        k = j + 1
        while k < len(tokens) and tokens[k].is_word and tokens[k].text[0].isupper():
            k += 1
        if k > j + 1:
            return k
        if k < len(tokens) and tokens[k].lower in _COORDINATED_DETERMINERS:
            k += 1
            for _ in range(4):
                if k < len(tokens) and _speech_verb_at(tokens, _skip_adverbials(tokens, k)):
                    return k
                t = tokens[k]
                if t.lower in _AUXILIARIES or not (t.is_word or t.text in _DASHES):
                    break  # "X and the board were told": passive, not speech
                k += 1
    return j


def _skip_aside(tokens: list[_Token], j: int) -> int | None:
    """The index after an appositive or parenthesis opening at ``tokens[j]``, or None when it
    never closes or holds a reporting verb (someone else's: "X, the minister said, …")."""
    closer = {"(": ")"}.get(tokens[j].text, tokens[j].text)
    relative = False
    for k in range(j + 1, min(len(tokens), j + 31)):
        if tokens[k].text == closer or (closer in _DASHES and tokens[k].text in _DASHES):
            return k + 1
        # Inside "who …" the verb is the subject's own ("X, the adviser who has warned …, said").
        relative = relative or tokens[k].lower == "who"
        if tokens[k].lower in _SPEECH_VERBS and not relative:
            return None
    return None


def _skip_adverbials(tokens: list[_Token], k: int) -> int:
    limit = k + 6
    while k < min(len(tokens), limit):
        word = tokens[k].lower
        if (
            word in _ADVERBIALS
            or (word.endswith("ly") and len(word) > 3 and word not in _NOT_ADVERBS)
            or word.isdigit()  # "X in 2019 said", "X on 3 March told"
        ):
            k += 1
        else:
            break
    return k


def _speech_verb_at(tokens: list[_Token], k: int) -> bool:
    if k >= len(tokens):
        return False
    word = tokens[k].lower
    after = tokens[k + 1].lower if k + 1 < len(tokens) else ""
    if word in _CALL_FOR:
        return after == "for"
    if word in _SPEECH_VERBS:
        return True
    if word in _BE:
        if after in _CALL_FOR:
            return k + 2 < len(tokens) and tokens[k + 2].lower == "for"
        return after in _SPEECH_ING
    return False


def _title_chain_start(tokens: list[_Token], i: int, *, comma: bool) -> int:
    """Index of the first token of the title before the name at ``tokens[i]``
    ("the lab's chief executive, X"): capitalised words, title words, "of" + Name."""
    k = i - 1
    if comma and k >= 0 and tokens[k].text == ",":
        k -= 1
    while k >= 0 and k >= i - 9:
        t = tokens[k]
        if _title_token(tokens, k) or (t.lower == "of" and k + 1 < i and tokens[k + 1].text[0].isupper()):
            k -= 1
        else:
            break
    return k + 1


def _inverted_after(tokens: list[_Token], i: int) -> bool:
    """ "“…,” said X", "…, wrote Power Dynamics co-founder X", or "“…” — X"."""
    if i >= 2 and tokens[i - 1].text in _DASHES and tokens[i - 2].text in _CLOSING_QUOTES:
        return True
    k = _title_chain_start(tokens, i, comma=True) - 1
    if k < 0 or tokens[k].lower not in _INVERTING_VERBS:
        return False
    return k == 0 or not tokens[k - 1].is_word


def _according_to(tokens: list[_Token], i: int) -> bool:
    k = _title_chain_start(tokens, i, comma=False) - 1
    return k >= 1 and tokens[k].lower == "to" and tokens[k - 1].lower == "according"


def _introduces_quote(tokens: list[_Token], j: int) -> bool:
    """ "X: “…”" or "X put it bluntly: “…”" — a colon right before a quotation."""
    for k in range(j, min(len(tokens) - 1, j + 9)):
        t = tokens[k]
        if t.text == ":":
            return tokens[k + 1].text in _OPENING_QUOTES
        if not (t.is_word and t.text.islower()):
            return False
    return False


def _pronoun_speaks(layout: _Layout, index: int) -> bool:
    """The sentence opens with He/She + reporting verb, or with a quote then "she said"."""
    tokens = layout.tokens(index)
    k = 0
    while k < len(tokens) and (tokens[k].lower in _CONNECTIVES or tokens[k].text == ","):
        k += 1
    if k < len(tokens) and tokens[k].lower in _PRONOUNS:
        return _speech_verb_at(tokens, _skip_adverbials(tokens, k + 1))
    if k < len(tokens) and tokens[k].text in _OPENING_QUOTES:
        quote_end = next((b for a, b in layout.quotes if a == tokens[k].start), None)
        if quote_end is None:
            return False
        q = next((n for n, t in enumerate(tokens) if t.start > quote_end), len(tokens))
        if q < len(tokens) and tokens[q].text == ",":
            q += 1
        if q + 1 < len(tokens) and tokens[q].lower in _PRONOUNS:
            return _speech_verb_at(tokens, _skip_adverbials(tokens, q + 1))
        return q + 1 < len(tokens) and tokens[q].lower in _INVERTING_VERBS and tokens[q + 1].lower in _PRONOUNS
    return False


def _person_between(
    layout: _Layout,
    start: int,
    end: int,
    index: int,
    others: list[tuple[int, int]],
    own: list[tuple[int, int]],
    *,
    before: bool,
) -> bool:
    """Another named person is in the mention's sentence after it (or, with ``before``, before
    it), so a He/She in the next sentence may be theirs: another tracked speaker, or two or
    more capitalised words that read as a name ("Ingrid Solberg", not "United States",
    "Northvane Labs" or "the Volta Foundry line")."""
    sentence_start, sentence_end = layout.sentences[index]
    lo = sentence_start if before else end
    if any(lo <= s < sentence_end and not start <= s < end for s, _ in others):
        return True
    # Maximal runs of capitalised words, each judged whole ("Nordic Compute Forum" is no person
    # for starting like "Nordic Compute"), with the word before the run.
    runs: list[tuple[str, list[_Token]]] = []
    run: list[_Token] | None = None
    word_before = ""
    for t in layout.tokens(index):
        if (t.start < end and not (before and t.start < start)) or any(a <= t.start < b for a, b in own):
            run, word_before = None, ""
            continue
        if t.is_word and t.text[0].isupper() and not t.text.isupper():
            if run is None or layout.text[run[-1].end : t.start].strip():
                run = []
                runs.append((word_before, run))
            run.append(t)
        else:
            run = None
        word_before = t.lower
    for word_before, names in runs:
        # A determiner marks the name of a thing ("the Volta Foundry line"), not of a person;
        # a capitalised function word only opens the sentence ("In Stockholm").
        if word_before in _THING_DETERMINERS or names[0].lower in _THING_DETERMINERS:
            continue
        if names[0].lower in _FUNCTION_WORDS:
            names = names[1:]
        if len(names) >= 2 and _NOT_PERSON.isdisjoint(n.lower for n in names):
            return True
    return False
