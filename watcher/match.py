"""Match articles against tracked speakers and themes. Pure: no I/O, no clock.

docs/matching.md is the contract; ``tests/test_match.py`` checks it clause by clause. The
work is split three ways: ``watcher.phrases`` finds configured words and phrases in an
article fast, ``watcher.attribution`` decides who said what, and this module decides hits:

1. **Compile once** (``Matcher(...)``): every name, alias and theme phrase goes into one
   :class:`~watcher.phrases.PhraseIndex`. Each name phrase is woken by its rarest-looking word,
   each theme by the words of its rarest-looking group, since every group must be met anyway.
2. **Prefilter** (per article): the article's words wake the few watches that can match; a
   woken theme goes on only if every group has a word present.
3. **Speakers**: mentioned when a name or alias is located; a statement when
   ``attribution.statements`` finds speech attributed to them, through a mention or a
   back-reference by surname after the full name.
4. **Themes**: every occurrence of every group is placed (title, lead or body; sentence,
   paragraph, word); vetoes remove the occurrences in their scope; the places where all
   groups meet close enough (``near``) are the theme's *sites*; their prominence gives the
   relevance score, and ``where``, ``at_least`` and ``min_score`` decide.
5. **Explain**: each hit carries the sentences of its decisive occurrences, with spans; and
   ``Matcher.explain`` tells for every watch why it hit or did not.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from watcher.attribution import Name, back_references, reference_keys, statements
from watcher.config import Speaker, Theme
from watcher.phrases import Occurrence, Phrase, PhraseIndex, Scan, Term, rarity
from watcher.text import FIELD_NAMES, WORD, Field, fields
from watcher.types import Article, Evidence, Hit, HitKind

__all__ = ["Explanation", "Matcher"]

_MAX_EVIDENCE_CHARS = 320
_MAX_EVIDENCE_PER_HIT = 3
#: Relevance of a theme's best site by where it is, and what each further site adds.
_SITE_SCORE = {"title": 100, "lead": 85, "body": 40}
_SPREAD_PENALTY = 10
_EXTRA_SITE = 15
#: The lead: the body's first sentences, in reading order, that open the story.
_LEAD_SENTENCES = 3
_ZONES = ("title", "lead", "body")
#: A sentence proper ends with a stop (and perhaps closing quotes or brackets).
_ENDS_SENTENCE = re.compile(r"[.!?…][\"”’')\]]*\s*$")


@dataclass(frozen=True)
class Explanation:
    """Why one watch hit an article, or did not: for ``watcher match --explain``."""

    watch: str
    kind: HitKind
    hit: Hit | None
    reasons: tuple[str, ...]


class Matcher:
    """Speakers and themes compiled once; ``match(article)`` is then cheap and thread-safe."""

    def __init__(self, speakers: Sequence[Speaker], themes: Sequence[Theme]) -> None:
        self._phrases = PhraseIndex()
        self._speakers = [
            _SpeakerWatch(
                s,
                tuple(self._phrases.name(v, s.threshold) for v in (s.name, *s.aliases)),
                tuple(sorted(reference_keys((s.name, *s.aliases)))),
            )
            for s in speakers
        ]
        self._themes = [self._compile_theme(t) for t in themes]
        self._build_wakes()

    def match(self, article: Article) -> list[Hit]:
        """Every tracked speaker and theme the article matches, speakers first, in config order."""
        run = _Run(self, article)
        names, themes = self._wake(run.scan)
        return [*run.speaker_hits(names), *(h for i in sorted(themes) if (h := run.theme(i).hit) is not None)]

    def explain(self, article: Article) -> list[Explanation]:
        """For every watch, in config order, why it hit the article or did not."""
        run = _Run(self, article)
        hits = {h.watch: h for h in run.speaker_hits(self._name_phrases())}
        out = []
        for s in self._speakers:
            out.append(Explanation(s.speaker.name, "speaker", hits.get(s.speaker.name), run.explain_speaker(s)))
        for i, t in enumerate(self._themes):
            verdict = run.theme(i, complete=True)
            out.append(Explanation(t.theme.name, "theme", verdict.hit, verdict.reasons()))
        return out

    # -- compile -----------------------------------------------------------------------------

    def _compile_theme(self, theme: Theme) -> _ThemeWatch:
        def compile_all(phrases: Sequence[str], *, veto: bool = False) -> tuple[Phrase, ...]:
            return tuple(self._phrases.theme(p, theme.threshold, in_compounds=not veto) for p in phrases)

        groups = [
            _Group.of(compile_all(group), label=f"all_of {n + 1}", order=n)
            for n, group in enumerate(theme.all_of)
            if group
        ]
        if theme.any_of:
            groups.append(_Group.of(compile_all(theme.any_of), label="any_of", order=len(theme.all_of)))
        # The rarest-looking group first: it is the one that wakes the theme up.
        groups.sort(key=lambda g: g.rarity, reverse=True)
        return _ThemeWatch(theme, groups=tuple(groups), none_of=compile_all(theme.none_of, veto=True))

    def _name_phrases(self) -> dict[Phrase, None]:
        return {p: None for s in self._speakers for p in s.phrases}

    def _build_wakes(self) -> None:
        """Build the lookups ``match`` uses: cost per article then follows its words, not the config.

        A name phrase is woken by its anchor word; a theme only by the anchor words of its
        rarest-looking group. A woken theme then goes on only if every other group has an
        anchor word present (two C-level set tests a group)."""
        self._speakers_by_phrase: dict[Phrase, list[int]] = {}
        names: dict[Term, dict[Phrase, None]] = {}
        for i, speaker in enumerate(self._speakers):
            for phrase in dict.fromkeys(speaker.phrases):
                self._speakers_by_phrase.setdefault(phrase, []).append(i)
                names.setdefault(phrase.terms[phrase.anchor], {})[phrase] = None
        themes: dict[Term, dict[Phrase, list[int]]] = {}
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
        self._wake_exact: dict[str, list[Term]] = {}
        for term in self._wakes:
            for form in term.forms:
                self._wake_exact.setdefault(form, []).append(term)
        self._wake_keys = frozenset(self._wake_exact)
        self._wake_terms = frozenset(self._wakes)
        #: Per theme, for each group but the first (which wakes it): its anchor words' forms
        #: and terms. A theme goes on only if each group meets one, exactly or otherwise.
        self._theme_rest = [tuple((g.anchor_forms, g.anchor_terms) for g in theme.groups[1:]) for theme in self._themes]

    # -- prefilter ---------------------------------------------------------------------------

    def _wake(self, scan: Scan) -> tuple[dict[Phrase, None], set[int]]:
        """Name phrases and themes worth a closer look: name phrases whose anchor word is
        present; themes whose first group has a phrase present and every other group at least
        an anchor word. (The hot loop of the matcher: written for speed, tests inlined.)"""
        words, reached = scan.words, scan.reached
        names: dict[Phrase, None] = {}
        themes: set[int] = set()
        terms = [t for word in words & self._wake_keys for t in self._wake_exact[word]]
        terms.extend(reached & self._wake_terms)
        for term in terms:
            wake = self._wakes[term]
            if wake.names:
                names.update(dict.fromkeys(wake.names))
            if wake.themes:
                themes |= wake.themes
            for others, ids in wake.themes_if_present:
                for t in others:
                    if words.isdisjoint(t.forms) and t not in reached:
                        break
                else:
                    themes.update(ids)
        woken: set[int] = set()
        for i in themes:
            for forms, anchors in self._theme_rest[i]:
                if words.isdisjoint(forms) and anchors.isdisjoint(reached):
                    break
            else:
                woken.add(i)
        return names, woken


# -- compiled watches -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _SpeakerWatch:
    speaker: Speaker
    phrases: tuple[Phrase, ...]
    #: Words the person may be referred back to by after the full name ("Scott", "Zhu Scott").
    keys: tuple[str, ...]


@dataclass(frozen=True)
class _Wake:
    """What one present anchor word wakes up."""

    names: tuple[Phrase, ...]
    #: Themes woken outright (their one-word phrase is the anchor word itself).
    themes: frozenset[int]
    #: Themes woken only once the other words of their multi-word phrase are present too.
    themes_if_present: tuple[tuple[tuple[Term, ...], tuple[int, ...]], ...]


@dataclass(frozen=True, eq=False)
class _Group:
    """Alternative phrases of which one must be met."""

    label: str
    #: Position in the config (all_of groups, then any_of), for explanations.
    order: int
    phrases: tuple[Phrase, ...]
    #: Every phrase needs its anchor word: if none of these is in the article, nor reached
    #: through a typo or prefix, the group cannot be met.
    anchor_forms: frozenset[str]
    anchor_terms: frozenset[Term]

    @classmethod
    def of(cls, phrases: tuple[Phrase, ...], *, label: str, order: int) -> _Group:
        anchors = frozenset(p.terms[p.anchor] for p in phrases)
        return cls(label, order, phrases, frozenset(f for t in anchors for f in t.forms), anchors)

    @property
    def rarity(self) -> tuple[int, int]:
        """How rarely the group is likely met: the ``rarity`` of its most common-looking
        anchor word. Themes are woken by their rarest group."""
        return min(rarity(t) for t in self.anchor_terms)


@dataclass(frozen=True, eq=False)
class _ThemeWatch:
    theme: Theme
    #: Each must be met: the all_of groups and any_of (when not empty), rarest-looking first.
    groups: tuple[_Group, ...]
    none_of: tuple[Phrase, ...]


# -- one article ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where an occurrence sits in the article, in the units proximity and prominence use."""

    occurrence: Occurrence
    #: Sentence and paragraph numbers in reading order; the headline shares the lead's.
    sentence: int
    paragraph: int
    zone: str
    #: The occurrence's own sentence, (field index, sentence index): evidence and vetoes.
    own_sentence: tuple[int, int]
    own_paragraph: tuple[int, int]

    @property
    def order(self) -> tuple[int, int]:
        """Reading order."""
        return self.occurrence.field.index, self.occurrence.start


@dataclass(frozen=True)
class _Site:
    """A place where every group of a theme is met close enough: one per (group) occurrence."""

    places: tuple[_Place, ...]

    @property
    def zone(self) -> str:
        return max((p.zone for p in self.places), key=_ZONES.index)

    @property
    def spread(self) -> bool:
        """The groups are met in more than one sentence."""
        return len({p.own_sentence for p in self.places}) > 1

    @property
    def score(self) -> int:
        return _SITE_SCORE[self.zone] - (_SPREAD_PENALTY if self.spread else 0)


@dataclass
class _Verdict:
    """A theme judged on one article, with what ``explain`` tells about it."""

    watch: _ThemeWatch
    met: list[list[_Place]] = field(default_factory=list)
    vetoes: list[_Place] = field(default_factory=list)
    vetoed: list[_Place] = field(default_factory=list)
    sites: list[_Site] = field(default_factory=list)
    counted: list[_Site] = field(default_factory=list)
    score: int = 0
    hit: Hit | None = None
    why_not: str = ""

    def reasons(self) -> tuple[str, ...]:
        theme = self.watch.theme
        near = f"within {theme.near} words" if isinstance(theme.near, int) else f"in one {theme.near}"
        lines = [f"rule: groups {near}; where: {theme.where}; at_least: {theme.at_least}; min_score: {theme.min_score}"]
        looked = dict(zip(self.watch.groups, self.met, strict=False))
        for group in sorted(self.watch.groups, key=lambda g: g.order):
            places = looked.get(group)
            if places is None:
                lines.append(f"{group.label}: not looked for (another group is not met)")
                continue
            shown = ", ".join(_describe(p) for p in places[:5]) + (" …" if len(places) > 5 else "")
            lines.append(f"{group.label}: " + (shown if places else f"none of {_list(group.phrases)} found"))
        if self.vetoes:
            lines.append(
                f"vetoes ({theme.none_of_scope}): "
                + ", ".join(_describe(p) for p in self.vetoes)
                + (f"; {len(self.vetoed)} occurrence(s) removed" if self.vetoed else "")
            )
        for site in self.sites:
            counted = "" if site in self.counted else " (not counted: where)"
            lines.append(
                f"site: {site.zone}, {'several sentences' if site.spread else 'one sentence'}, score {site.score}{counted}: "
                + ", ".join(_describe(p) for p in site.places)
            )
        if self.hit is not None:
            lines.append(f"HIT, score {self.score}")
        else:
            lines.append(f"no hit: {self.why_not}")
        return tuple(lines)


def _describe(p: _Place) -> str:
    o = p.occurrence
    return f"“{o.field.text[o.start : o.end]}” ({o.field.name}, {p.zone})"


def _list(phrases: Sequence[Phrase]) -> str:
    labels = [p.label for p in phrases]
    return ", ".join(labels[:6]) + (", …" if len(labels) > 6 else "")


class _Run:
    """One article being matched: its fields, words and places, computed on demand, once."""

    def __init__(self, matcher: Matcher, article: Article) -> None:
        self.matcher = matcher
        self.fields = fields(article)
        self.scan = matcher._phrases.scan(self.fields)
        self._verdicts: dict[int, _Verdict] = {}
        self._units: _Units | None = None
        self._mentions: dict[int, list[Occurrence]] | None = None

    # -- speakers ------------------------------------------------------------------------------

    def speaker_hits(self, woken: dict[Phrase, None]) -> list[Hit]:
        scan, matcher = self.scan, self.matcher
        located = {p: occ for p in woken if (occ := scan.locate(p))}
        speakers = sorted({i for p in located for i in matcher._speakers_by_phrase[p]})
        mentions = {
            i: _outermost([o for p in matcher._speakers[i].phrases for o in located.get(p, ())]) for i in speakers
        }
        self._mentions = mentions
        return [self._speaker_hit(i, mentions) for i in speakers]

    def _speaker_hit(self, me: int, everyone: dict[int, list[Occurrence]]) -> Hit:
        watch = self.matcher._speakers[me]
        mentions = everyone[me]
        own = [Name(o.field, o.start, o.end) for o in mentions]
        refs = back_references(watch.keys, own, self.fields)
        others = [Name(o.field, o.start, o.end) for i, occ in everyone.items() if i != me for o in occ]
        proofs = statements([*own, *refs], others, self.fields)
        statement = bool(proofs)
        if statement:
            marks = [(n.field, n.start, n.end) for n in (*own, *refs)]
        else:
            proofs = [(m.field, m.field.layout.sentence_of(m.start)) for m in mentions]
            marks = [(m.field, m.start, m.end) for m in mentions]
        return Hit(
            watch=watch.speaker.name,
            kind="speaker",
            statement=statement,
            score=max(m.score for m in mentions),
            evidence=_sentence_evidence(proofs, marks),
        )

    def explain_speaker(self, watch: _SpeakerWatch) -> tuple[str, ...]:
        me = self.matcher._speakers.index(watch)
        mentions = (self._mentions or {}).get(me, [])
        if not mentions:
            return (f"no mention: none of {', '.join(p.label for p in watch.phrases)} found",)
        own = [Name(o.field, o.start, o.end) for o in mentions]
        refs = back_references(watch.keys, own, self.fields)
        lines = ["mentions: " + ", ".join(f"“{o.field.text[o.start : o.end]}” ({o.field.name})" for o in mentions)]
        if refs:
            lines.append(
                "back-references: " + ", ".join(f"“{n.field.text[n.start : n.end]}” ({n.field.name})" for n in refs)
            )
        others = [Name(o.field, o.start, o.end) for i, occ in (self._mentions or {}).items() if i != me for o in occ]
        proofs = statements([*own, *refs], others, self.fields)
        if proofs:
            lines.append("statement: " + " | ".join(f.text[slice(*f.layout.sentences[n])] for f, n in proofs[:3]))
        else:
            lines.append("mention only: no sentence attributes speech to them")
        return tuple(lines)

    # -- themes ------------------------------------------------------------------------------

    def theme(self, i: int, *, complete: bool = False) -> _Verdict:
        """The theme's verdict; ``complete`` looks for every group even when one is missing."""
        verdict = self._verdicts.get(i)
        if verdict is None:
            verdict = self._verdicts[i] = self._judge(self.matcher._themes[i], complete)
        return verdict

    def _judge(self, watch: _ThemeWatch, complete: bool) -> _Verdict:
        theme, scan = watch.theme, self.scan
        verdict = _Verdict(watch)
        if not watch.groups:
            verdict.why_not = "the theme has no phrases"
            return verdict
        units = self.units()
        for group in watch.groups:
            places = [units.place(o) for p in group.phrases for o in scan.locate(p)]
            places.sort(key=lambda p: p.order)
            verdict.met.append(places)
            if not places and not complete:
                break
        missing = [g.label for g, places in zip(watch.groups, verdict.met, strict=False) if not places]
        if missing:
            verdict.why_not = f"{', '.join(sorted(missing))} not met"
            return verdict
        verdict.vetoes = [units.place(o) for p in watch.none_of for o in scan.locate(p)]
        if verdict.vetoes:
            if theme.none_of_scope == "article":
                verdict.why_not = "vetoed (none_of anywhere in the article)"
                return verdict
            if any(v.zone == "title" for v in verdict.vetoes):
                verdict.why_not = "vetoed (none_of in the headline vetoes the whole article)"
                return verdict
            scope = "own_sentence" if theme.none_of_scope == "sentence" else "own_paragraph"
            banned = {getattr(v, scope) for v in verdict.vetoes}
            kept = [[p for p in places if getattr(p, scope) not in banned] for places in verdict.met]
            verdict.vetoed = [p for places in verdict.met for p in places if getattr(p, scope) in banned]
            if not all(kept):
                verdict.why_not = f"every occurrence of a group is in a vetoed {theme.none_of_scope}"
                return verdict
        else:
            kept = verdict.met
        verdict.sites = _sites(kept, theme.near, units)
        allowed = {"title": ("title",), "lead": ("title", "lead"), "anywhere": _ZONES}[theme.where]
        verdict.counted = [s for s in verdict.sites if s.zone in allowed]
        if not verdict.counted:
            near = f"within {theme.near} words" if isinstance(theme.near, int) else f"in one {theme.near}"
            verdict.why_not = f"the groups are never met {near}" + (f" in the {theme.where}" if verdict.sites else "")
            return verdict
        if len(verdict.counted) < theme.at_least:
            verdict.why_not = f"met in {len(verdict.counted)} place(s), at_least {theme.at_least} needed"
            return verdict
        best = min(verdict.counted, key=lambda s: (-s.score, s.places[0].order))
        typo = min(p.occurrence.score for p in best.places)
        raw = min(100, best.score + _EXTRA_SITE * (len(verdict.counted) - 1))
        verdict.score = round(raw * typo / 100)
        if verdict.score < theme.min_score:
            verdict.why_not = f"score {verdict.score} below min_score {theme.min_score}"
            return verdict
        shown = [best, *(s for s in verdict.counted if s is not best)]
        proofs = [(p.occurrence.field, p.own_sentence[1]) for s in shown for p in s.places]
        marks = [(p.occurrence.field, p.occurrence.start, p.occurrence.end) for s in shown for p in s.places]
        verdict.hit = Hit(
            watch=theme.name,
            kind="theme",
            statement=False,
            score=verdict.score,
            evidence=_sentence_evidence(proofs, marks),
        )
        return verdict

    def units(self) -> _Units:
        if self._units is None:
            self._units = _Units(self.fields)
        return self._units


class _Units:
    """Numbers sentences, paragraphs and words in reading order, field by field as needed. The
    headline is read with the sentence under it: it shares the body's first sentence and
    paragraph, so the two are "one sentence" for proximity. A picture credit or dateline on a
    line of its own ("Photo by X / The Verge": no full stop) is not that sentence."""

    def __init__(self, fs: list[Field]) -> None:
        self.fields = fs
        self._body = [f for f in fs if f.name != "title"]
        #: Per body field: its first sentence's and paragraph's numbers, and its first word's.
        self._bases: dict[int, tuple[int, int, int]] = {}
        self._word_starts: dict[int, list[int]] = {}
        self._headline: tuple[int, int] | None = None

    def place(self, o: Occurrence) -> _Place:
        f = o.field
        s = f.layout.sentence_of(o.start)
        para = f.layout.sentence_paragraph[s]
        if f.name == "title":
            return _Place(o, *self._under_headline(), "title", (f.index, s), (f.index, para))
        sentences, paragraphs, _ = self._base(f)
        number = sentences + s
        zone = "lead" if number < _LEAD_SENTENCES else "body"
        return _Place(o, number, paragraphs + para, zone, (f.index, s), (f.index, para))

    def word(self, p: _Place) -> int:
        """The occurrence's word number in reading order (the headline's words first)."""
        f = p.occurrence.field
        if f.index not in self._word_starts:
            self._word_starts[f.index] = [m.start() for m in WORD.finditer(f.folded)]
        base = 0 if f.name == "title" else self._base(f)[2]
        return base + bisect.bisect_left(self._word_starts[f.index], p.occurrence.start)

    def _base(self, f: Field) -> tuple[int, int, int]:
        if f.index not in self._bases:
            sentences = paragraphs = 0
            words = len(WORD.findall(self.fields[0].folded)) if self.fields[0].name == "title" else 0
            for g in self._body:
                self._bases[g.index] = (sentences, paragraphs, words)
                if g is f:
                    break
                sentences += len(g.layout.sentences)
                paragraphs += len(g.layout.paragraphs)
                words += len(WORD.findall(g.folded))
        return self._bases[f.index]

    def _under_headline(self) -> tuple[int, int]:
        if self._headline is None:
            self._headline = (0, 0)
            if self._body:
                f = self._body[0]
                for n, (start, end) in enumerate(f.layout.sentences[:_LEAD_SENTENCES]):
                    if _ENDS_SENTENCE.search(f.layout.text, start, end):
                        self._headline = (n, f.layout.sentence_paragraph[n])
                        break
        return self._headline


def _sites(groups: list[list[_Place]], near: str | int, units: _Units) -> list[_Site]:
    """Where every group meets within the proximity, in reading order: one site per sentence or
    paragraph that holds all groups, one for the whole article, or non-overlapping windows of
    at most ``near`` words."""
    if isinstance(near, int):
        return _word_windows(groups, near, units)
    found: dict[int, list[list[_Place]]] = {}
    for g, places in enumerate(groups):
        for p in places:
            unit = 0 if near == "article" else p.sentence if near == "sentence" else p.paragraph
            found.setdefault(unit, [[] for _ in groups])[g].append(p)
    return [_Site(tuple(map(_best, per_group))) for _, per_group in sorted(found.items()) if all(per_group)]


def _best(places: list[_Place]) -> _Place:
    """The occurrence a site shows for a group: an exact one before a typo, then the first."""
    return min(places, key=lambda p: (-p.occurrence.score, p.order))


def _word_windows(groups: list[list[_Place]], near: int, units: _Units) -> list[_Site]:
    merged = sorted(((units.word(p), g, p) for g, places in enumerate(groups) for p in places), key=lambda t: t[:2])
    sites: list[_Site] = []
    latest: dict[int, tuple[int, _Place]] = {}
    for word, g, p in merged:
        latest[g] = (word, p)
        latest = {k: v for k, v in latest.items() if word - v[0] <= near}
        if len(latest) == len(groups):
            sites.append(_Site(tuple(latest[k][1] for k in range(len(groups)))))
            latest = {}
    return sites


def _outermost(occurrences: list[Occurrence]) -> list[Occurrence]:
    """Drop occurrences inside a longer one (alias "Zhu Scott" inside "Jen Zhu Scott")."""
    out: list[Occurrence] = []
    # Field order, not id(field): evidence must come out the same in every process.
    for o in sorted(occurrences, key=lambda o: (FIELD_NAMES.index(o.field.name), o.start, -o.end)):
        if not (out and out[-1].field is o.field and out[-1].start <= o.start and o.end <= out[-1].end):
            out.append(o)
    return out


def _sentence_evidence(proofs: list[tuple[Field, int]], marks: list[tuple[Field, int, int]]) -> tuple[Evidence, ...]:
    """One Evidence per distinct sentence (at most a few), highlighting ``marks`` inside it."""
    out: list[Evidence] = []
    for f, index in dict.fromkeys(proofs):
        start, end = f.layout.sentences[index]
        spans = [(s, e) for g, s, e in marks if g is f and start <= s and e <= end]
        out.append(_evidence(f, start, end, spans))
        if len(out) == _MAX_EVIDENCE_PER_HIT:
            break
    return tuple(out)


def _evidence(f: Field, start: int, end: int, spans: list[tuple[int, int]]) -> Evidence:
    if end - start > _MAX_EVIDENCE_CHARS and spans:
        # A long sentence is cut to a window around its highlights, at word boundaries.
        spans.sort()
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
