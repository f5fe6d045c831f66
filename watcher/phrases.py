"""The phrase index: configured names and theme phrases compiled once, found in articles fast.
Pure: no I/O, no clock; the only state kept between calls is a per-word memo that never
changes a result.

Every name, alias and theme phrase is split into words ("terms") normalised like article text
(``watcher.text``): NFC, dotted acronyms collapsed, case-folded, accents stripped. Terms are
shared between phrases. What a term matches (docs/matching.md, "Words"):

* a name word: that word, or one typo away in a long enough name (never in a part of 3 letters
  or fewer);
* a theme word: the word and its regular inflections (-s/-es/-ies, -ed/-d/-ied, -ing, with a
  final e dropped or a final consonant doubled), or one typo away in a word of 8+ letters;
* a theme word written ``word*``: every word that starts with it ("chip*": chipmakers);
* a theme phrase written ``=phrase``: its words exactly as written (case aside), no other form;
* a short all-caps acronym ("US", "GPU"): only that word in capitals, dotted or with a plural s.

A term's exact forms are a set, so one C-level set intersection with an article's words finds
them; words that reach a term another way (a typo, a ``word*`` prefix) are looked up once and
memoised. A phrase is present when all its terms are; it is then located word by word.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from watcher.text import Field, fold, split_phrase

#: Between name parts only whitespace (NBSP included), hyphens and dashes: "Zhu, Scott" is
#: someone else's citation form.
_NAME_GAP = re.compile(r"[\s\u00ad\u2010-\u2015\u2212-]+")
_NEXT_WORD = re.compile(r"([\W_]+)([^\W_]+)")
_HYPHENS = "-\u2010\u2011"
#: An apostrophe joining a word to more letters than a possessive s: "Xi'an", "N'Djamena".
_APOSTROPHE_WORD = re.compile(r"['’](?![sS]\b)[^\W\d_]")
#: One-letter typos are tolerated in theme words and names of this many characters.
TYPO_MIN_LENGTH = 8
#: Never a typo inside a name part this short (nor, by the same token, a theme word).
TYPO_MIN_PART = 4
#: Words per generation of the reach memo: at most twice this many are kept (~20 MB).
MAX_MEMO_WORDS = 100_000
_VOWELS = frozenset("aeiou")


@dataclass(frozen=True, eq=False)
class Term:
    """One configured word, shared by every phrase that uses it (hashed by identity)."""

    word: str
    #: Folded spellings that match exactly (theme words: with their inflections).
    forms: frozenset[str]
    #: "US" for a 2-4 letter all-caps word: the text must have it in capitals.
    acronym: str | None
    #: ``word*``: any word starting with ``word`` matches.
    prefix: bool
    #: A theme word: its inflections count, and a typo is measured on singular and plural.
    inflect: bool
    #: Spellings a one-letter typo is measured against; empty when typos are not tolerated.
    typo_bases: tuple[str, ...]
    #: The watch's threshold; None means the contract's rule (any single edit).
    min_similarity: int | None


@dataclass(frozen=True, eq=False)
class Phrase:
    label: str
    terms: tuple[Term, ...]
    is_name: bool
    #: Separators a configured name itself uses that names would not allow (e.g. "O'Brien").
    odd_gaps: tuple[str, ...]
    #: Index of the term the phrase is woken by and located from (see ``_anchor_index``).
    anchor: int
    #: False for vetoes: "sponsored" is not found inside "state-sponsored".
    in_compounds: bool = True


@dataclass(frozen=True)
class Occurrence:
    field: Field
    start: int
    end: int
    #: 100 for an exact match (inflections and ``word*`` included), lower for a tolerated typo.
    score: int


class PhraseIndex:
    """The terms and phrases of every watch, and what each article word reaches."""

    def __init__(self) -> None:
        self._terms: dict[tuple[object, ...], Term] = {}
        self._phrases: dict[tuple[object, ...], Phrase] = {}
        self._deletes: dict[str, list[Term]] = {}
        self._prefixes: dict[int, dict[str, list[Term]]] = {}
        self._typo_lengths = (0, -1)
        # The reach memo: word -> the terms it reaches through a typo or a prefix (mostly
        # none), in two generations so that memory stays bounded (see ``_learn``).
        self._memo: dict[str, tuple[Term, ...]] = {}
        self._memo_old: dict[str, tuple[Term, ...]] = {}
        #: The words of ``_memo`` that reach a term: one set intersection finds an article's.
        self._memo_reaching: set[str] = set()

    # -- compile -----------------------------------------------------------------------------

    def name(self, name: str, threshold: int | None) -> Phrase:
        words, gaps = split_phrase(name)
        # Typos only in names of 8+ characters, and never inside a part of <= 3 letters.
        may_typo = threshold < 100 if threshold is not None else len(name.strip()) >= TYPO_MIN_LENGTH
        terms = tuple(
            self._term(
                fold(w),
                acronym=None,
                inflect=False,
                prefix=False,
                fuzzy=may_typo and len(w) >= TYPO_MIN_PART,
                threshold=threshold,
            )
            for w in words
        )
        odd_gaps = tuple(sorted({g for g in gaps if not _NAME_GAP.fullmatch(g)}))
        return self._phrase(name, terms, is_name=True, odd_gaps=odd_gaps, in_compounds=True)

    def theme(self, phrase: str, threshold: int | None, *, in_compounds: bool = True) -> Phrase:
        text = phrase.strip()
        exact = text.startswith("=")
        prefix = text.endswith("*")
        words, _ = split_phrase(text.lstrip("=").rstrip("*"))
        terms = []
        for n, w in enumerate(words):
            # Short all-caps acronyms match only as that uppercase word ("us" is not "US").
            acronym = w if 2 <= len(w) <= 4 and w.isalpha() and w.isupper() else None
            folded = fold(w)
            if exact:
                fuzzy = False
            elif threshold is not None:
                fuzzy = threshold < 100 and len(folded) >= TYPO_MIN_PART
            else:
                fuzzy = len(folded) >= TYPO_MIN_LENGTH
            is_prefix = prefix and n == len(words) - 1
            terms.append(
                self._term(
                    folded,
                    acronym=None if is_prefix else acronym,
                    inflect=not exact,
                    prefix=is_prefix,
                    fuzzy=fuzzy and not acronym and not is_prefix,
                    threshold=threshold,
                )
            )
        return self._phrase(phrase, tuple(terms), is_name=False, odd_gaps=(), in_compounds=in_compounds)

    def _term(
        self,
        word: str,
        *,
        acronym: str | None,
        inflect: bool,
        prefix: bool,
        fuzzy: bool,
        threshold: int | None,
    ) -> Term:
        key = (word, acronym, inflect, prefix, fuzzy, threshold if fuzzy else None)
        if key not in self._terms:
            if acronym:
                forms = {word, word + "s"}  # "GPUs"; the case check happens on the text
            elif inflect and not prefix:
                forms = inflections(word)
            else:
                forms = {word}
            bases = (word, *_singulars(word)) if inflect and not acronym else (word,)
            term = Term(
                word=word,
                forms=frozenset(forms),
                acronym=acronym,
                prefix=prefix,
                inflect=inflect,
                typo_bases=bases if fuzzy else (),
                min_similarity=threshold if fuzzy else None,
            )
            self._terms[key] = term
            for base in term.typo_bases:
                for variant in {base, *_deletions(base)}:
                    self._deletes.setdefault(variant, []).append(term)
            if prefix:
                self._prefixes.setdefault(len(word), {}).setdefault(word, []).append(term)
            if term.typo_bases:
                lengths = [len(b) for b in term.typo_bases]
                low, high = self._typo_lengths
                if low > high:
                    low, high = min(lengths) - 1, max(lengths) + 3
                self._typo_lengths = (min(low, min(lengths) - 1), max(high, max(lengths) + 3))
        return self._terms[key]

    def _phrase(
        self,
        label: str,
        terms: tuple[Term, ...],
        *,
        is_name: bool,
        odd_gaps: tuple[str, ...],
        in_compounds: bool,
    ) -> Phrase:
        key = (is_name, tuple(id(t) for t in terms), odd_gaps, in_compounds)
        if key not in self._phrases:
            self._phrases[key] = Phrase(label, terms, is_name, odd_gaps, _anchor_index(terms), in_compounds)
        return self._phrases[key]

    # -- per article -------------------------------------------------------------------------

    def scan(self, fields: list[Field]) -> Scan:
        words: set[str] = set().union(*(f.words for f in fields))
        return Scan(fields, words, self._reaching(words))

    def _reaching(self, words: set[str]) -> dict[str, tuple[Term, ...]]:
        """The article's words that reach terms through a typo or a prefix, with those terms."""
        if not self._deletes and not self._prefixes:
            return {}
        if len(self._memo) >= MAX_MEMO_WORDS:
            # Memory stays bounded without a per-word cost: the memo becomes the old generation
            # and a new one starts; a word still in use is moved over from the old one when next
            # seen, unused ones go with the old generation when it is dropped.
            self._memo_old, self._memo, self._memo_reaching = self._memo, {}, set()
        memo, old, reaching = self._memo, self._memo_old, self._memo_reaching
        for word in words.difference(memo):
            terms = old.get(word)
            if terms is None:
                terms = self._lookup(word)
            memo[word] = terms
            if terms:
                reaching.add(word)
        # The memo is read here, not re-read later, so a concurrent turnover cannot hide a word.
        return {w: memo[w] for w in words & reaching}

    def _lookup(self, word: str) -> tuple[Term, ...]:
        found: dict[Term, None] = {}
        for n, prefixes in self._prefixes.items():
            if len(word) >= n:
                for term in prefixes.get(word[:n], ()):
                    found[term] = None
        low, high = self._typo_lengths
        if low <= len(word) <= high:
            for variant in (word, *_singulars(word)):
                for key in {variant, *_deletions(variant)}:
                    for term in self._deletes.get(key, ()):
                        if term not in found and typo_score(term, word) is not None:
                            found[term] = None
        return tuple(found)


class Scan:
    """One article being matched: its fields and words, with phrases checked on demand, once."""

    def __init__(self, fields: list[Field], words: set[str], reaching: dict[str, tuple[Term, ...]]) -> None:
        self.fields = fields
        self.words = words
        #: Words that reach terms only through a typo or a prefix, with those terms.
        self.reaching = reaching
        #: Every term reached through a typo or a prefix.
        self.reached: set[Term] = set().union(*reaching.values())
        self._present: dict[Phrase, bool] = {}
        self._located: dict[Phrase, list[Occurrence]] = {}

    def has(self, term: Term) -> bool:
        return not self.words.isdisjoint(term.forms) or term in self.reached

    def present(self, phrase: Phrase) -> bool:
        """Every word of the phrase is in the article, exactly or through a typo or prefix."""
        known = self._present.get(phrase)
        if known is None:
            known = self._present[phrase] = all(self.has(t) for t in phrase.terms)
        return known

    def locate(self, phrase: Phrase) -> list[Occurrence]:
        """Every occurrence of the phrase, in reading order (empty when it is not present)."""
        located = self._located.get(phrase)
        if located is None:
            located = self._located[phrase] = (
                [o for f in self.fields for o in self._locate_in(f, phrase)] if self.present(phrase) else []
            )
        return located

    def _locate_in(self, f: Field, phrase: Phrase) -> list[Occurrence]:
        found: dict[int, Occurrence] = {}
        idx = phrase.anchor
        term = phrase.terms[idx]
        words = term.forms & f.words
        if term in self.reached:
            words |= {w for w, ts in self.reaching.items() if term in ts} & f.words
        for word in words:
            for start in _find_word(f.folded, word):
                score = self._word_score(term, f, start, start + len(word))
                if score is None:
                    continue
                occurrence = self._extend(f, phrase, idx, start, start + len(word), score)
                if occurrence is None:
                    continue
                if not phrase.in_compounds and _in_compound(f.text, occurrence):
                    continue
                if phrase.is_name and _longer_name(f.text, occurrence):
                    continue
                found.setdefault(occurrence.start, occurrence)
        return sorted(found.values(), key=lambda o: o.start)

    def _word_score(self, term: Term, f: Field, start: int, end: int) -> int | None:
        """100 for an exact match (an inflection, a prefix), the similarity for a typo, else None."""
        if term.acronym:
            if end < len(f.text) and f.text[end] == "$":
                return None  # "US$1bn", "HK$": a currency, not the country
            return 100 if f.cased[start:end] in (term.acronym, term.acronym + "s") else None
        if _APOSTROPHE_WORD.match(f.text, end):
            return None  # "Xi'an" is a city, not Xi
        word = f.folded[start:end]
        if word in term.forms or (term.prefix and word.startswith(term.word)):
            return 100
        return typo_score(term, word) if term.typo_bases else None

    def _extend(self, f: Field, phrase: Phrase, idx: int, start: int, end: int, score: int) -> Occurrence | None:
        """Grow a match of ``phrase.terms[idx]`` at [start, end) into the whole phrase, or None."""
        scores = [score]
        pos = end
        for term in phrase.terms[idx + 1 :]:
            m = _NEXT_WORD.match(f.folded, pos)
            if m is None or not _gap_ok(phrase, m.group(1)):
                return None
            word_score = self._word_score(term, f, m.start(2), m.end(2))
            if word_score is None:
                return None
            scores.append(word_score)
            pos = m.end(2)
        phrase_end, pos = pos, start
        for term in reversed(phrase.terms[:idx]):
            word_start, word_end = _previous_word(f.folded, pos)
            if word_start == word_end or not _gap_ok(phrase, f.folded[word_end:pos]):
                return None
            word_score = self._word_score(term, f, word_start, word_end)
            if word_score is None:
                return None
            scores.append(word_score)
            pos = word_start
        # A name tolerates one typo in all; theme words each tolerate their own.
        if phrase.is_name and sum(s < 100 for s in scores) > 1:
            return None
        return Occurrence(f, pos, _visible_end(f, phrase_end), min(scores))


def inflections(word: str) -> set[str]:
    """The word and its regular English inflections; for a configured plural or inflected
    form, its base's too. Over-generation is harmless: a form no one writes matches nothing."""
    forms = {word}
    for base in (word, *_bases(word)):
        forms.add(base)
        forms.update(_inflect(base))
    return forms


def _inflect(base: str) -> set[str]:
    if len(base) < 2 or not base.isalpha():
        return {base + "s"} if base.isalpha() else set()
    out = {base + "s"}
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        out.add(base + "es")
    if base[-1] == "y" and base[-2] not in _VOWELS:
        out.update({base[:-1] + "ies", base[:-1] + "ied"})
    if base.endswith("e"):
        out.add(base + "d")
        if not base.endswith(("ee", "ye", "oe")):
            out.add(base[:-1] + "ing")
        else:
            out.add(base + "ing")
    elif base.endswith("ie"):
        out.update({base + "d", base[:-2] + "ying"})
    else:
        doubled = base[-1] not in _VOWELS and base[-1] not in "wxy" and base[-2] in _VOWELS
        short = len(base) <= 4 and (len(base) < 3 or base[-3] not in _VOWELS)
        if doubled:
            out.update({base + base[-1] + "ed", base + base[-1] + "ing"})
        if not (doubled and short):
            out.update({base + "ed", base + "ing"})
    return out


def _bases(word: str) -> set[str]:
    """What a configured inflected form may be the inflection of ("curbs" -> "curb")."""
    out = set(_singulars(word))
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            out.update({stem, stem + "e"})
            if len(stem) >= 2 and stem[-1] == stem[-2]:
                out.add(stem[:-1])
    if word.endswith("ied") and len(word) > 4:
        out.add(word[:-3] + "y")
    return out


def _singulars(word: str) -> tuple[str, ...]:
    """Singular/plural: adding or dropping -s/-es (-ies/-y)."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith("ss"):
        return ()
    if word.endswith("ies"):
        return (word[:-1], word[:-3] + "y")
    return (word[:-1], word[:-2]) if word.endswith("es") else (word[:-1],)


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _anchor_index(terms: tuple[Term, ...]) -> int:
    """The rarest-looking word (see ``rarity``), so it wakes the phrase least often.
    One anchor suffices because a phrase is present only when all its words are."""
    return max(range(len(terms)), key=lambda i: rarity(terms[i]))


def rarity(term: Term) -> tuple[int, int]:
    """How rare a word looks in news text, as a sort key (higher is rarer).

    Acronyms rank lowest: they are found through their folded form, which also wakes on the
    everyday word ("us", "it"). Then prefixes (they reach many words), then the common English
    and news words of ``_COMMON_WORDS``. Then every other word, longer ones first: length is the
    best cheap guess left, and any configured topic or surname outranks the common words."""
    if term.acronym:
        return (0, len(term.word))
    if term.prefix:
        return (1, len(term.word))
    if term.word in _COMMON_WORDS or not _COMMON_WORDS.isdisjoint(_singulars(term.word)):
        return (2, len(term.word))
    return (3, len(term.word))


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


def _find_word(text: str, word: str) -> Iterator[int]:
    """Start offsets of ``word`` as a whole word (not inside a longer one) in ``text``."""
    n, end = len(word), len(text)
    i = text.find(word)
    while i != -1:
        j = i + n
        if (i == 0 or not text[i - 1].isalnum()) and (j == end or not text[j].isalnum()):
            yield i
        i = text.find(word, i + 1)


def typo_score(term: Term, word: str) -> int | None:
    """Similarity (0-100) when ``word`` is one letter dropped, added, changed or swapped away from
    the term (plural-tolerant for theme words) and the watch's threshold allows it."""
    variants = (word, *_singulars(word)) if term.inflect else (word,)
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


def _visible_end(f: Field, end: int) -> int:
    """Extend an end offset over the padding of a collapsed "U.S." so evidence shows it whole."""
    while end < len(f.cased) and f.cased[end] == " " and not f.text[end].isspace():
        end += 1
    return end


def _in_compound(text: str, o: Occurrence) -> bool:
    """The occurrence is one part of a hyphenated compound ("state-sponsored")."""
    before = o.start >= 2 and text[o.start - 1] in _HYPHENS and text[o.start - 2].isalnum()
    after = o.end + 1 < len(text) and text[o.end] in _HYPHENS and text[o.end + 1].isalnum()
    return before or after


def _longer_name(text: str, o: Occurrence) -> bool:
    """The name goes on with a hyphen into another capitalised part: "Anna Berg-Hansen" and
    "Maria-Anna Berg" are other people than Anna Berg."""
    before = o.start >= 2 and text[o.start - 1] in _HYPHENS and text[o.start - 2].isalpha()
    after = o.end + 1 < len(text) and text[o.end] in _HYPHENS and text[o.end + 1].isupper()
    if before:
        k = o.start - 2
        while k > 0 and text[k - 1].isalpha():
            k -= 1
        before = text[k].isupper()
    return before or after


def _previous_word(text: str, pos: int) -> tuple[int, int]:
    """(start, end) of the word before the separator that ends at ``pos``; empty if none."""
    end = pos
    while end > 0 and not text[end - 1].isalnum():
        end -= 1
    start = end
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    return start, end


def _gap_ok(phrase: Phrase, gap: str) -> bool:
    # Theme phrases tolerate any punctuation between words ("U.S.-China"); names do not.
    return not phrase.is_name or _NAME_GAP.fullmatch(gap) is not None or gap in phrase.odd_gaps
