"""Full article text: which entries need their page, the address behind a link, and a page's
main text. Pure: no I/O, no clock (fetching pages politely is ``watcher.pages``).

* **When** (``wants_page``): per feed ``full_text: auto | always | never``. ``auto`` fetches the
  page when the entry's own text (its summary or content, the longer) is at most
  ``SHORT_TEXT`` characters: a headline or a teaser. The figure comes from the real feeds of
  ``shared/corpus/real`` (4,273 entries of the 72 that parse): the lengths climb steeply to about 300 characters
  (75 % of entries: headlines, news-search items and one- or two-sentence teasers), stay
  nearly flat to 600 (80 %), then spread out over full posts. Every teaser feed there
  (BBC, NYT, WSJ, DW, Al Jazeera, NDTV, ...) has its median under 620 and its teasers under
  ~600; every full-text feed has its median above 830. 600 sits at the end of the flat stretch.
* **Where** (``page_address``): links that wrap the real address in a query parameter (Bing
  News' ``apiclick.aspx?…&url=``, Google's ``/url?q=``, Facebook's and Reddit's outbound
  links) are unwrapped; a Google News ``rss/articles/…`` link opens its article only by
  running the page's script, so it is not fetched and the feed's text is used.
* **What** (``main_text``): trafilatura's extraction, comments excluded: main text only, no
  menus, footers or related links, one paragraph per line (matching reads paragraphs). On the
  54 real pages of ``shared/corpus/articles`` it keeps 95 % of the text an extractor must
  keep and lets 14.5 % of the boilerplate through (``tests/test_article.py``).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from watcher.config import FullTextMode
from watcher.errors import ArticleError, redact_url
from watcher.types import Article

#: An entry whose own text is at most this many characters is a headline or a teaser (see above).
SHORT_TEXT = 600
#: Less main text than this on a page is no article: a paywall, a consent wall, a page built
#: by script, an error page served as 200.
MIN_PAGE_TEXT = 200

#: Wrapping links: (host, or a suffix after a dot; path) -> the query parameters holding the
#: real address, tried in order.
_WRAPPERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("bing.com", "/news/apiclick.aspx"): ("url",),
    ("bing.com", "/ck/a"): ("u",),
    ("google.com", "/url"): ("url", "q"),
    ("facebook.com", "/l.php"): ("u",),
    ("out.reddit.com", "/"): ("url",),
    ("t.umblr.com", "/redirect"): ("z",),
    ("slack-redir.net", "/link"): ("url",),
}
#: Unwrapping goes at most this deep (a wrapper wrapping a wrapper).
_MAX_UNWRAP = 3


def wants_page(mode: FullTextMode, article: Article) -> bool:
    """Whether ``article``'s page should be fetched for its full text under ``mode``."""
    if mode == "never" or not article.link or not article.link.lower().startswith(("http://", "https://")):
        return False  # no page to fetch (a feed may give a guid, a mailto: or a relative link)
    return mode == "always" or max(len(article.summary), len(article.content)) <= SHORT_TEXT


def page_address(link: str) -> str:
    """The address to fetch for the article ``link`` points to: unwrapped from tracking links.

    Raises:
        ArticleError: the link cannot be resolved without running a page's script (Google
            News), or is no http(s) address.
    """
    url = link.strip()
    for _ in range(_MAX_UNWRAP):
        inner = _wrapped(url)
        if inner is None:
            break
        url = inner
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ArticleError(redact_url(link), "not an http(s) link")
    if _host_is(parts.hostname, "news.google.com") and "/articles/" in parts.path:
        raise ArticleError(redact_url(link), "a Google News link opens its article only by running a script")
    return url


def _wrapped(url: str) -> str | None:
    """The address ``url`` wraps, or None when it wraps none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.hostname or ""
    path = parts.path.rstrip("/") or "/"
    for (wrapper, wrapper_path), names in _WRAPPERS.items():
        if _host_is(host, wrapper) and path.lower() == wrapper_path:
            query = parse_qs(parts.query)
            for name in names:
                for value in query.get(name, ()):
                    if value.lower().startswith(("http://", "https://")):
                        return value
    return None


def _host_is(host: str, name: str) -> bool:
    host = host.lower()
    return host == name or host.endswith("." + name)


def main_text(page: bytes, *, url: str, content_type: str | None = None) -> str:
    """The main text of an HTML ``page``, one paragraph per line.

    Raises:
        ArticleError: the page is not HTML, or holds no article text (``MIN_PAGE_TEXT``).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media not in ("text/html", "application/xhtml+xml"):
        raise ArticleError(redact_url(url), f"not an HTML page ({media})")
    # Imported here: trafilatura (and lxml under it) is needed only once a page is fetched.
    import trafilatura

    text = trafilatura.extract(page, url=url, include_comments=False, include_tables=True, deduplicate=False) or ""
    paragraphs = (" ".join(line.split()) for line in text.splitlines())
    text = "\n".join(p for p in paragraphs if p)
    if len(text) < MIN_PAGE_TEXT:
        raise ArticleError(redact_url(url), "no article text on the page (a paywall, or a page built by script?)")
    return text
