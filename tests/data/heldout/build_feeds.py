"""Build tests/data/heldout (feeds + labels.json) from one table, so each label sits next to its text.

    python tests/data/heldout/build_feeds.py tests/data/heldout

The texts are written for this corpus (not taken from shared/corpus/dev); every entry has one
reading under the contract of docs/matching.md. Written when a theme's groups counted anywhere in
an entry; four labels changed with the contract of issue 15, each marked "# issue 15:" with its
reason. Edit the table, rerun.
"""

import html
import json
import pathlib
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

OUT = pathlib.Path(sys.argv[1])
K, H, R = "Kwame Asante Boateng", "Hélène Vasquez-Lindqvist", "Robert Kincannon"
EU, CR, GRID, GPU = "EU chip subsidies", "AI copyright disputes", "US data-centre power", "GPU shortage"
ORDER_S = [K, H, R]
ORDER_T = [EU, CR, GRID, GPU]

# (title, summary_html, content_html or None, speakers, statements, themes)
RSS = [
    (
        "Brussels weighs fresh state aid for chip plants",
        "<p>Kwame Asante Boateng, the chief executive of Volta Foundry, said the EU should tie new money to training local engineers.</p>",
        "<p>Kwame Asante Boateng, the chief executive of Volta Foundry, said the EU should tie new money to training local engineers. &#8220;Money without people builds empty fabs,&#8221; he added.</p>",
        [K],
        [K],
        [EU],
    ),
    (
        "Foundry boss: Europe is late but not lost",
        "<p>&#8220;We are five years behind Taiwan, not fifty,&#8221; said Kwame Asante Boateng, whose company makes power chips in Dresden.</p>",
        None,
        [K],
        [K],
        [],
    ),
    (
        "Sweden will not block semiconductor package",
        "<p>Hélène Vasquez-Lindqvist told reporters in Stockholm that Sweden would not veto the EU&#8217;s semiconductor package, but wanted the public funding capped.</p>",
        None,
        [H],
        [H],
        [EU],
    ),
    (
        "Grid operators brace for server demand",
        "<p>Data centers could use a tenth of all electricity in the United States by 2030, according to Robert Kincannon, who advises utilities on load planning.</p>",
        None,
        [R],
        [R],
        [GRID],
    ),
    (
        "Utilities were too slow, adviser says",
        "<p>Bobby Kincannon said in an interview that American utilities had underestimated how fast AI data centres would grow and how much electricity they would draw.</p>",
        None,
        [R],
        [R],
        [],
    ),
    (
        "Nordic publishers want a share",
        "<p>In a statement, Hélène Vasquez argued that generative models trained on Nordic newspapers owed their publishers a licensing deal.</p>",
        None,
        [H],
        [H],
        [CR],
    ),
    (
        "&#8216;That is not a market, that is a queue&#8217;",
        "<p>A grid adviser says small labs are priced out of accelerators.</p>",
        "<p>&#8220;Nobody in this industry can buy GPUs on a normal timeline,&#8221; Robert Kincannon said at the Denver meeting.</p><p>&#8220;The backlog is eighteen months for the big parts. Smaller labs are simply priced out.</p><p>&#8220;That is not a market, that is a queue.&#8221;</p>",
        [R],
        [R],
        [],  # issue 15: "GPUs" and "backlog" are in different sentences (and paragraphs)
    ),
    (
        "Dresden plant to double output",
        "<p>The plant will double output by 2027, Kwame Asante-Boateng added, provided the promised chip subsidy arrives from Brussels.</p>",
        None,
        [K],
        [K],
        [EU],
    ),
    (
        "Treat server farms differently, adviser writes",
        "<p>Robert Kincannon wrote in a blog post that utilities in America should stop treating data centres as ordinary customers, because they can destabilise the power grid within minutes.</p>",
        None,
        [R],
        [R],
        [GRID],
    ),
    (
        "Swedish minister presses for speed on EU Chips Act",
        "<p>Hélène Vasquez-Lindqvist urged fellow ministers to finish the review before the summer break.</p>",
        None,
        [H],
        [H],
        [EU],
    ),
    (
        "Apprenticeship fund proposed",
        "<p>Kwame Asante Boateng has called for a European Union fund that would pay for foundry apprenticeships in every member state.</p>",
        None,
        [K],
        [K],
        [],
    ),
    (
        "Heatwave risk for Texas grid",
        "<p>Robert Kincannon warned on Tuesday that a single heatwave could trigger blackouts across Texas if new data centers keep connecting at the current pace.</p>",
        None,
        [R],
        [R],
        [],
    ),
    (
        "Luxembourg talks end without deal",
        "<p>Hélène Vasquez-Lindqvist, who chaired the talks in Luxembourg, said the EU would not back a second GPU plant unless private partners matched the state aid.</p>",
        None,
        [H],
        [H],
        [EU],
    ),
    (
        "Volta Foundry runs three shifts",
        "<p>Kwame Asante Boateng toured the Volta Foundry line with investors on Friday. He said the company had enough orders to keep all three shifts busy until spring.</p>",
        None,
        [K],
        [K],
        [],
    ),
    (
        "New head of chip policy",
        "<p>Hélène Vasquez-Lindqvist introduced Maja Holmberg, the agency&#8217;s new head of chip policy. She said her first task would be a survey of EU suppliers.</p>",
        None,
        [H],
        [],
        [],
    ),
    (
        "Reliability council picks chair",
        "<p>Robert Kincannon was named chair of the Western Grid Reliability Council on Wednesday.</p>",
        None,
        [R],
        [],
        [],
    ),
    (
        "In pictures: a server hall in the north",
        "<p>Pictured: Hélène Vasquez-Lindqvist at the opening of a data centre outside Luleå.</p>",
        None,
        [H],
        [],
        [],
    ),
    (
        "Three governments pledge money for a foundry",
        "<p>Kwame Asante Boateng attended the signing ceremony in Brussels, where three EU governments pledged public funding for a new chip foundry.</p>",
        None,
        [K],
        [],
        [EU],
    ),
    (
        "Consultancy hires engineers",
        "<p>Robert Kincannon&#8217;s consultancy said in a filing that it had hired 40 engineers this year.</p>",
        None,
        [R],
        [],
        [],
    ),
    (
        "Minister misses vote",
        "<p>A spokesperson for Hélène Vasquez-Lindqvist said the minister was unwell and would miss Thursday&#8217;s vote.</p>",
        None,
        [H],
        [],
        [],
    ),
    (
        "GPU shortage hits Dresden",
        "<p>Kwame Asante Boateng did not respond to requests for comment about the GPU shortage at his plant.</p>",
        None,
        [K],
        [],
        [GPU],
    ),
    (
        "Analyst sides with foundry chief",
        "<p>&#8220;Kwame Asante Boateng was right about the order backlog,&#8221; said Lena Fischer, an analyst at Rheinmetrics.</p>",
        None,
        [K],
        [],
        [],
    ),
    (
        "Minister has never met grid adviser",
        "<p>Asked about Robert Kincannon, the minister said she had never met him.</p>",
        None,
        [R],
        [],
        [],
    ),
    (
        "Regulators rule out new server halls",
        "<p>Regulators told Hélène Vasquez-Lindqvist that the grid could not absorb another data centre this decade.</p>",
        None,
        [H],
        [],
        [],
    ),
    (
        "Nordic Compute Forum line-up",
        "<p>Speakers at the Nordic Compute Forum include Hélène Vasquez-Lindqvist, Kwame Asante Boateng and Robert Kincannon.</p>",
        None,
        [K, H, R],
        [],
        [],
    ),
    (
        "Volta to start second line",
        "<p>Kwame Asnate Boateng said Volta would start a second production line in the autumn.</p>",
        None,
        [K],
        [K],
        [],
    ),
    (
        "Minister sets terms for second foundry",
        "<p>The trade minister, Hélène Vasquez-Lindqvist, told parliament that the EU would not pay for a second chip foundry until the state aid rules were rewritten.</p>",
        None,
        [H],
        [H],
        [EU],
    ),
    (
        "Volta orders triple",
        "<p>Kwame Asante Boateng, founder of Volta Foundry, which makes power electronics in Dresden, said orders had tripled since January.</p>",
        None,
        [K],
        [K],
        [],
    ),
    (
        "An early warning",
        "<p>Robert Kincannon first said in 2019 that data centers would overwhelm the power grid in the United States within a decade.</p>",
        None,
        [R],
        [R],
        [GRID],
    ),
    (
        "Founders write to Berlin",
        "<p>Kwame Asante Boateng and his co-founder argued in a letter to the economy ministry that Germany was losing engineers to Arizona.</p>",
        None,
        [K],
        [K],
        [],
    ),
    (
        "Council visit",
        "<p>Robert Kincannon toured the Western Grid Reliability Council offices on Monday. He said operators were approving new connections faster than they could build lines.</p>",
        None,
        [R],
        [R],
        [],
    ),
    (
        "Forum opens in Lule&#229;",
        "<p>Hélène Vasquez-Lindqvist opened the Nordic Compute Forum in Luleå on Tuesday. She warned that cheap hydropower could not be promised to every newcomer.</p>",
        None,
        [H],
        [H],
        [],
    ),
    (
        "Operator turned adviser",
        "<p>Robert Kincannon, 61, a former operator who now advises utilities, told the hearing that demand forecasts were &#8216;fiction&#8217;.</p>",
        None,
        [R],
        [R],
        [],
    ),
]

# Atom: (title, summary, summary_is_html, content_html or None, speakers, statements, themes)
ATOM = [
    (
        "ROBERT KINCANNON WARNS OF US GRID SQUEEZE",
        "Robert Kincannon said data centers in the United States were adding load faster than the power grid could.",
        False,
        None,
        [R],
        [R],
        [GRID],
    ),
    (
        "Swedish servers sip power",
        "Helene Vasquez–Lindqvist said Swedish data centres draw less than two percent of national electricity.",
        False,
        None,
        [H],
        [H],
        [],
    ),
    (
        "Saxony backs chip academy",
        "A training plan for the region.",
        False,
        "<p>Kwame&nbsp;Asante Boateng&#8217;s plan for a chip academy won backing from Saxony.</p>",
        [K],
        [],
        [],
    ),
    (
        "Planners keep missing AI load",
        "Grid planners are surprised again.",
        False,
        '<p><a href="https://people.example/rk">Robert</a> <b>Kincannon</b> said grid planners in the U.S. keep missing data center load from AI clusters, and electricity prices are rising as a result.</p>',
        [R],
        [R],
        [GRID],
    ),
    (
        "Pay for what you train on",
        "In a speech in Uppsala, Hélène\nVasquez-Lindqvist argued that AI firms should pay for the copyright material they train on.",
        False,
        None,
        [H],
        [H],
        [CR],
    ),
    (
        "Subsidy scheme is working, minister says",
        "Vasquez-Lindqvist said the EU chip subsidy scheme was working.",
        False,
        None,
        [],
        [],
        [EU],
    ),
    (
        "Madrid lawyer on training data",
        "Marta Vasquez, a Madrid lawyer, said AI companies lose most copyright cases on fair use grounds.",
        False,
        None,
        [],
        [],
        [CR],
    ),
    (
        "Accra derby ends level",
        "The striker Boateng Asante scored twice for the visitors before Kwame Mensah equalised.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Further reading on grid stress",
        "References: Kincannon, Robert (2023). Grid stress and large loads. Boateng, Kwame Asante (2021). Power chips.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Danish sailor wins regatta",
        "Robert Kincannonsen, a Danish sailor, won the Aarhus regatta by four minutes.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Economist criticises chip support",
        "Kwame Boateng, a Ghanaian economist, said EU subsidies for chips distort trade.",
        False,
        None,
        [],
        [],
        [EU],
    ),
    (
        "Ohio bakery turns fifty",
        "Bob Kincannon, no relation to the grid adviser, has run the bakery since 1998.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Dutch lithography maker ships more EUV tools",
        "Demand for EUV machines from chip plants in Asia rose, helped by subsidy programmes in Japan and Korea.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Tell us how your data center cut its power bill",
        "Readers share how they trimmed electricity use in server rooms; tell us yours.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Blackout at a Lagos data centre",
        "Engineers at the data centre swapped USB hubs during the blackout while the diesel generators started.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Archive foundation wins case",
        "The foundation said its AIDS archive remains protected by copyright after a court ruling in Cape Town.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "Thai publisher sues",
        "A Thai publisher sued a translation app over copyright, saying it had copied a dictionary.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "U.S.-based builders face rationing",
        "U.S.-based data-centre builders face electricity rationing in two states.",
        False,
        None,
        [],
        [],
        [GRID],
    ),
    (
        "Utilities count the cost",
        "Utilities across the United States say data centres now account for most new electricty demand.",
        False,
        None,
        [],
        [],
        [GRID],
    ),
    (
        "Catania plant approved",
        "The EU approved state aid for a semicondutor plant in Catania.",
        False,
        None,
        [],
        [],
        [EU],
    ),
    (
        "How AI firms settle copyright claims",
        "This newsletter is sponosred by Lexfield Partners.",
        False,
        None,
        [],
        [],
        [CR],  # issue 15: the veto removes its own sentence; the headline meets the theme
    ),
    (
        "Join our webinar on AI and copyright",
        "Register now for Thursday's session with two media lawyers.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "GPU shortage eases as miners sell rigs",
        "Prices fell after cryptocurency miners sold thousands of cards.",
        False,
        None,
        [],
        [],
        [GPU],  # issue 15: the veto removes its own sentence; the headline meets the theme
    ),
    (
        "Cloud queue tracker",
        "Our tracker shows the gpu backlog at three cloud providers grew again in March.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "America's hunger for power",
        "Grid operators say AI data centers will keep them busy for a decade.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "GPU-hungry start-ups hit by shortage-driven price spike",
        "Smaller labs are paying double for accelerators.",
        False,
        None,
        [],
        [],
        [GPU],
    ),
    (
        "US hyperscalers plan more datacenters",
        "Their growth will strain the power grid, analysts warned.",
        False,
        None,
        [],
        [],
        [],
    ),
    (
        "A.I. labs sign licensing deals with publishers",
        "Four newspaper groups agreed terms this week.",
        False,
        None,
        [],
        [],
        [CR],
    ),
    (
        "Novelists sue over scraped books",
        "An AI firm is accused of scraping copyrighted novels to build its chatbot.",
        False,
        None,
        [],
        [],
        [CR],  # issue 15: "copyrighted" is an inflection of "copyright"
    ),
    (
        "Graphics processors scarce",
        "A scarcity of graphics processors has delayed two university supercomputers.",
        False,
        None,
        [],
        [],
        [GPU],
    ),
    (
        "Brussels signs off",
        "The state aid will pay for a new semiconductor plant near Catania.",
        False,
        None,
        [],
        [],
        [EU],
    ),
    (
        "Adviser rejects rationing",
        "\u201cWe will not ration power to hospitals to feed server farms,\u201d Robert Kincannon told a Senate hearing.",
        False,
        None,
        [R],
        [R],
        [],
    ),
    (
        "Minister on the record",
        "Hélène Vasquez-Lindqvist: \u201cEvery EU chip plant we fund must publish its subsidy terms.\u201d",
        False,
        None,
        [H],
        [H],
        [EU],
    ),
    (
        "Asked about delays",
        "Asked whether Brussels had moved too slowly, Hélène Vasquez-Lindqvist replied that the Chips Act was never meant to be quick.",
        False,
        None,
        [H],
        [H],
        [EU],
    ),
    (
        "Speaking to reporters",
        "Speaking to reporters in Accra, Kwame Asante Boateng said Ghana would train chip technicians for European plants.",
        False,
        None,
        [K],
        [K],
        [],
    ),
    (
        "Foundry chief declines to comment",
        "Kwame Asante Boateng declined to comment on reports that Volta had lost a GPU contract.",
        False,
        None,
        [K],
        [],
        [],
    ),
    (
        "Minister visits Luleå",
        "Hélène Vasquez-Lindqvist visited the Luleå server halls on Thursday. She warned that cheap hydropower would not last forever.",
        False,
        None,
        [H],
        [H],
        [],
    ),
    (
        "Grid adviser says queue will lengthen",
        "Robert Kincannon says the GPU backlog at American cloud providers will get worse before it gets better.",
        False,
        None,
        [R],
        [R],
        [GPU],
    ),
    (
        "Investors back Volta",
        "Volta Foundry, co-founded by KWAME ASANTE BOATENG, raised 200 million euros from pension funds.",
        False,
        None,
        [K],
        [],
        [],
    ),
    (
        "Power adviser profile",
        "A profile of Robert Kincannon, who spent twenty years running control rooms in Arizona.",
        False,
        None,
        [R],
        [],
        [],
    ),
    (
        "Foundry keeps its prices",
        "\u201cWe will not pass the GPU shortage on to customers,\u201d said the company\u2019s founder, Kwame Asante Boateng, on Wednesday.",
        False,
        None,
        [K],
        [K],
        [GPU],
    ),
    (
        "Joint letter on server farms",
        "H\u00e9l\u00e8ne Vasquez-Lindqvist, Sweden\u2019s minister for trade, and her Finnish counterpart said new data centres must bring their own power.",
        False,
        None,
        [H],
        [H],
        [],
    ),
    (
        "Regulator rebuffs foundry",
        "The regulator\u2019s chair, Anna Berg, rejected a request from Kwame Asante Boateng. She said the subsidy rules were clear.",
        False,
        None,
        [K],
        [],
        [],
    ),
]


def rss(items):
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
        "<channel>",
        "  <title>Northgate Ledger</title>",
        "  <link>https://northgate.example/</link>",
        "  <description>Chips, power and policy.</description>",
    ]
    labels = {}
    t0 = datetime(2025, 5, 2, 9, 0, tzinfo=UTC)
    for n, (title, desc, content, sp, st, th) in enumerate(items):
        gid = f"northgate-{7100 + 7 * n}"
        out += [
            "  <item>",
            f"    <title>{title}</title>",
            f"    <link>https://northgate.example/a/{7100 + 7 * n}</link>",
            f'    <guid isPermaLink="false">{gid}</guid>',
            f"    <pubDate>{format_datetime(t0 - timedelta(hours=5 * n))}</pubDate>",
            f"    <description><![CDATA[{desc}]]></description>",
        ]
        if content:
            out.append(f"    <content:encoded><![CDATA[{content}]]></content:encoded>")
        out.append("  </item>")
        labels[gid] = (sp, st, th)
    out += ["</channel>", "</rss>", ""]
    return "\n".join(out), labels


def atom(items):
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">',
        "  <title>Ledgerline Policy</title>",
        "  <id>tag:ledgerline.example,2025:feed</id>",
        '  <link rel="alternate" href="https://ledgerline.example/"/>',
        "  <updated>2025-05-03T10:00:00Z</updated>",
        "  <author><name>Ledgerline</name></author>",
    ]
    labels = {}
    t0 = datetime(2025, 5, 3, 10, 0, tzinfo=UTC)
    for n, (title, summary, is_html, content, sp, st, th) in enumerate(items):
        eid = f"tag:ledgerline.example,2025:{300 + 4 * n}"
        ts = (t0 - timedelta(hours=3 * n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out += [
            "  <entry>",
            f'    <title type="text">{html.escape(title, quote=False)}</title>',
            f"    <id>{eid}</id>",
            f'    <link rel="alternate" type="text/html" href="https://ledgerline.example/n/{300 + 4 * n}"/>',
            f"    <published>{ts}</published>",
            f"    <updated>{ts}</updated>",
            f'    <summary type="{"html" if is_html else "text"}">{html.escape(summary, quote=False)}</summary>',
        ]
        if content:
            out.append(f'    <content type="html">{html.escape(content, quote=False)}</content>')
        out.append("  </entry>")
        labels[eid] = (sp, st, th)
    out += ["</feed>", ""]
    return "\n".join(out), labels


(OUT / "feeds").mkdir(parents=True, exist_ok=True)
x1, l1 = rss(RSS)
x2, l2 = atom(ATOM)
(OUT / "feeds" / "01_northgate_rss2_cdata_content.xml").write_text(x1, encoding="utf-8")
(OUT / "feeds" / "02_ledgerline_atom.xml").write_text(x2, encoding="utf-8")
labels = {}
for k, (sp, st, th) in {**l1, **l2}.items():
    assert set(st) <= set(sp)
    labels[k] = {
        "speakers": [s for s in ORDER_S if s in sp],
        "statements": [s for s in ORDER_S if s in st],
        "themes": [t for t in ORDER_T if t in th],
    }
(OUT / "labels.json").write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
print(len(labels), "entries")
