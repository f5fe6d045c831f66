"""Full article text, the pure part: which entries need their page, the address behind a
link, and a page's main text (``watcher.article``); quality on real pages, scored by
``bench/article_quality.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from watcher.article import SHORT_TEXT, main_text, page_address, wants_page
from watcher.errors import ArticleError
from watcher.types import Article

REPO = Path(__file__).resolve().parent.parent
ARTICLES = REPO.parent / "shared" / "corpus" / "articles"
PAGES = REPO / "tests" / "data" / "articles"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("article_quality", REPO / "bench" / "article_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not ARTICLES.is_dir(), reason=f"no article pages at {ARTICLES}")
def test_extraction_keeps_the_article_and_drops_the_boilerplate_of_real_pages() -> None:
    quality = load_bench().measure(ARTICLES)
    print(f"\narticle extraction on {ARTICLES}: {quality}")
    assert quality.pages == 54
    assert quality.with_share >= 0.93, quality
    assert quality.without_share <= 0.15, quality


def entry(summary: str = "", content: str = "", link: str | None = "https://news.example.org/a") -> Article:
    return Article("k", "k", link, "Headline", summary, content, None, "h")


@pytest.mark.parametrize(
    ("mode", "article", "wanted"),
    [
        ("auto", entry(), True),  # a headline alone (Google News, Bing News)
        ("auto", entry(summary="One teaser sentence."), True),
        ("auto", entry(summary="x" * SHORT_TEXT), True),
        ("auto", entry(content="x" * (SHORT_TEXT + 1)), False),  # the feed carries the article
        ("always", entry(content="x" * 5000), True),
        ("never", entry(), False),
        ("always", entry(link=None), False),  # nothing to fetch
        ("always", entry(link="laughs-1"), False),  # a guid taken for a link
        ("always", entry(link="mailto:desk@example.org"), False),
    ],
)
def test_which_entries_have_their_page_fetched(mode: str, article: Article, wanted: bool) -> None:
    assert wants_page(mode, article) is wanted  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("link", "address"),
    [
        (
            "http://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=6A2F&url=https%3a%2f%2fwww.scmp.com%2fnews%2fchina%2farticle%2f1&c=123&mkt=en-us",
            "https://www.scmp.com/news/china/article/1",
        ),
        (
            "https://www.google.com/url?rct=j&sa=t&url=https://example.org/story%3Fid%3D7&ct=ga",
            "https://example.org/story?id=7",
        ),
        ("https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.org%2Fa&h=AT0", "https://example.org/a"),
        ("https://out.reddit.com/?url=https%3A%2F%2Fexample.org%2Fb&token=x", "https://example.org/b"),
        ("https://example.org/news/1?utm_source=rss", "https://example.org/news/1?utm_source=rss"),
        # A wrapper whose parameter is no web address is left alone.
        (
            "https://www.bing.com/news/apiclick.aspx?url=javascript:alert(1)",
            "https://www.bing.com/news/apiclick.aspx?url=javascript:alert(1)",
        ),
    ],
)
def test_tracking_links_are_unwrapped_before_fetching(link: str, address: str) -> None:
    assert page_address(link) == address


def test_a_google_news_link_is_not_fetched_and_says_why() -> None:
    with pytest.raises(ArticleError, match="Google News link opens its article only by running a script"):
        page_address("https://news.google.com/rss/articles/CBMiWkFVX3lxTE1?oc=5")


def test_a_link_that_is_no_web_address_is_not_fetched() -> None:
    with pytest.raises(ArticleError, match="not an http"):
        page_address("ftp://example.org/a")


def test_main_text_keeps_paragraphs_and_drops_the_menu() -> None:
    page = (PAGES / "salon.com.emissions.html").read_bytes()
    text = main_text(page, url="http://127.0.0.1/salon", content_type="text/html; charset=utf-8")
    paragraphs = text.split("\n")
    assert len(paragraphs) >= 5, "one paragraph per line: attribution reads paragraphs"
    assert paragraphs[2].startswith("“It’s a good-news bad-news story,” said Trevor Houser")
    assert "Reproduction of material from any" not in text  # the page's footer


def test_a_page_that_is_not_html_is_refused_with_its_type() -> None:
    with pytest.raises(ArticleError, match=r"not an HTML page \(application/pdf\)"):
        main_text(b"%PDF-1.7", url="http://127.0.0.1/a.pdf", content_type="application/pdf")


def test_a_paywall_page_gives_no_article_text() -> None:
    page = b"<html><body><nav>Home News</nav><main><p>Subscribe to continue reading.</p></main></body></html>"
    with pytest.raises(ArticleError, match="no article text on the page"):
        main_text(page, url="http://127.0.0.1/paywalled")
