"""Who said what: the English grammar of attributed speech, as news wires write it. Pure.

Given where a tracked person is named in an article (their mentions, and back-references by
surname or honorific after the full name), :func:`statements` finds the sentences that
attribute speech to them. The forms are listed in docs/matching.md ("Statements"); each is a
row of ``tests/test_match.py``. Everything works on tokens of one sentence at a time (see
``watcher.text.Layout``), except the pronoun rule, which looks one sentence back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from watcher.text import SENTENCE_OPENERS, Field, Layout, Token


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True)
class Name:
    """Where a person is named: a mention, or a back-reference ("Ms Scott", "Scott")."""

    field: Field
    start: int
    end: int


_OPENING_QUOTES = frozenset('“"‘«')
_CLOSING_QUOTES = frozenset('”"’»')
_DASHES = frozenset("-–—")
_HYPHENS = "-\u2010\u2011"

#: Reporting verbs whose subject is the speaker ("X said", "X has warned", "X and Y argue").
_SPEECH_VERBS = _words(
    """said says say stated states told tells tell argued argues argue warned warns warn
    emphasised emphasises emphasized emphasizes emphasise emphasize stressed stresses stress
    urged urges urge wrote writes write added adds add replied replies reply explained explains
    noted notes insisted insists insist claimed claims asserted asserts declared declares
    remarked commented suggested suggests predicted predicts cautioned cautions contended
    contends maintained maintains acknowledged acknowledges admitted admits conceded concedes
    countered counters responded answered asked asks recalled recalls observed tweeted testified
    denied denies deny announced announces announce defended defends pledged pledges pledge
    vowed vows vow touted touts proclaimed proclaims confirmed confirms reiterated reiterates
    hailed hails criticised criticized criticises criticizes praised praises promised promises
    encouraged encourages encourage complained complains lamented laments boasted boasts
    disputed disputes rejected rejects dismissed dismisses blasted blasts slammed slams quipped
    mused posted posts accused accuses accuse echoed echoes condemned condemns denounced
    denounces lambasted decried decries rebuked questioned questions revealed reveals
    disclosed underscored highlighted reaffirmed affirmed recommended proposed demanded
    demands appealed pleaded reckons believes"""
)
#: "X is warning", "X has been saying".
_SPEECH_ING = _words(
    """saying telling arguing warning urging writing adding insisting claiming stressing
    emphasising emphasizing noting explaining cautioning predicting suggesting encouraging
    announcing denying defending pledging vowing touting calling pushing pressing"""
)
_CALL = _words("call calls called calling")
#: "X called for", "X called on nations to", "X spoke to reporters".
_CALL_PARTICLES = _words("for on")
_SPEAK = _words("speak speaks spoke speaking")
#: "at" is left out: "X speaks at the conference" is attending (and a photo caption).
_SPEAK_PARTICLES = _words("to about of on with")
_BE = _words("is was are were been")
#: Verbs that are speech only with a complement that says something ("X added that …", "…,
#: she added."), not with a plain object ("X added two partners", "X wrote a cheque").
_NEEDS_COMPLEMENT = _words(
    """add adds added write writes wrote post posts posted claim claims claimed maintain
    maintains maintained observe observes observed note notes noted recall recalls recalled
    reveal reveals revealed disclose discloses disclosed highlight highlights highlighted
    underscore underscores underscored believe believes reckons question questions questioned
    propose proposes proposed recommend recommends recommended"""
)
#: What follows such a verb when it reports speech.
_COMPLEMENTS = _words("that how why what whether if in on to about of it this")
#: "X dismissed the claims": objects that make rejecting, denying or dismissing speech.
_SPEECH_OBJECTS = _words(
    """claim claims concern concerns report reports suggestion suggestions criticism criticisms
    fear fears idea notion allegation allegations accusation accusations call calls comparison
    comparisons speculation rumour rumours rumor rumors talk charge charges wrongdoing"""
)
_REJECTING = _words("dismiss dismisses dismissed reject rejects rejected")
#: Object-taking verbs that are passive when "to" or "by" follows at once: "X told to step
#: down", "X urged to quit", "X warned by the SEC" (a headline drops the "was").
_PASSIVE_BEFORE_TO = _words(
    """told tells urged urges asked asks warned warns encouraged invited ordered pressed
    pressured advised called"""
)
#: "X praised for her role", "X criticised over the meeting": the headline's passive.
_PASSIVE_BEFORE_FOR = _words(
    """praised criticised criticized slammed blasted hailed warned rebuked lambasted condemned
    accused questioned"""
)
#: "X denied entry", "X denied a visa": refused something, not denying a claim.
_DENIED_THINGS = _words("entry visa visas access bail permission boarding parole tenure asylum")
#: After "said to" these make it speech to someone ("said to reporters"), else it is hearsay
#: ("X said to be weighing a bid").
_AUDIENCES = _words(
    """the a an his her their its our my your this these reporters journalists lawmakers
    legislators parliament congress investors analysts delegates students staff employees
    us me him them cnn bbc"""
)
#: "X was quoted as saying", "X was cited by Reuters as saying".
_QUOTED = _words("quoted cited reported heard")
#: Verbs that take the speaker after them in an inverted attribution ("..., said X").
_INVERTING_VERBS = _words(
    """said says added adds wrote writes argued argues warned warns noted notes explained
    explains replied asked continued insisted insists stated stressed emphasised emphasized
    cautioned countered observed recalled remarked tweeted concluded predicted told tells
    claims claimed declared announced urged urges quipped"""
)
#: "X's statement said", "X's remarks": what a person says, as a noun. A spokesperson, an
#: office or a company is someone else speaking for them.
_SPEECH_NOUNS = _words(
    """statement statements remarks remark comments comment words letter speech testimony post
    tweet message interview op ed essay blog memo address warning plea appeal call push pledge
    vow promise answer reply response message"""
)
#: Words that may stand between the subject and its verb: "X has also said", "X on Monday said".
_ADVERBIALS = _words(
    """has have had also again later then earlier previously once recently already herself
    himself themselves today yesterday tonight on last this week month year morning afternoon
    evening night long often still too in at a an the statement interview speech letter post
    blog event conference summit forum meeting monday tuesday wednesday thursday friday saturday
    sunday first just even since twice now january february march april june july august
    september october november december publicly privately separately over weekend all both
    each jointly together"""
)
#: At most this many asides between a subject and its verb ("X, 61, a former operator, said"),
#: of at most this many tokens each.
_MAX_ASIDES = 3
_MAX_ASIDE_TOKENS = 45
#: Words that open a further aside after a comma: relative pronouns, articles, "of Phoenix".
_ASIDE_OPENERS = _words("who whom whose which where a an the his her their its of from")
#: "X and his co-founder said": a determiner opening the second subject.
_COORDINATED_DETERMINERS = _words("his her their its the a an other others several two three")
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
#: Words before a surname that make it a back-reference to the same person ("Ms Scott").
HONORIFICS = _words(
    """mr mrs ms miss mx dr prof professor sir dame lord lady madam president premier chancellor
    minister secretary senator governor ambassador commissioner chairman chairwoman chair
    general admiral judge justice mayor king queen prince princess sheikh"""
)
_TIME_WORDS = _words(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december"""
)
_PRONOUNS = frozenset(("he", "she"))
#: A capitalised run right after these names a thing ("the Volta Foundry line").
_THING_DETERMINERS = _words("the a an this that these those its their our your")
#: Words that start a sentence with a capital without being part of a name ("In Stockholm").
_FUNCTION_WORDS = SENTENCE_OPENERS | _NOT_BEFORE_SUBJECT | _CLAUSE_OPENERS
_CONNECTIVES = _words("but and however later then also separately meanwhile still yet")
#: Capitalised words that mark a place, organisation, product or date rather than a person:
#: "Nordlys Compute", "Northvane Labs", "Volta Foundry" are no one's name.
_NOT_PERSON = (
    _words(
        """united states kingdom nations union european hong kong new york zealand delhi san
    francisco los angeles silicon valley south north east west southeast middle central asia
    asian pacific atlantic white house street wall downing capitol hill department ministry
    council commission committee agency bureau office board bank fund group holdings capital
    partners labs lab laboratory inc ltd llc plc corp corporation company co dynamics
    technologies technology tech systems foundation institute university college school academy
    association society forum summit conference congress parliament senate court review times
    news post journal daily tribune reuters bloomberg digital economic world global
    international national federal republic party cloud security energy media network networks
    centre center authority exchange standards western eastern northern southern foundry works
    plant grid power electric utilities motors airlines airways hospital museum airport station
    port park square road avenue river city county province region island islands act treaty
    accord alliance prize award cup league festival expo project programme program initiative
    public service services compute computing computer computers robotics analytics software
    solutions ventures devices materials semiconductor semiconductors chips micro
    microelectronics electronics photonics optics quantum data intelligence ai machines
    automation aerospace defense defence nuclear fusion solar battery batteries mining metals
    steel petroleum shipping logistics foods brands retail studios games pharma therapeutics
    biotech bio sciences health insurance telecom communications mobile wireless industries
    enterprises consulting advisory associates trust research markets platform platforms
    robotics instruments interactive analytics labs"""
    )
    | _TIME_WORDS
)


def statements(own: Sequence[Name], others: Sequence[Name], fields: Sequence[Field]) -> list[tuple[Field, int]]:
    """The (field, sentence index) pairs that attribute speech to the person named at ``own``
    (their mentions and back-references), in reading order; empty when none does.

    ``others`` are where other tracked people are named: a He/She may be theirs."""
    found: dict[tuple[int, int], tuple[Field, int]] = {}
    for name in own:
        for f, index in _speaks(name, own, others, fields):
            found.setdefault((f.index, index), (f, index))
    return [found[k] for k in sorted(found)]


def _speaks(
    name: Name, own: Sequence[Name], others: Sequence[Name], fields: Sequence[Field]
) -> list[tuple[Field, int]]:
    """The speaker speaks when, outside a quotation (a name inside someone else's quote is a
    mention only): the name is the subject of a reporting verb, possibly after an appositive or
    adverbials ("X, CEO of Y, said on Monday"); a reporting verb inverts after a quote or comma
    ("…,” said X); "according to X"; "X's statement said"; "in an interview" with X as subject;
    X introduces a quote with a colon, or answers a question in a transcript ("Q: …? X: No.");
    a headline ends with ": X"; or the next sentence has He/She + reporting verb and no other
    named person comes between."""
    layout = name.field.layout
    if layout.in_quote(name.start) or _caption(layout, name.start):
        return []
    index = layout.sentence_of(name.start)
    tokens = layout.tokens(index)
    i = next((k for k, t in enumerate(tokens) if t.start >= name.start), len(tokens))
    j = next((k for k, t in enumerate(tokens) if t.start >= name.end), len(tokens))
    possessive = _possessive(tokens, j)
    here = [(name.field, index)]
    if possessive:
        if _speech_noun_speaks(tokens, j + 2):
            return here
    elif (
        _inverted_after(tokens, i)
        or _according_to(tokens, i)
        or _relative_clause_speaks(tokens, j)
        or _object_of_relative_speech(tokens, i, j)
        or (name.field.name == "title" and _headline_credit(tokens, i, j))
    ):
        return here
    if _subject_position(tokens, i) and not possessive:
        sentence = layout.text[slice(*layout.sentences[index])].lower()
        if (
            _subject_speaks(tokens, i, j)
            or "in an interview" in sentence
            or _introduces_quote(tokens, j)
            or (name.field.name == "title" and _headline_clause(tokens, j))
            or (name.field.name != "title" and i == 0 and _answers_question(layout, index, tokens, j))
        ):
            return here
    pronoun = _pronoun_speaks(layout, index, after=j)
    if pronoun is not None and not _person_runs(layout, name.end, layout.tokens(index)[pronoun].start):
        return here  # "… spoke to X, and he made it clear that …"
    role = _headline_role_speaks(tokens, i, name.field, fields)
    if role is not None:
        return [role, *here]
    following = _next_sentence(name.field, index, fields)
    if following is not None:
        f, n = following
        pronoun = _pronoun_speaks(f.layout, n)
        # The speaker's own He/She, unless someone else named in between may own it: anyone
        # after the name, and anyone before it when the name is not the subject ("Anna Berg
        # rejected a request from X. She said …").
        if pronoun is not None and not _person_between(
            name, own, others, before=not _subject_position(tokens, i), following=(f, n, pronoun)
        ):
            return [(name.field, index), (f, n)]
    return []


def _headline_role_speaks(tokens: list[Token], i: int, f: Field, fields: Sequence[Field]) -> tuple[Field, int] | None:
    """A headline gives the role that the story then puts before the name: "OpenAI CEO calls
    for …" over "OpenAI CEO Sam Altman is choosing engagement" — the headline's speaker is X."""
    if f.name == "title" or not fields or fields[0].name != "title":
        return None
    role = [t.lower for t in tokens[_title_chain_start(tokens, i, comma=False) : i] if t.is_word]
    while role and role[0] in _THING_DETERMINERS:
        role = role[1:]
    if len(role) < 2 or not any(w in _TITLE_WORDS - _THING_DETERMINERS - {"s"} for w in role):
        return None
    title = fields[0]
    for n in range(len(title.layout.sentences)):
        words = title.layout.tokens(n)
        for k in range(len(words) - len(role) + 1):
            if [t.lower for t in words[k : k + len(role)]] != role:
                continue
            end = k + len(role)
            if (
                end < len(words)
                and words[end].is_word
                and words[end].text[0].isupper()
                and words[end].lower not in _SPEECH_VERBS
                and words[end].lower not in _CALL
            ):
                continue  # the role of someone named in the headline
            if _speech_verb_at(words, _skip_adverbials(words, end)) or _inverted_after(words, k):
                return title, n
    return None


def _next_sentence(f: Field, index: int, fields: Sequence[Field]) -> tuple[Field, int] | None:
    """The sentence after ``index`` in reading order: in the same field, or the first of the
    next field after a headline ("Jen Zhu Scott on the chip war" / "… she says")."""
    if index + 1 < len(f.layout.sentences):
        return f, index + 1
    if f.name == "title" and f.index + 1 < len(fields):
        return fields[f.index + 1], 0
    return None


def _subject_position(tokens: list[Token], i: int) -> bool:
    """The name at ``tokens[i]`` can be a clause subject: it opens the sentence or a clause,
    perhaps after a title ("Power Dynamics CEO X"), and is not the object of a preposition or
    verb ("founded by X", "met X")."""
    if i == 0:
        return True
    before = tokens[i - 1]
    if i >= 3 and before.lower == "of" and tokens[i - 2].lower == "likes" and tokens[i - 3].lower == "the":
        return True  # "the likes of X and Y called for unity"
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


def _title_token(tokens: list[Token], k: int) -> bool:
    t = tokens[k]
    if not t.is_word:
        # Hyphens inside titles ("co-founder"), possessive apostrophes ("the lab's chief") and
        # the full stop of an abbreviated honorific ("Ms. Scott").
        return t.text in _DASHES or t.text in "'’" or (t.text == "." and k > 0 and tokens[k - 1].lower in HONORIFICS)
    if t.lower in _NOT_BEFORE_SUBJECT or t.lower in _INVERTING_VERBS or t.lower in _SPEECH_VERBS:
        return False  # in a Title Case headline "Says" and "And" are capitalised too
    if t.text[0].isupper() and t.lower in _CLAUSE_OPENERS:
        return False
    # A possessor is part of the title too: "the company's founder", "the lab's chief".
    return t.text[0].isupper() or t.lower in _TITLE_WORDS or _possessive(tokens, k + 1)


def _possessive(tokens: list[Token], j: int) -> bool:
    """ "X's lab said": the name only modifies the subject."""
    return (
        j + 1 < len(tokens)
        and tokens[j].text in "'’"
        and tokens[j + 1].lower == "s"
        and tokens[j + 1].start == tokens[j].end
    )


def _speech_noun_speaks(tokens: list[Token], k: int) -> bool:
    """After "X's": a speech noun ("statement", "remarks") that reports speech: a reporting
    verb follows it, or a quotation does ("X's push to “win the battle”")."""
    for n in range(k, min(len(tokens), k + 3)):
        if tokens[n].lower in _SPEECH_NOUNS:
            rest = tokens[n + 1 :]
            if _speech_verb_at(tokens, _skip_adverbials(tokens, n + 1)):
                return True
            # "X's comments came as …"; "X's message to Washington was blunt: stop …".
            return (rest[:1] and rest[0].lower in ("came", "come", "comes")) or any(
                t.text in _OPENING_QUOTES or t.text == ":" for t in rest[:10]
            )
        if not tokens[n].is_word or tokens[n].lower in _NOT_BEFORE_SUBJECT:
            return False
    return False


def _subject_speaks(tokens: list[Token], i: int, j: int) -> bool:
    """A reporting verb follows the subject named at ``tokens[i:j]``: right away, after a
    coordinated subject, or after one or more asides ("X, 61, a former operator who …, said").
    A name that is itself the aside ("The minister, X, said") is the subject too."""
    j = _skip_coordinated_name(tokens, _skip_list(tokens, j))
    if _has_message(tokens, j):
        return True
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


def _skip_list(tokens: list[Token], j: int) -> int:
    """Past ", Anna Berg and Jen Zhu Scott" in "Tobias Wrenfield, Anna Berg and Jen Zhu Scott all
    warned": names listed with commas and a final "and" are subjects together."""
    k = j
    while k < len(tokens) and tokens[k].text == ",":
        n = k + 1
        while n < len(tokens) and _name_word(tokens[n]):
            n += 1
        if n == k + 1:
            return j
        k = n
    if k > j and k < len(tokens) and tokens[k].lower == "and":
        return k
    return j


def _has_message(tokens: list[Token], j: int) -> bool:
    """ "X had a simple message for the room: talk to Beijing" — a message given, then its words."""
    if j >= len(tokens) or tokens[j].lower not in ("had", "has", "have", "delivered", "sent", "gave"):
        return False
    for k in range(j + 1, min(len(tokens), j + 5)):
        if tokens[k].lower in _SPEECH_NOUNS:
            return any(t.text == ":" or t.text in _OPENING_QUOTES for t in tokens[k + 1 : k + 8])
    return False


def _opens_aside(t: Token) -> bool:
    return t.lower in _ASIDE_OPENERS or t.text.isdigit()


def _relative_clause_speaks(tokens: list[Token], j: int) -> bool:
    """ "X, who said last week that …": the speaker is the relative clause's subject, wherever
    X stands in the sentence ("Guests included X, who said …")."""
    if j + 1 >= len(tokens) or tokens[j].text != ",":
        return False
    k = j + 1
    # "X, the minister who said …": a short appositive before "who".
    while (
        k < min(len(tokens), j + 6)
        and tokens[k].lower != "who"
        and (tokens[k].lower in _TITLE_WORDS or (tokens[k].is_word and tokens[k].text[0].isupper()))
    ):
        k += 1
    return k < len(tokens) and tokens[k].lower == "who" and _speech_verb_at(tokens, _skip_adverbials(tokens, k + 1))


def _object_of_relative_speech(tokens: list[Token], i: int, j: int) -> bool:
    """ "…, which Nvidia CEO X calls the first chip …": X is the subject of a verb of naming
    in a relative clause."""
    k = _title_chain_start(tokens, i, comma=False) - 1
    if k < 0 or tokens[k].lower not in ("which", "what"):
        return False
    verb = _skip_adverbials(tokens, j)
    return verb < len(tokens) and tokens[verb].lower in {"calls", "called", "describes", "described", *_SPEECH_VERBS}


def _headline_credit(tokens: list[Token], i: int, j: int) -> bool:
    """A headline that credits its words to the name after a colon: "Confident about AI:
    Nvidia CEO X", "‘We must talk’: X on US-China AI" — not a section label ("Profile: X",
    "In pictures: X") nor a passive ("Sanctioned by Beijing: X")."""
    k = _title_chain_start(tokens, i, comma=False) - 1
    if k <= 0 or tokens[k].text not in (":", "-", "–", "—"):
        return False
    credited = tokens[:k]
    quoted = credited[-1].text in _CLOSING_QUOTES or (len(credited) > 1 and credited[-2].text in _CLOSING_QUOTES)
    rest = [t for t in tokens[j:] if t.is_word]
    if rest and not (quoted and rest[0].lower == "on"):
        return False
    words = [t for t in credited if t.is_word]
    return quoted or (
        len(words) >= 3 and words[0].lower not in _SECTION_LABELS and not any(t.lower == "by" for t in words)
    )


#: Headline labels before a colon that name a kind of story, not words said.
_SECTION_LABELS = _words(
    """profile obituary obit watch video videos listen podcast explainer analysis opinion comment
    review live photos pictures gallery exclusive breaking update interview transcript q in"""
)


def _headline_clause(tokens: list[Token], j: int) -> bool:
    """ "X: US and China must cooperate", "X: AI détente is still possible" — a headline giving
    the name, a colon and a clause is the person's view; "X: the investor who wants rules" (a
    noun phrase) is a profile."""
    if j + 1 >= len(tokens) or tokens[j].text != ":":
        return False
    rest = tokens[j + 1 :]
    if rest[0].text in _OPENING_QUOTES:
        return True
    if rest[0].lower in ("the", "a", "an", "how", "why", "what", "who", "inside", "meet", "portrait", "profile"):
        return False
    return any(t.lower in _FINITE for t in rest)


#: Finite verbs that make the words after a headline's colon a clause.
_FINITE = _words(
    """is are was were will would must can cannot should could may might has have had need needs
    do does did"""
)


def _skip_coordinated_name(tokens: list[Token], j: int) -> int:
    """Past "and Tobias Wrenfield" in "X and Tobias Wrenfield said", or past a short noun phrase
    with a determiner when a reporting verb follows ("X and her Finnish counterpart argued"):
    both are subjects."""
    if j < len(tokens) and tokens[j].lower == "and":
        k = j + 1
        while k < len(tokens) and _name_word(tokens[k]) and tokens[k].lower not in _CALL:
            k += 1
        if k > j + 1:
            if k < len(tokens) and tokens[k].text == ",":
                # "X, the minister, and Y, her counterpart, said": Y's own aside.
                close = _skip_aside(tokens, k)
                if close is not None and _speech_verb_at(tokens, _skip_adverbials(tokens, close)):
                    return close
            return k
        if k < len(tokens) and tokens[k].lower in _COORDINATED_DETERMINERS:
            k += 1
            for _ in range(4):
                if k < len(tokens) and _speech_verb_at(tokens, _skip_adverbials(tokens, k)):
                    return k
                t = tokens[k] if k < len(tokens) else None
                if t is None or t.lower in _AUXILIARIES or not (t.is_word or t.text in _DASHES):
                    break  # "X and the board were told": passive, not speech
                k += 1
    return j


def _skip_aside(tokens: list[Token], j: int) -> int | None:
    """The index after an appositive or parenthesis opening at ``tokens[j]``, or None when it
    never closes or holds a reporting verb (someone else's: "X, the minister said, …")."""
    closer = {"(": ")"}.get(tokens[j].text, tokens[j].text)
    relative = False
    for k in range(j + 1, min(len(tokens), j + _MAX_ASIDE_TOKENS + 1)):
        if tokens[k].text == closer or (closer in _DASHES and tokens[k].text in _DASHES):
            return k + 1
        # Inside "who …" the verb is the subject's own ("X, the adviser who has warned …, said"),
        # and "asked by reporters" is a passive, not someone else speaking.
        relative = relative or tokens[k].lower == "who"
        passive = k + 1 < len(tokens) and tokens[k + 1].lower == "by"
        if tokens[k].lower in _SPEECH_VERBS and not relative and not passive:
            return None
    return None


def _skip_adverbials(tokens: list[Token], k: int) -> int:
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


def _speech_verb_at(tokens: list[Token], k: int) -> bool:
    """A reporting verb (or phrase) at ``tokens[k]`` whose subject speaks: not a passive ("told
    to", "warned by", "praised for"), not hearsay ("said to be"), not "said nothing", and for
    verbs with other senses only with a complement that says something."""
    if k >= len(tokens):
        return False
    word = tokens[k].lower
    after = tokens[k + 1].lower if k + 1 < len(tokens) else ""
    following = tokens[k + 2].lower if k + 2 < len(tokens) else ""
    if word in _CALL:
        # "called for", "called on"; "called the policy “a wound”", "called it a mistake".
        return (
            after in _CALL_PARTICLES
            or (after in ("it", "this", "that", "them") and following in ("a", "an", "the"))
            or any(t.text in _OPENING_QUOTES for t in tokens[k + 1 : k + 8])
        )
    if word in _SPEAK:
        return after in _SPEAK_PARTICLES
    if _passive(word, after, following):
        return False
    if word in _REJECTING:
        return (after if after not in ("the", "any", "all") else following) in _SPEECH_OBJECTS or after == "that"
    if word in _NEEDS_COMPLEMENT:
        return _says_something(tokens, k + 1) and not (word in ("add", "adds", "added") and after == "to")
    if word in _SPEECH_VERBS:
        return after not in ("nothing", "little")  # "X said nothing about the curbs"
    if word == "to" and after == "say" and k > 0 and tokens[k - 1].lower in ("has", "had", "have"):
        return True  # "what X has to say"
    if word in ("would", "will") and after == "only" and following == "say":
        return True
    if word in ("made", "makes", "make") and after in ("clear", "it"):
        return after == "clear" or following == "clear"
    if (word, after) in _PHRASAL_SPEECH:
        return True
    if word in ("expressed", "expresses", "express", "voiced", "voices", "raised", "raises"):
        return after in _EXPRESSED or following in _EXPRESSED
    if word in ("took", "takes") and after == "to":
        return any(t.lower == "to" for t in tokens[k + 3 : k + 6])  # "took to LinkedIn to criticise"
    if word in _BE:
        if after in _CALL:
            return following in _CALL_PARTICLES
        if after in _QUOTED:
            # "X was quoted by Reuters as saying", "X is quoted as saying"
            return any(t.lower == "saying" for t in tokens[k + 2 : k + 12])
        return after in _SPEECH_ING
    return False


#: Two-word reporting verbs: "X pointed out", "X hit back", "X put it" ("as X put it, …").
_PHRASAL_SPEECH = frozenset(
    {
        ("pointed", "out"),
        ("points", "out"),
        ("point", "out"),
        ("hit", "back"),
        ("hits", "back"),
        ("shot", "back"),
        ("fired", "back"),
        ("lashed", "out"),
        ("lashes", "out"),
        ("weighed", "in"),
        ("weighs", "in"),
        ("spoke", "out"),
        ("speaks", "out"),
        ("put", "it"),
        ("puts", "it"),
    }
)
#: "X expressed concern", "X voiced doubts", "X raised concerns".
_EXPRESSED = _words(
    """concern concerns support hope hopes doubt doubts regret confidence optimism frustration
    disappointment surprise reservations alarm opposition skepticism scepticism worry worries
    fears"""
)


def _passive(word: str, after: str, following: str) -> bool:
    if after == "by" or (word in _PASSIVE_BEFORE_TO and after == "to"):
        return True
    if word in ("said", "says") and after == "to":
        return following not in _AUDIENCES  # "said to be weighing" is hearsay
    if word in _PASSIVE_BEFORE_FOR and (after == "for" or (after == "over" and following not in ("the", "a"))):
        return True
    if word in ("accused", "accuses") and after == "of":
        return True  # "X accused of fraud"
    return word in ("denied", "denies") and (after in _DENIED_THINGS or following in _DENIED_THINGS)


def _says_something(tokens: list[Token], k: int) -> bool:
    """What follows a verb with other senses makes it speech: the end of the sentence or a
    comma ("…,” she added."), a colon or a quotation, or a complement ("that", "in a letter",
    "on LinkedIn", "how", "whether")."""
    if k >= len(tokens):
        return True
    t = tokens[k]
    return t.text in (",", ".", ":", ";", "—", "–") or t.text in _OPENING_QUOTES or t.lower in _COMPLEMENTS


def _title_chain_start(tokens: list[Token], i: int, *, comma: bool) -> int:
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


def _inverted_after(tokens: list[Token], i: int) -> bool:
    """ "“…,” said X", "…, wrote Power Dynamics co-founder X", or "“…” — X"."""
    if i >= 2 and tokens[i - 1].text in _DASHES and tokens[i - 2].text in _CLOSING_QUOTES:
        return True
    k = _title_chain_start(tokens, i, comma=True) - 1
    if k < 0 or tokens[k].lower not in _INVERTING_VERBS:
        return False
    return k == 0 or not tokens[k - 1].is_word


def _according_to(tokens: list[Token], i: int) -> bool:
    """ "according to X", "according to proponents including X", "according to people such
    as X" — not "according to X's profile" (the caller rules out the possessive)."""
    k = _title_chain_start(tokens, i, comma=False) - 1
    if k >= 1 and tokens[k].lower in ("including", "like", "as"):
        k -= 2 if tokens[k].lower == "as" and tokens[k - 1].lower == "such" else 1
        while k >= 1 and tokens[k].is_word and tokens[k].lower not in ("to", "according") and k >= i - 8:
            k -= 1
    return k >= 1 and tokens[k].lower == "to" and tokens[k - 1].lower == "according"


def _introduces_quote(tokens: list[Token], j: int) -> bool:
    """ "X: “…”" or "X put it bluntly: “…”" — a colon right before a quotation."""
    for k in range(j, min(len(tokens) - 1, j + 9)):
        t = tokens[k]
        if t.text == ":":
            return tokens[k + 1].text in _OPENING_QUOTES
        if not (t.is_word and t.text.islower()):
            return False
    return False


def _answers_question(layout: Layout, index: int, tokens: list[Token], j: int) -> bool:
    """A transcript: "Q: Will the US ease its curbs? / Scott: No. …" — the name opens the
    sentence, a colon follows, and the sentence before asks a question, or someone else's turn
    comes earlier ("HASLINDA AMIN: Welcome back. … JEN ZHU SCOTT: Thank you.")."""
    if not (j + 1 < len(tokens) and tokens[j].text == ":") or index == 0:
        return False
    start, end = layout.sentences[index - 1]
    before = layout.text[start:end].rstrip().rstrip("”\"’')")
    question = layout.tokens(index - 1)
    opens_q = len(question) > 1 and question[0].lower in ("q", "question") and question[1].text == ":"
    turns = any(_TURN.match(layout.text, a, b) for a, b in layout.sentences[:index])
    return before.endswith("?") or opens_q or turns


#: A transcript turn: a speaker label in capitals (or "Q"), then a colon.
_TURN = re.compile(r"(?:Q|Question|Interviewer|[A-Z][A-Z'’.-]+(?: [A-Z][A-Z'’.-]+){0,3}):\s")
#: A photo caption's credit: the sentence describes a picture, no one speaks in it.
_PHOTO_CREDIT = re.compile(
    r"\b(?:REUTERS|Reuters|AP|AFP|EPA|Bloomberg|Xinhua)/|AP Photo|Getty Images|Photograph:|Photo:|Photo by|Image:|"
    r"Illustration by|Pictured:|\(Photo"
)


#: Text that every photo credit contains: a paragraph without any is no caption, found
#: without running the credit pattern over it (long paragraphs are common in feeds).
_CREDIT_HINTS = ("/", "Photo", "Getty Images", "Image:", "Illustration by", "Pictured:")


def _caption(layout: Layout, pos: int) -> bool:
    start, end = layout.paragraphs[layout.sentence_paragraph[layout.sentence_of(pos)]]
    paragraph = layout.text[start:end]
    return any(hint in paragraph for hint in _CREDIT_HINTS) and _PHOTO_CREDIT.search(paragraph) is not None


def _pronoun_speaks(layout: Layout, index: int, *, after: int = 0) -> int | None:
    """The token index of a He/She that speaks in sentence ``index`` (from token ``after``):
    opening it ("She said", "But he added"), after an opening phrase ("Speaking to reporters,
    she said") or a quotation ("“…,” she said"), or opening a clause ("…, and he made it clear");
    None when there is none."""
    tokens = layout.tokens(index)
    for k in range(after, len(tokens)):
        t = tokens[k]
        if t.lower not in _PRONOUNS or layout.in_quote(t.start):
            continue
        before = tokens[k - 1] if k else None
        opens = before is None or all(u.lower in _CONNECTIVES or u.text == "," for u in tokens[:k])
        after_phrase = before is not None and (
            before.text == "," or before.text in _CLOSING_QUOTES or (after > 0 and before.lower in _CLAUSE_OPENERS)
        )
        if (opens or after_phrase) and _speech_verb_at(tokens, _skip_adverbials(tokens, k + 1)):
            return k
        if k >= 1 and tokens[k - 1].lower in _INVERTING_VERBS and (k == 1 or not tokens[k - 2].is_word):
            return k  # "“…,” said she"
    return None


def _person_between(
    name: Name,
    own: Sequence[Name],
    others: Sequence[Name],
    *,
    before: bool,
    following: tuple[Field, int, int],
) -> bool:
    """Another named person stands between the mention and the He/She that may be theirs:
    another tracked speaker, or two or more capitalised words that read as a person's name
    ("Ingrid Solberg", not "United States", "Nordlys Compute" or "the Volta Foundry line").
    Searched: the mention's sentence after it (or, with ``before``, all of it) and the
    pronoun's sentence before the pronoun."""
    layout = name.field.layout
    index = layout.sentence_of(name.start)
    lo = layout.sentences[index][0] if before else name.end
    spans = [(name.field, lo, layout.sentences[index][1])]
    f, n, pronoun = following
    spans.append((f, f.layout.sentences[n][0], f.layout.tokens(n)[pronoun].start))
    for field, a, b in spans:
        mine = [(x.start, x.end) for x in own if x.field is field]
        if any(x.field is field and a <= x.start < b for x in others):
            return True
        if _person_runs(field.layout, a, b, skip=[*mine, (name.start, name.end)]):
            return True
        if _role_between(field.layout, a, b, after_name=name.end if field is name.field else None):
            return True
    return False


#: Nouns that name a person by role: "the minister", "her Chinese counterpart".
_ROLES = _words(
    """minister secretary president counterpart ambassador chief ceo chairman chairwoman chair
    spokesperson spokesman spokeswoman envoy official executive founder director governor
    senator premier chancellor adviser advisor negotiator commissioner mayor deputy economist
    analyst professor lawyer judge king queen leader boss head regulator diplomat"""
)
_ROLE_DETERMINERS = _words("the a an his her their its s")


def _role_between(layout: Layout, start: int, end: int, *, after_name: int | None) -> bool:
    """Someone named by role in [start, end): "the Chinese commerce minister", "Britain's
    technology secretary" — but not the speaker's own appositive ("X, the CEO of Y, …")."""
    for index in range(layout.sentence_of(start), len(layout.sentences)):
        if layout.sentences[index][0] >= end:
            break
        tokens = [t for t in layout.tokens(index) if start <= t.start < end]
        for k, t in enumerate(tokens):
            if t.lower not in _ROLES or not any(u.lower in _ROLE_DETERMINERS for u in tokens[max(0, k - 4) : k]):
                continue
            between = layout.text[after_name : t.start] if after_name is not None else ""
            own_aside = between.lstrip().startswith(",") and between.count(",") == 1
            if not own_aside:
                return True
    return False


def _person_runs(layout: Layout, start: int, end: int, *, skip: Iterable[tuple[int, int]] = ()) -> list[list[Token]]:
    """Runs of capitalised words in [start, end) that read as a person's name: two or more
    words, none marking an organisation, place or date, not opened by a determiner ("the
    Volta Foundry line") and without a capitalised function word opening the sentence."""
    skipped = list(skip)
    runs: list[tuple[str, list[Token]]] = []
    run: list[Token] | None = None
    word_before = ""
    for index in range(layout.sentence_of(start), len(layout.sentences)):
        if layout.sentences[index][0] >= end:
            break
        run, word_before = None, ""
        for t in layout.tokens(index):
            if t.start < start or t.start >= end or any(a <= t.start < b for a, b in skipped):
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
    people = []
    for word_before, names in runs:
        if word_before in _THING_DETERMINERS or names[0].lower in _THING_DETERMINERS:
            continue
        while names and (names[0].lower in _FUNCTION_WORDS or names[0].lower in HONORIFICS):
            names = names[1:]
        if len(names) >= 2 and _NOT_PERSON.isdisjoint(n.lower for n in names):
            people.append(names)
    return people


def back_references(keys: Iterable[str], mentions: Sequence[Name], fields: Sequence[Field]) -> list[Name]:
    """Where the person is referred back to by a surname or honorific ("Scott said", "Ms Scott
    said") after their full name (or an alias) first appears, in reading order. A key that
    another person's name also uses ("Jake Sullivan") refers to no one: it is dropped."""
    if not mentions:
        return []
    first = min((m.field.index, m.start) for m in mentions)
    found: list[Name] = []
    for key in keys:
        refs: list[Name] = []
        shared = False
        for f in fields:
            own = [(m.start, m.end) for m in mentions if m.field is f]
            for start in _find_key(f.text, key):
                end = start + len(key)
                if any(a <= start < b for a, b in own):
                    continue
                if f.layout.in_quote(start):
                    continue  # “Great Scott,” a rival joked: no one's name
                if _names_someone_else(f.layout, start, end):
                    # Title case capitalises every word: a headline is no evidence of a name.
                    shared = shared or f.name != "title"
                elif (f.index, start) > first:
                    refs.append(Name(f, start, end))
        if not shared:
            found.extend(refs)
    return found


def _find_key(text: str, key: str) -> Iterable[int]:
    """Whole-word occurrences of ``key`` as written or in capitals, not part of a hyphenated
    name ("Marchetti-Laurent" holds no "Laurent")."""
    for variant in {key, key.upper()}:
        i = text.find(variant)
        while i != -1:
            j = i + len(variant)
            free_before = i == 0 or not (text[i - 1].isalnum() or text[i - 1] in _HYPHENS)
            free_after = j == len(text) or not (text[j].isalnum() or text[j] in _HYPHENS)
            if free_before and free_after:
                yield i
            i = text.find(variant, i + 1)


def _names_someone_else(layout: Layout, start: int, end: int) -> bool:
    """The word at [start, end) is part of a longer name: a capitalised given name before it
    (not a title: "Ms", "Secretary") or a capitalised word after it ("Scott Morrison")."""
    tokens = layout.tokens(layout.sentence_of(start))
    i = next((k for k, t in enumerate(tokens) if t.start >= start), len(tokens))
    j = next((k for k, t in enumerate(tokens) if t.start >= end), len(tokens))
    if j < len(tokens) and _name_word(tokens[j]) and layout.text[tokens[j - 1].end : tokens[j].start].strip() == "":
        return True
    before = tokens[i - 1] if i > 0 else None
    return before is not None and _name_word(before) and before.lower not in HONORIFICS | _TITLE_WORDS


def _name_word(t: Token) -> bool:
    return (
        t.is_word
        and t.text[0].isupper()
        and not t.text.isupper()
        and t.lower not in _FUNCTION_WORDS
        and t.lower not in _ADVERBIALS
        and t.lower not in _CONNECTIVES
        and t.lower not in _SPEECH_VERBS
        and t.lower not in _NOT_PERSON
    )


def reference_keys(names: Iterable[str]) -> set[str]:
    """The words a person may be referred back to by: the last word of their name and of each
    alias ("Scott", and "Xi" from the alias "President Xi"), the hyphenated last part
    ("Zhu-Scott"), and the last two words of a longer name ("Zhu Scott")."""
    keys: set[str] = set()
    for name in names:
        parts = name.replace(".", " ").split()
        if not parts:
            continue
        keys.add(parts[-1])
        if len(parts) >= 3:
            keys.add(" ".join(parts[-2:]))
    return {k for k in keys if len(k) >= 2 and k[0].isupper() and k.lower() not in HONORIFICS}
