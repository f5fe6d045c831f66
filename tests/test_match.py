"""The matching contract, docs/matching.md, clause by clause in the order of its sections.

Each row is a piece of article text and what a reader of the alert should get from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from watcher.config import Speaker, Theme
from watcher.match import Matcher
from watcher.parse import html_to_text
from watcher.types import Article, Hit

JEN = Speaker("Jen Zhu Scott", aliases=("Zhu Scott", "Jen Zhu-Scott"))
ZOE = Speaker("Zoé Marchetti-Laurent", aliases=("Zoé Marchetti", "Commissioner Marchetti-Laurent"))
TOBY = Speaker("Tobias Wrenfield", aliases=("Toby Wrenfield",))
SHORT = Speaker("Li Wei")  # 6 characters: no typo tolerance

US_CHINA = Theme(
    "US-China AI collaboration",
    all_of=(
        ("US", "U.S.", "United States", "America", "Washington"),
        ("China", "Chinese", "Beijing"),
        ("AI", "artificial intelligence"),
    ),
    any_of=("collaboration", "cooperation", "partnership", "joint", "US plus China"),
)
EXPORT = Theme(
    "Semiconductor export controls",
    all_of=(
        ("semiconductor", "chip", "GPU"),
        ("export control", "export restriction", "export ban", "entity list"),
    ),
)
SAFETY = Theme(
    "AI safety standards",
    all_of=(
        ("AI", "artificial intelligence"),
        ("safety protocol", "safety standard", "alignment", "misuse"),
    ),
    none_of=("sponsored", "advertisement"),
)
DECOUPLING = Theme("Tech decoupling", all_of=(("decoupling", "decouple", "tech war", "arms race"),))

MATCHER = Matcher([JEN, ZOE, TOBY, SHORT], [US_CHINA, EXPORT, SAFETY, DECOUPLING])


def article(content: str = "", *, title: str = "", summary: str = "") -> Article:
    digest = hashlib.sha256((title + summary + content).encode()).hexdigest()
    return Article(
        key=digest,
        entry_id=digest,
        link=None,
        title=title,
        summary=summary,
        content=content,
        published=None,
        content_hash=digest,
    )


def hits_for(text: str, matcher: Matcher = MATCHER) -> dict[str, Hit]:
    return {h.watch: h for h in matcher.match(article(text))}


def speakers(text: str) -> set[str]:
    return {w for w, h in hits_for(text).items() if h.kind == "speaker"}


def statements(text: str) -> set[str]:
    return {w for w, h in hits_for(text).items() if h.kind == "speaker" and h.statement}


def themes(text: str, matcher: Matcher = MATCHER) -> set[str]:
    return {w for w, h in hits_for(text, matcher).items() if h.kind == "theme"}


# -- speakers: what counts as naming the person ----------------------------------------------

NAME_TOLERANCE = [
    ("exact", "Jen Zhu Scott visited Berlin."),
    ("all caps", "JEN ZHU SCOTT VISITS BERLIN"),
    ("lower case", "a profile of jen zhu scott"),
    ("diacritic in the text", "Jen Zhū Scott visited Berlin."),
    ("diacritic dropped", "Zoe Marchetti-Laurent visited Berlin."),
    ("hyphen instead of space", "Jen Zhu-Scott visited Berlin."),
    ("space instead of hyphen", "Zoé Marchetti Laurent visited Berlin."),
    ("en dash between parts", "Jen Zhu–Scott visited Berlin."),
    ("possessive", "Jen Zhu Scott’s firm grew."),
    ("straight possessive", "Jen Zhu Scott's firm grew."),
    ("line break", "Jen Zhu\nScott visited Berlin."),
    ("non-breaking space", "Jen\u00a0Zhu\u00a0Scott visited Berlin."),
    ("alias", "Zhu Scott visited Berlin."),
    ("alias with title", "Commissioner Marchetti-Laurent visited Berlin."),
    ("typo: letter dropped", "Jen Zhu Scot visited Berlin."),
    ("typo: letter added", "Jen Zhu Scottt visited Berlin."),
    ("typo: letter changed", "Jen Zhu Scoth visited Berlin."),
    ("typo: letters swapped", "Tobias Wrenfeild visited Berlin."),
    ("typo in the first part", "Tobais Wrenfield visited Berlin."),
    ("typo in a hyphenated part", "Zoé Marchetti-Laurant visited Berlin."),
    ("name at the very end", "A profile of Tobias Wrenfield"),
]


@pytest.mark.parametrize(("case", "text"), NAME_TOLERANCE, ids=[c for c, _ in NAME_TOLERANCE])
def test_name_variants_are_mentions(case: str, text: str) -> None:
    assert len(speakers(text)) == 1, case


@pytest.mark.parametrize(
    ("html", "name"),
    [
        (
            '<a href="/p/1">Jen Zhu</a>-Scott said',
            "Jen Zhu Scott",
        ),  # R3: a tag splits the name
        ("<b>Jen</b>Zhu Scott visited", "Jen Zhu Scott"),
        ("Jen&nbsp;Zhu&#160;Scott visited", "Jen Zhu Scott"),
        ("<p>Tobias</p><p>Wrenfield</p>", "Tobias Wrenfield"),
        ("Zo&eacute; Marchetti-Laurent visited", "Zoé Marchetti-Laurent"),
    ],
)
def test_names_split_by_html_tags_or_entities_are_mentions(html: str, name: str) -> None:
    assert speakers(html_to_text(html)) == {name}


NOT_A_MENTION = [
    ("surname alone", "Scott visited Berlin."),
    ("given name alone", "Jen visited Berlin."),
    ("middle name alone", "The Zhu family visited Berlin."),
    ("surname of a hyphenated name", "Marchetti-Laurent visited Berlin."),
    ("another person sharing the surname", "Jennifer Scott visited Berlin."),
    ("another person sharing the given name", "Zhu Rong visited Berlin."),
    ("another Wrenfield", "Clara Wrenfield visited Berlin."),
    ("parts reordered", "Scott Zhu visited Berlin."),
    ("R2: comma between parts", "Authors: Zhu, Scott; Okafor, Jen."),
    ("R2: full stop between parts", "It was Tobias. Wrenfield arrived later."),
    ("R1: typo in a 3-letter part", "Jen Zhou Scott visited Berlin."),
    ("R1: letter dropped from a 3-letter part", "Jen Zu Scott visited Berlin."),
    ("two typos", "Tobais Wrenfeild visited Berlin."),
    ("inside a longer word", "Jen Zhu Scottish dancers visited Berlin."),
    ("prefix of a longer word", "Zhuhai and Scottsdale are twinned."),
    ("R4: a descriptor", "The chief executive of Northvane Labs visited Berlin."),
    ("typo in a short name", "Li Wey visited Berlin."),
]


@pytest.mark.parametrize(("case", "text"), NOT_A_MENTION, ids=[c for c, _ in NOT_A_MENTION])
def test_partial_or_other_names_are_not_mentions(case: str, text: str) -> None:
    assert speakers(text) == set(), case


def test_short_name_still_matches_exactly() -> None:
    assert speakers("Li Wei visited Berlin.") == {"Li Wei"}


# -- statements: speech attributed to the speaker --------------------------------------------

STATEMENTS = [
    ("reporting verb", "Jen Zhu Scott said the two countries should cooperate."),
    ("present tense", "Jen Zhu Scott says the two countries should cooperate."),
    ("headline verb", "JEN ZHU SCOTT URGES US AND CHINA TO COOPERATE"),
    ("quote then name + verb", "“We must cooperate,” Jen Zhu Scott said."),
    ("quote then inverted verb", "“We must cooperate,” said Jen Zhu Scott."),
    (
        "inverted verb with title",
        "“We must cooperate,” said Power Dynamics co-founder Jen Zhu Scott.",
    ),
    ("verb introduces quote", "Jen Zhu Scott said: “We must cooperate.”"),
    ("colon introduces quote", "Jen Zhu Scott: “We must cooperate.”"),
    (
        "appositive",
        "Jen Zhu Scott, co-founder and CEO of Power Dynamics, said rivalry wastes talent.",
    ),
    ("parenthesis", "Jen Zhu Scott (pictured) warned against decoupling."),
    (
        "title before the name",
        "Power Dynamics co-founder Jen Zhu Scott warned against decoupling.",
    ),
    ("auxiliary and adverb", "Jen Zhu Scott has repeatedly argued for engagement."),
    ("time phrase", "Jen Zhu Scott on Thursday told reporters that rules were needed."),
    ("called for", "Jen Zhu Scott called for a joint working group."),
    ("wrote", "Jen Zhu Scott wrote in a blog post that rules were needed."),
    ("emphasised", "Zhu Scott emphasised that a tech war would slow AI."),
    ("replied", "Commissioner Marchetti-Laurent replied that compute mattered less."),
    ("according to", "According to Jen Zhu Scott, rivalry wastes talent."),
    (
        "according to with title",
        "Rivalry wastes talent, according to Power Dynamics CEO Jen Zhu Scott.",
    ),
    (
        "in an interview",
        "In an interview, Jen Zhu Scott described rivalry as wasteful.",
    ),
    (
        "relative clause",
        "Jen Zhu Scott, who said last year that rivalry wastes talent, will speak.",
    ),
    (
        "relative clause after a list",
        "Guests included Jen Zhu Scott, who said rules were needed.",
    ),
    ("progressive", "Jen Zhu Scott is urging investors to wait."),
    (
        "after a clause opener",
        "The forum ended after Jen Zhu Scott warned of an arms race.",
    ),
    (
        "two speakers as subject",
        "Jen Zhu Scott and Tobias Wrenfield said rules were needed.",
    ),
    (
        "next sentence: She + verb",
        "Zhu Scott attended as an observer. She told the meeting rules were needed.",
    ),
    (
        "next sentence: He also said",
        "Toby Wrenfield spoke at a London event on Tuesday. He also said chips mattered.",
    ),
    (
        "next sentence: quote, she said",
        "Jen Zhu Scott took the stage. “Decoupling is a mistake,” she said.",
    ),
    (
        "next sentence after a place name",
        "Jen Zhu Scott spoke in the United States. She said rules were needed.",
    ),
    (
        "sentence after U.S.",
        "Jen Zhu Scott moved to the U.S. She said rules were needed there.",
    ),
    # Held-out corpus (tests/data/heldout): forms the dev corpus does not use.
    ("the name is the appositive", "The regulator, Zoé Marchetti-Laurent, said rules were needed."),
    (
        "appositive after a possessive title",
        "The bloc's standards commissioner, Zoé Marchetti-Laurent, told parliament rules were needed.",
    ),
    (
        "two asides",
        "Tobias Wrenfield, founder of Northvane Labs, which trains large models, said rules were needed.",
    ),
    (
        "age, then a description",
        "Tobias Wrenfield, 44, a physicist who now runs a lab, told the hearing rules were needed.",
    ),
    (
        "aside with the speaker's own earlier speech",
        "Jen Zhu Scott, the investor who has warned of an arms race before, said rules were needed.",
    ),
    ("adverb and year before the verb", "Jen Zhu Scott first said in 2019 that rules were needed."),
    ("coordinated with a common noun", "Jen Zhu Scott and her co-founder argued that rules were needed."),
    (
        "next sentence after an organisation with 'the'",
        "Tobias Wrenfield toured the Volta Foundry line on Friday. He said chips mattered.",
    ),
    (
        "next sentence after a longer organisation name",
        "Zoé Marchetti-Laurent opened the Nordic Compute Forum in Oslo. She warned of misuse.",
    ),
    (
        "next sentence after an organisation named without 'the'",
        "Tobias Wrenfield met Western Grid Reliability Council staff. He said chips mattered.",
    ),
    (
        "inverted verb, possessive title, appositive",
        "“Rules are needed,” said the company’s founder, Jen Zhu Scott, on Wednesday.",
    ),
    (
        "aside, then a coordinated subject",
        "Zoé Marchetti-Laurent, the EU commissioner, and her Swiss counterpart said rules were needed.",
    ),
    (
        "next sentence, the name an object after a place",
        "In Geneva, delegates questioned Tobias Wrenfield. He said chips mattered.",
    ),
    # Wire forms from real news (issue 15).
    (
        "she said after an opening phrase",
        "Jen Zhu Scott joined a panel on chips. Speaking to reporters after the panel, she said rules were needed.",
    ),
    ("surname after the full name", "Jen Zhu Scott joined a panel in Geneva. Scott said rules were needed."),
    ("honorific and surname", "Jen Zhu Scott joined a panel in Geneva. Ms Scott said rules were needed."),
    ("abbreviated honorific", "Jen Zhu Scott joined a panel in Geneva. Ms. Scott said rules were needed."),
    (
        "surname at the start of a transcript answer",
        "Jen Zhu Scott sat down with us. Q: Will the US ease its curbs? Scott: No. Beijing will build its own.",
    ),
    ("denied", "Jen Zhu Scott denied that the fund had sold its stake."),
    ("quoted by a paper as saying", "Jen Zhu Scott was quoted by the Financial Times as saying rules were needed."),
    ("quoted as saying", "Tobias Wrenfield is quoted as saying chips mattered."),
    (
        "she said after a sentence naming a company",
        "Jen Zhu Scott praised Nordlys Compute for its new design. She said rules were needed.",
    ),
    ("her statement said", "Jen Zhu Scott's statement said the two countries should cooperate."),
    ("her remarks and a quotation", "Jen Zhu Scott's call to “build together” drew applause."),
    ("announced", "Tobias Wrenfield announced a new safety lab on Monday."),
    ("has to say", "Here is what Jen Zhu Scott has to say about chips."),
    ("according to people including", "Rules are needed, according to proponents including Jen Zhu Scott."),
    ("over the weekend", "Tobias Wrenfield over the weekend called for joint testing."),
    ("called on", "Jen Zhu Scott called on both governments to talk."),
    (
        "the likes of, with asides",
        "The likes of Jen Zhu Scott, a fund founder, and Anna Berg, a regulator, called for unity.",
    ),
    (
        "he made it clear, later in the sentence",
        "The minister said she spoke to Tobias Wrenfield and he made it clear that chips mattered.",
    ),
    ("relative clause of naming", "The chip, which Tobias Wrenfield calls the first of its kind, ships soon."),
    ("called it, with a quotation", "Jen Zhu Scott called the policy “a self-inflicted wound”."),
    ("pointed out", "Jen Zhu Scott pointed out that China still imports most of its chips."),
    ("accused", "Tobias Wrenfield accused Beijing of dumping subsidised chips."),
    ("expressed concern", "Jen Zhu Scott expressed concern that the rules would push allies away."),
    ("would only say", "Jen Zhu Scott would only say that the talks had been constructive."),
    ("a list of speakers, all", "Tobias Wrenfield, Anna Berg and Jen Zhu Scott all warned that the split would cost."),
    ("and others", "Jen Zhu Scott and others said the curbs had come too late."),
    (
        "a long aside",
        "Jen Zhu Scott, a former banker who co-founded Power Dynamics in 2019 and has since become one of the most "
        "quoted voices on the technology relationship between Washington and Beijing, said the rules would hurt.",
    ),
    (
        "a passive inside the aside",
        "Jen Zhu Scott, asked by reporters whether she would invest, said it was too early.",
    ),
    ("her message, then a colon", "Jen Zhu Scott's message to Washington was blunt: stop treating AI like a weapon."),
    ("had a message", "Jen Zhu Scott had a simple message for the room: talk to Beijing now."),
    ("as she put it", "As Jen Zhu Scott put it, the US cannot sanction its way to leadership."),
    ("her comments came", "Jen Zhu Scott's comments came as Washington weighed new curbs."),
    ("took to a platform to criticise", "Jen Zhu Scott took to LinkedIn to criticise the plan."),
    (
        "relative clause after a title",
        "The policy was drawn up by Tobias Wrenfield, the minister who said last year that Europe was naive.",
    ),
    (
        "a transcript's turns",
        "HASLINDA AMIN: Welcome back. Joining us is Jen Zhu Scott.\nJEN ZHU SCOTT: Thank you. The controls are biting.",
    ),
    (
        "an exclamation is no other Scott",
        "Jen Zhu Scott founded Power Dynamics. Ms Scott said it would open an office. “Great Scott,” a rival joked.",
    ),
]


@pytest.mark.parametrize(("case", "text"), STATEMENTS, ids=[c for c, _ in STATEMENTS])
def test_attributed_speech_is_a_statement(case: str, text: str) -> None:
    found = statements(text)
    assert found and found <= {
        "Jen Zhu Scott",
        "Tobias Wrenfield",
        "Zoé Marchetti-Laurent",
    }, case


NOT_A_STATEMENT = [
    ("attending", "Jen Zhu Scott attended the forum as an observer."),
    ("guest list", "Guests included a former negotiator and Jen Zhu Scott."),
    ("pictured", "Jen Zhu-Scott and academics pose for a group photo."),
    (
        "did not respond",
        "Tobias Wrenfield, the lab’s chief executive, did not respond to requests for comment.",
    ),
    ("declined to comment", "Jen Zhu Scott declined to comment."),
    (
        "joined a board, then will serve",
        "Jen Zhu Scott has joined the board. She will serve a three-year term.",
    ),
    (
        "commissioned",
        "The report, commissioned by Commissioner Marchetti-Laurent, said rules vary.",
    ),
    (
        "founded by",
        "The AI lab founded by Toby Wrenfield said it would postpone the office.",
    ),
    (
        "company speaks",
        "Jen Zhu Scott’s advisory firm has taken a stake, Power Dynamics said in a statement.",
    ),
    ("possessive subject", "Toby Wrenfield’s lab said it would wait."),
    (
        "inside someone else's quote",
        "“Jen Zhu Scott has put the right question,” the minister said.",
    ),
    (
        "inside a quote, inverted",
        "“Even Toby Wrenfield’s lab buys from both sides,” said one manager.",
    ),
    (
        "columnist argues",
        "Supporters, including Jen Zhu Scott, are losing ground, a columnist argues.",
    ),
    ("object of told", "The minister told Jen Zhu Scott that the plan would fail."),
    ("object of a preposition", "Critics of Jen Zhu Scott say the plan would fail."),
    ("someone else's aside", "Jen Zhu Scott, the minister said, is wrong about chips."),
    ("passive", "Jen Zhu Scott was told to wait."),
    ("future", "Jen Zhu Scott will speak at the summit."),
    ("written about", "A columnist argued that Jen Zhu Scott was wrong."),
    (
        "interview with the speaker as object",
        "In an interview with Jen Zhu Scott, the minister praised the plan.",
    ),
    (
        "she belongs to another named person",
        "Zoé Marchetti-Laurent appointed Ingrid Solberg as deputy. Solberg said she would focus on misuse.",
    ),
    (
        "another person before the pronoun",
        "Zoé Marchetti-Laurent met Ingrid Solberg on Monday. She said talks went well.",
    ),
    (
        "pronoun two sentences later",
        "Jen Zhu Scott attended. The hall was full. She said rules were needed.",
    ),
    ("headline colon without quotes", "Jen Zhu Scott: the investor who wants rules"),
    ("surname before the full name", "Scott said nothing new. Jen Zhu Scott attended."),
    (
        "surname that another person in the entry shares",
        "Jen Zhu Scott attended with Jake Scott. Scott said nothing new.",
    ),
    ("the speaker's deputy speaks", "“Rules are needed,” said Jen Zhu Scott’s deputy, Anna Berg."),
    ("according to her profile", "She studied law, according to Jen Zhu Scott's LinkedIn profile."),
    ("her spokesperson speaks", "Jen Zhu Scott’s spokesperson said the fund had not sold."),
    ("posted a photo", "Jen Zhu Scott posted a photo from the Great Wall on Instagram."),
    ("added partners", "Tobias Wrenfield added two new partners to the fund this year."),
    ("wrote a cheque", "Jen Zhu Scott wrote a $5m cheque to the start-up."),
    ("claimed a seat", "Jen Zhu Scott claimed a seat on the trade committee."),
    ("maintains homes", "Jen Zhu Scott maintains homes in Hong Kong and London."),
    ("observed the talks", "Tobias Wrenfield observed the talks as a guest."),
    ("dismissed staff", "Tobias Wrenfield dismissed two senior executives in March."),
    ("said nothing", "Jen Zhu Scott said nothing about the curbs during her keynote."),
    ("has said nothing since", "Jen Zhu Scott stayed silent after the raid. She has said nothing since."),
    (
        "a photo caption",
        "Jen Zhu Scott speaks to the media at a conference in Beverly Hills, May 2, 2023. REUTERS/Mike Blake",
    ),
    (
        "someone named by role before the pronoun",
        "Jen Zhu Scott met the Chinese commerce minister on Monday. He said the talks were frank.",
    ),
    (
        "another person named before an opening phrase's pronoun",
        "Jen Zhu Scott met Ingrid Solberg in Oslo. Speaking to reporters later, she said talks went well.",
    ),
    (
        "the sentence goes on after the aside",
        "Tobias Wrenfield, the lab's chief, has raised prices, said one customer.",
    ),
    ("coordinated subject, passive", "Jen Zhu Scott and the board were told to wait."),
    (
        "another person with a title after the mention",
        "Jen Zhu Scott thanked the minister, Ingrid Solberg. She said talks went well.",
    ),
    (
        "another person before the name, which is an object",
        "The regulator’s chair, Anna Berg, rejected a request from Jen Zhu Scott. She said rules were clear.",
    ),
    (
        "another person after an organisation",
        "Tobias Wrenfield met the Northvane Labs board and Anton Weiss. He said chips mattered.",
    ),
]


@pytest.mark.parametrize(("case", "text"), NOT_A_STATEMENT, ids=[c for c, _ in NOT_A_STATEMENT])
def test_mentions_without_attributed_speech_are_not_statements(case: str, text: str) -> None:
    assert speakers(text), f"{case}: should still be a mention"
    assert statements(text) == set(), case


def test_a_headline_naming_the_speaker_carries_the_she_says_under_it() -> None:
    art = article(
        summary="The two countries must work together on AI, she says.", title="Jen Zhu Scott on the chip war"
    )
    assert {h.watch for h in MATCHER.match(art) if h.statement} == {"Jen Zhu Scott"}


def test_a_headline_role_is_the_speaker_the_story_names_with_it() -> None:
    art = article(
        summary="As talks stall, Northvane CEO Tobias Wrenfield is choosing engagement.",
        title="Northvane CEO calls for collaboration with China",
    )
    (hit,) = [h for h in MATCHER.match(art) if h.kind == "speaker"]
    assert hit.statement
    assert [e.field for e in hit.evidence] == ["title", "summary"]


HEADLINE_STATEMENTS = [
    ("name, colon, clause", "Jen Zhu Scott: US and China must cooperate on AI safety", True),
    ("Title Case clause", "Jen Zhu Scott: AI Détente Is Still Possible", True),
    ("a quotation credited", "‘We must talk’: Jen Zhu Scott on US-China AI", True),
    ("Title Case inverted", "US-China AI Race Is A ‘False Choice,’ Says Power Dynamics CEO Jen Zhu Scott", True),
    ("Title Case coordination", "Jen Zhu Scott And Tobias Wrenfield Call For A US-China AI Hotline", True),
    ("headline verb", "Tobias Wrenfield slams Brussels over AI Act delays", True),
    ("hits back", "Jen Zhu Scott hits back at critics of her China fund", True),
    ("told to", "Jen Zhu Scott told to step down from Power Dynamics board", False),
    ("urged to", "Tobias Wrenfield urged to quit as losses mount", False),
    ("said to be", "Jen Zhu Scott said to be weighing bid for exchange seat", False),
    ("Title Case said to", "Jen Zhu Scott Said To Weigh Hong Kong Listing", False),
    ("warned by", "Jen Zhu Scott warned by SEC over disclosures", False),
    ("praised for", "Jen Zhu Scott praised for role in US-China AI dialogue", False),
    ("criticised over", "Tobias Wrenfield criticised over Huawei meeting", False),
    ("denied entry", "Jen Zhu Scott denied entry to US over China links", False),
    ("accused of", "Tobias Wrenfield accused of misleading investors", False),
    ("a section label", "Profile: Jen Zhu Scott", False),
    ("an obituary", "Obituary: Tobias Wrenfield", False),
    ("a passive before the colon", "Sanctioned by Beijing: Jen Zhu Scott", False),
    ("a profile after the colon", "Jen Zhu Scott: the investor who wants rules", False),
]


@pytest.mark.parametrize(("case", "title", "speaks"), HEADLINE_STATEMENTS, ids=[c for c, _, _ in HEADLINE_STATEMENTS])
def test_headline_forms(case: str, title: str, speaks: bool) -> None:
    hits = [h for h in MATCHER.match(article(title=title, summary="Markets were calm.")) if h.kind == "speaker"]
    assert hits and all(h.statement is speaks for h in hits), case


def test_a_hyphen_that_goes_on_into_another_name_is_another_person() -> None:
    anna = Matcher([Speaker("Anna Berg")], [])
    assert anna.match(article("Anna Berg-Hansen, an economist, said exports would slow.")) == []
    assert anna.match(article("Maria-Anna Berg, an economist, said exports would slow.")) == []
    assert [h.statement for h in anna.match(article("Anna Berg said exports would slow."))] == [True]


def test_a_headline_may_credit_its_words_after_a_colon() -> None:
    art = article(summary="Chips matter.", title="Confident about chips: Northvane CEO Tobias Wrenfield")
    assert [h.statement for h in MATCHER.match(art) if h.kind == "speaker"] == [True]
    art = article(summary="Chips matter.", title="Tobias Wrenfield: the physicist who builds labs")
    assert [h.statement for h in MATCHER.match(art) if h.kind == "speaker"] == [False]


def test_a_surname_in_the_headline_before_the_full_name_is_no_statement() -> None:
    art = article(summary="Tobias Wrenfield toured the plant.", title="Wrenfield says chips matter")
    assert [h.statement for h in MATCHER.match(art) if h.kind == "speaker"] == [False]


def test_no_mention_means_no_statement() -> None:
    # R4: the surname alone speaks, but it names no one tracked.
    assert hits_for("Wrenfield said chips mattered.") == {}


def test_quote_attribution_credits_the_right_speaker() -> None:
    text = "“Jen Zhu Scott has put the right question on the table,” Zoé Marchetti-Laurent said."
    assert speakers(text) == {"Jen Zhu Scott", "Zoé Marchetti-Laurent"}
    assert statements(text) == {"Zoé Marchetti-Laurent"}


# -- themes: words ---------------------------------------------------------------------------

THEME_MATCHES = [
    (
        "all groups + any_of",
        "US and Chinese AI labs announced a partnership.",
        US_CHINA,
    ),
    (
        "dotted acronym + en dash",
        "Hospitals forge U.S.–Beijing AI partnerships.",
        US_CHINA,
    ),
    (
        "acronym before a hyphen",
        "A US-Chinese AI partnership was signed.",
        US_CHINA,
    ),
    ("multi-word any_of", "She backs an AI future built by US plus China.", US_CHINA),
    ("phrase with hyphen", "Chip export-controls tightened.", EXPORT),
    ("plural of phrase", "New export controls on chips.", EXPORT),
    ("acronym plural", "An export ban on gaming GPUs.", EXPORT),
    ("entity list", "GPU rental firms on the entity list.", EXPORT),
    ("plural -s", "When a supply chain decouples, who pays?", DECOUPLING),
    ("-ing inflection", "Analysts warn that decoupling is under way.", DECOUPLING),
    ("-ed inflection", "The two chip supply chains decoupled.", DECOUPLING),
    ("plural of the last word", "Echoes of Cold War arms races.", DECOUPLING),
    (
        "typo in an 8+ letter word",
        "Universities launch US-Chinese AI partnrship.",
        US_CHINA,
    ),
    ("typo plus plural", "Universities launch US-Chinese AI partnrships.", US_CHINA),
    (
        "hyphenated compound contains AI",
        "AI-drafted filings raise misuse concerns.",
        SAFETY,
    ),
    (
        "negation is still presence",
        "AI labs have no safety protocol at all.",
        SAFETY,
    ),
    ("all caps headline", "STANDARDS COUNCIL TO AUDIT AI ALIGNMENT CLAIMS", SAFETY),
]


@pytest.mark.parametrize(("case", "text", "theme"), THEME_MATCHES, ids=[c for c, _, _ in THEME_MATCHES])
def test_theme_matches(case: str, text: str, theme: Theme) -> None:
    assert theme.name in themes(text), case


THEME_MISSES = [
    (
        "pronoun us is not US",
        "Investors keep asking us about China and our AI cooperation.",
        US_CHINA,
    ),
    (
        "ai inside said/Thai",
        "The Thai regulator said food safety standards apply.",
        SAFETY,
    ),
    (
        "AIDS is not AI",
        "AIDS clinics in China founded in the US expand their partnership.",
        US_CHINA,
    ),
    (
        "USB is not US",
        "USB-C rule for Chinese phones, AI-powered models first, in partnership.",
        US_CHINA,
    ),
    (
        "American is not America (another word, not an inflection)",
        "American and Chinese AI researchers in scientific cooperation.",
        US_CHINA,
    ),
    (
        "one group missing",
        "US and Chinese researchers announce a cooperation on climate.",
        US_CHINA,
    ),
    ("any_of missing", "US and China AI rivalry grows.", US_CHINA),
    ("typo in a short word", "Chip stocks slip on tighter exprot controls.", EXPORT),
    ("words out of order", "Controls on exports of high-end GPUs.", EXPORT),
    ("closed compound", "Chipmakers fear an export ban.", EXPORT),
    (
        "compound is not the phrase",
        "Faster than arms-control talks can keep up.",
        DECOUPLING,
    ),
    ("unlisted synonym", "Export curbs on chip tools widen.", EXPORT),
    (
        "derived word is another word",
        "Scientists keep cooperating on AI in the US and China.",
        US_CHINA,
    ),
    (
        "none_of vetoes",
        "Sponsored: is your AI ready for new safety standards?",
        SAFETY,
    ),
    (
        "plural none_of vetoes",
        "Advertisements cite misuse of artificial intelligence.",
        SAFETY,
    ),
    (
        "typo in none_of vetoes",
        "This advertisment covers AI safety standards.",
        SAFETY,
    ),
]


@pytest.mark.parametrize(("case", "text", "theme"), THEME_MISSES, ids=[c for c, _, _ in THEME_MISSES])
def test_theme_does_not_match(case: str, text: str, theme: Theme) -> None:
    assert theme.name not in themes(text), case


def test_a_currency_and_a_city_are_not_the_words_they_start_with() -> None:
    assert US_CHINA.name not in themes("Chinese AI start-up raises US$1bn in partnership round.")
    matcher = Matcher([], [Theme("xi", all_of=(("Xi",), ("AI",)))])
    assert themes("Xi'an hosts an AI fair.", matcher) == set()
    assert themes("Xi's AI plan.", matcher) == {"xi"}


def test_word_star_matches_every_word_it_starts() -> None:
    matcher = Matcher([], [Theme("chips", all_of=(("chipmak*",), ("export ban",)))])
    assert themes("Chipmakers fear an export ban.", matcher) == {"chips"}
    assert themes("Chipmaking faces an export ban.", matcher) == {"chips"}
    assert themes("Chips face an export ban.", matcher) == set()


def test_equals_sign_matches_the_word_exactly() -> None:
    matcher = Matcher([], [Theme("cloud", all_of=(("=cloud",), ("Malaysia",)))])
    assert themes("A new cloud region opens in Malaysia.", matcher) == {"cloud"}
    assert themes("Mining deaths clouded Malaysia's battery plans.", matcher) == set()
    assert themes(
        "Mining deaths clouded Malaysia's battery plans.", Matcher([], [Theme("c", all_of=(("cloud",), ("Malaysia",)))])
    ) == {"c"}


# -- themes: proximity ------------------------------------------------------------------------

FAR_APART = (
    "US officials met on Monday. The weather was fine and the hall was full. "
    "Chinese delegates arrived late. Later, AI researchers presented a partnership on climate data."
)


def test_groups_must_meet_in_one_sentence_by_default() -> None:
    assert themes("The US and Chinese AI labs signed a partnership. The hall was full.") == {US_CHINA.name}
    assert US_CHINA.name not in themes(FAR_APART)


def test_the_headline_is_read_with_the_sentence_under_it() -> None:
    art = article("Officials widened them to GPU chips.", title="Export controls widen", summary="Markets were calm.")
    assert EXPORT.name not in {h.watch for h in MATCHER.match(art)}
    art = article(title="Northvane chips hit by new rules", summary="The export controls cover every GPU line.")
    assert EXPORT.name in {h.watch for h in MATCHER.match(art)}


def test_a_picture_credit_under_the_headline_is_not_its_sentence() -> None:
    art = article(
        title="New export controls hit Northvane",
        summary="Photo by Anna Berg / Example News\nThe rules cover GPU chips sold abroad.",
    )
    assert EXPORT.name in {h.watch for h in MATCHER.match(art)}


def test_near_paragraph_words_and_article() -> None:
    two_sentences = "The US and Chinese delegations met. They agreed an AI partnership."
    two_paragraphs = "The US and Chinese delegations met.\nThey agreed an AI partnership."
    by = {near: Matcher([], [replace(US_CHINA, near=near)]) for near in ("sentence", "paragraph", "article", 10)}
    assert themes(two_sentences, by["sentence"]) == set()
    assert themes(two_sentences, by["paragraph"]) == {US_CHINA.name}
    assert themes(two_paragraphs, by["paragraph"]) == set()
    assert themes(two_paragraphs, by["article"]) == {US_CHINA.name}
    # From "US" to "partnership": 9 words, then 12.
    assert themes(two_sentences, by[10]) == {US_CHINA.name}
    assert (
        themes("The US and Chinese delegations met for long hours before agreeing an AI partnership.", by[10]) == set()
    )


def test_paragraphs_come_from_html_blocks() -> None:
    matcher = Matcher([], [replace(US_CHINA, near="paragraph")])
    html = "<p>The US and Chinese delegations met.</p><p>They agreed an AI partnership.</p>"
    assert themes(html_to_text(html), matcher) == set()
    assert themes(html_to_text(html.replace("</p><p>", " ")), matcher) == {US_CHINA.name}


# -- themes: vetoes ---------------------------------------------------------------------------


def test_a_veto_removes_only_its_sentence_by_default() -> None:
    text = "Pinterest, which sponsored the event, served lunch. AI labs compared safety protocols."
    assert themes(text) == {SAFETY.name}
    assert themes("Sponsored AI labs compared safety protocols.") == set()


def test_a_veto_is_not_part_of_a_hyphenated_compound() -> None:
    assert themes("State-sponsored hackers tested AI safety protocols.") == {SAFETY.name}


def test_a_veto_in_the_headline_vetoes_the_whole_article() -> None:
    art = article("AI labs publish safety protocols.", title="Sponsored: a word from Lumenta")
    assert MATCHER.match(art) == []


def test_veto_scope_paragraph_and_article() -> None:
    text = "Our partner is sponsored by Lumenta.\nAI labs compared safety protocols."
    assert themes(text, Matcher([], [replace(SAFETY, none_of_scope="paragraph")])) == {SAFETY.name}
    assert themes(text, Matcher([], [replace(SAFETY, none_of_scope="article")])) == set()
    same_paragraph = text.replace("\n", " ")
    assert themes(same_paragraph, Matcher([], [replace(SAFETY, none_of_scope="paragraph")])) == set()


# -- themes: prominence and the relevance score -----------------------------------------------

FILLER = " ".join(f"Sentence {n} is about something else." for n in range(12))


def score_of(art: Article, theme: Theme) -> int | None:
    hit = {h.watch: h for h in Matcher([], [theme]).match(art)}.get(theme.name)
    return None if hit is None else hit.score


def test_scores_by_where_the_theme_shows() -> None:
    one = "New export controls cover GPU chips."
    assert score_of(article(title=one), EXPORT) == 100
    assert score_of(article(one), EXPORT) == 85
    assert score_of(article(title="Export controls widen", summary="They now cover GPU chips."), EXPORT) == 75
    # A passing line deep in the body: 40, below the default min_score of 50.
    assert score_of(article(f"{FILLER} {one}"), EXPORT) is None
    assert score_of(article(f"{FILLER} {one}"), replace(EXPORT, min_score=40)) == 40
    # Shown twice further down: 40 + 15.
    assert score_of(article(f"{FILLER} {one} {FILLER} {one}"), EXPORT) == 55
    # Headline, lead and body: 100, capped.
    assert score_of(article(f"{one} {FILLER} {one}", title=one), EXPORT) == 100


def test_a_typo_lowers_the_score() -> None:
    assert score_of(article(title="New export controls hit GPU partnrships"), replace(US_CHINA)) is None
    theme = Theme("p", all_of=(("partnership",), ("GPU",)))
    assert score_of(article(title="A GPU partnrship"), theme) == 91


def test_where_and_at_least() -> None:
    one = "New export controls cover GPU chips."
    body_twice = article(f"{FILLER} {one} {FILLER} {one}")
    assert score_of(body_twice, replace(EXPORT, where="lead")) is None
    assert score_of(article(one), replace(EXPORT, where="lead")) == 85
    assert score_of(article(one), replace(EXPORT, where="title")) is None
    assert score_of(article(one), replace(EXPORT, at_least=2)) is None
    assert score_of(body_twice, replace(EXPORT, at_least=2)) == 55


def test_a_config_written_before_proximity_still_works() -> None:
    old = Theme("Tech decoupling", all_of=(("decoupling", "tech war"),))
    assert score_of(article(title="A tech war looms"), old) == 100


# -- thresholds ---------------------------------------------------------------------------------


def test_threshold_100_turns_typos_off() -> None:
    strict = Matcher(
        [Speaker("Tobias Wrenfield", threshold=100)],
        [Theme("p", all_of=(("partnership",),), threshold=100)],
    )
    assert strict.match(article("Tobias Wrenfeild signed a partnrship.")) == []
    assert len(strict.match(article("Tobias Wrenfield signed a partnership."))) == 2


def test_lower_threshold_tolerates_typos_in_shorter_words() -> None:
    default = Matcher([], [EXPORT])
    loose = Matcher([], [Theme(EXPORT.name, all_of=EXPORT.all_of, threshold=80)])
    text = "Chip stocks slip on tighter exprot controls."
    assert themes(text, default) == set()
    assert themes(text, loose) == {EXPORT.name}


def test_threshold_between_scores_picks_by_similarity() -> None:
    # "partnrship" is 91 similar to "partnership"; "aligment" 89 to "alignment".
    theme = Theme("t", all_of=(("partnership", "alignment"),), threshold=90)
    matcher = Matcher([], [theme])
    assert themes("a partnrship", matcher) == {"t"}
    assert themes("an aligment", matcher) == set()


# -- the per-word typo memo ----------------------------------------------------------------------


def test_typo_memo_stays_bounded_and_typos_still_match_after_turnover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import watcher.phrases

    monkeypatch.setattr(watcher.phrases, "MAX_MEMO_WORDS", 50)
    matcher = Matcher([TOBY], [DECOUPLING])
    for n in range(40):
        never_seen = " ".join(f"w{n}x{k}" for k in range(20))
        assert matcher.match(article(never_seen)) == []
        memo = matcher._phrases._memo, matcher._phrases._memo_old
        # Each generation may overshoot the limit by one article's words (here at most 25).
        assert sum(map(len, memo)) <= 2 * (50 + 25)
        got = {h.watch for h in matcher.match(article(f"{never_seen} Tobias Wrenfeild on decoupllng."))}
        assert got == {"Tobias Wrenfield", "Tech decoupling"}


def test_phrases_with_common_words_match_whatever_their_anchor() -> None:
    matcher = Matcher(
        [Speaker("Commissioner Marchetti-Laurent")],
        [Theme("t", all_of=(("United States", "the chip war"),))],
    )
    text = "Commissioner Marchetti-Laurent spoke about the chip war."
    assert {h.watch for h in matcher.match(article(text))} == {"Commissioner Marchetti-Laurent", "t"}
    assert matcher.match(article("The commissioner spoke about the war on chips.")) == []


# -- hits: score and evidence --------------------------------------------------------------------


def test_exact_match_scores_100_and_typo_less() -> None:
    assert hits_for("Tobias Wrenfield spoke.")["Tobias Wrenfield"].score == 100
    assert 80 <= hits_for("Tobias Wrenfeild spoke.")["Tobias Wrenfield"].score < 100


def test_evidence_is_the_sentence_with_the_matched_words_highlighted() -> None:
    text = "Markets fell. In an interview, Jen Zhu Scott said the U.S. and China need AI cooperation. Shares rose."
    hits = hits_for(text)
    jen = hits["Jen Zhu Scott"]
    assert jen.statement
    (evidence,) = jen.evidence
    assert evidence.field == "content"
    assert evidence.text == "In an interview, Jen Zhu Scott said the U.S. and China need AI cooperation."
    assert [evidence.text[s:e] for s, e in evidence.spans] == ["Jen Zhu Scott"]
    theme = hits[US_CHINA.name]
    highlighted = {e.text[s:t] for e in theme.evidence for s, t in e.spans}
    assert highlighted == {"U.S.", "China", "AI", "cooperation"}


def test_evidence_keeps_the_text_as_written() -> None:
    hit = hits_for("Zoe Marchetti-Laurant said so.")["Zoé Marchetti-Laurent"]
    (evidence,) = hit.evidence
    assert [evidence.text[s:e] for s, e in evidence.spans] == ["Zoe Marchetti-Laurant"]


def test_long_sentences_are_cut_to_a_window_around_the_match() -> None:
    filler = " ".join(["word"] * 200)
    hit = hits_for(f"{filler} Tobias Wrenfield {filler}.")["Tobias Wrenfield"]
    (evidence,) = hit.evidence
    assert len(evidence.text) < 400
    assert [evidence.text[s:e] for s, e in evidence.spans] == ["Tobias Wrenfield"]


def test_hits_come_speakers_first_in_config_order() -> None:
    text = "Tobias Wrenfield and Jen Zhu Scott discussed a tech war and AI misuse."
    assert [h.watch for h in MATCHER.match(article(text))] == [
        "Jen Zhu Scott",
        "Tobias Wrenfield",
        SAFETY.name,
        DECOUPLING.name,
    ]


def test_summary_repeated_as_content_gives_one_evidence() -> None:
    text = "Jen Zhu Scott said rules were needed."
    hit = {h.watch: h for h in MATCHER.match(article(text, summary=text))}["Jen Zhu Scott"]
    assert len(hit.evidence) == 1
