"""The status page in a real browser (issue 13): Debian's chromium, headless, driven by
Selenium through Debian's chromium-driver, on the page a running daemon serves after a poll
with hits, a failing feed and strangers' hostile titles and links.

`.ci/run` installs chromium and chromium-driver when they are missing; without them (a
machine where they cannot be installed) this test is skipped, and says why.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.conftest import ROOT, serving, wait_for, write_config
from tests.httpserver import LoopbackServer
from watcher.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

#: Markup that would announce itself if the page ran it: the page's title changes, or an
#: element appears. Written as a stranger's feed would carry it (escaped in the XML, so it
#: is the entry's text).
TRAP = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Trap wire</title>
<item><guid>urn:trap:1</guid>
<title>Jen Zhu Scott said &lt;script&gt;document.title="pwned"&lt;/script&gt;&lt;img src=x onerror="document.body.dataset.pwned=1"&gt;</title>
<link>javascript:document.title="pwned"</link>
<description>Jen Zhu Scott said &lt;a href="javascript:document.title='pwned'"&gt;click&lt;/a&gt; and &lt;svg onload="document.title='pwned'"&gt;</description>
</item></channel></rss>"""


def _browser_missing() -> str | None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        return (
            f"no {' nor '.join(missing)}: install Debian's browser and driver with "
            "`apt-get install -y chromium chromium-driver` (.ci/run does when it can)"
        )
    return None


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="watcher-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # This machine's network is closed: Chromium's own background traffic only fails.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def feeds() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.respond("/forum.xml", (ROOT / "watcher" / "demo_feeds" / "forum-wire.xml").read_bytes())
        server.respond("/strangers.atom", (ROOT / "tests" / "data" / "hostile" / "strangers.atom").read_bytes())
        server.respond("/trap.xml", TRAP.encode())
        server.respond("/missing.xml", b"nothing here", status=404)
        yield server


def _text(element: WebElement) -> str:
    # textContent, not .text: what the document holds, whether or not CSS shows it.
    return str(element.get_property("textContent"))


def test_the_status_page_shows_feeds_hits_and_chart_and_runs_nothing_from_a_feed(
    tmp_path: Path, feeds: LoopbackServer, browser: webdriver.Chrome
) -> None:
    database = f"sqlite:///{tmp_path}/w.db"
    names = ("forum", "strangers", "trap", "missing")
    config = write_config(
        tmp_path / "feeds.yaml",
        database,
        {name: feeds.url(f"/{name}.{'atom' if name == 'strangers' else 'xml'}") for name in names},
    )
    with serving(config) as daemon:
        store = Store(database)
        try:
            wait_for(
                lambda: (
                    {s.name: s.status for s in store.feed_states()}
                    == {"forum": "ok", "strangers": "ok", "trap": "ok", "missing": "failed"}
                ),
                "every feed's first poll",
            )
            # Headline-only entries are matched once their article page is in (or failed).
            wait_for(lambda: not store.waiting(), "every entry matched")
            hits = store.list_hits()
        finally:
            store.close()
        browser.get(daemon.url)
        page = browser.find_element(By.TAG_NAME, "body")
        assert browser.title == "watcher status"

        # The feed table: each feed with its health, the failing one with its error.
        rows = {r.get_attribute("data-feed"): r for r in browser.find_elements(By.CSS_SELECTOR, "#feeds tr.feed")}
        assert set(rows) == set(names)
        missing = rows["missing"]
        assert _text(missing.find_element(By.CSS_SELECTOR, ".health")).startswith("failed")
        assert _text(missing.find_element(By.CSS_SELECTOR, ".error")) == "HTTP 404 Not Found"
        assert _text(rows["forum"].find_element(By.CSS_SELECTOR, ".health")) == "ok"
        order = [r.get_attribute("data-feed") for r in browser.find_elements(By.CSS_SELECTOR, "#feeds tr.feed")]
        assert order[0] == "missing", "a failing feed is listed first"

        # A hit's evidence with the matched words highlighted, and its link to the article.
        statement = next(
            h
            for h in browser.find_elements(By.CSS_SELECTOR, "#hits .hit")
            if "US plus China" in _text(h.find_element(By.CSS_SELECTOR, ".title"))
        )
        marks = [_text(m) for m in statement.find_elements(By.CSS_SELECTOR, ".evidence mark")]
        assert "Jen Zhu Scott" in marks
        [link] = statement.find_elements(By.CSS_SELECTOR, ".title a")
        assert link.get_attribute("href") == "http://demo.invalid/forum-wire/1"
        assert link.get_attribute("rel") == "noopener noreferrer"

        # The chart: one row per watch, a bar today as tall as the day's hits, drawn in SVG.
        chart = browser.find_element(By.CSS_SELECTOR, "svg#hits-chart")
        assert chart.size["width"] > 300 and chart.size["height"] > 0
        row = chart.find_element(By.CSS_SELECTOR, 'g.row[data-watch="Jen Zhu Scott"]')
        assert int(row.get_attribute("data-total") or 0) == len(hits)
        [bar] = row.find_elements(By.CSS_SELECTOR, "rect.bar")
        assert bar.get_attribute("data-day") == datetime.now(UTC).date().isoformat()
        assert int(bar.get_attribute("data-count") or 0) == len(hits)
        assert bar.size["height"] > 0

        # Strangers' markup is text: shown as written, never elements, never run.
        titles = [_text(t) for t in browser.find_elements(By.CSS_SELECTOR, "#hits .hit .title")]
        assert any('X-Injected: yes <script>alert("title")</script>' in t for t in titles), titles
        assert any('<script>document.title="pwned"</script><img src=x onerror=' in t for t in titles), titles
        assert '<a href="javascript:alert(2)">click</a>' in _text(page)
        assert browser.find_elements(By.TAG_NAME, "script") == []
        assert browser.find_elements(By.CSS_SELECTOR, "#hits img, #hits svg, #hits b") == []
        hrefs = [a.get_attribute("href") or "" for a in browser.find_elements(By.TAG_NAME, "a")]
        assert hrefs and all(h.startswith(("http://", "https://")) for h in hrefs), hrefs
        assert browser.title == "watcher status"
        assert page.get_attribute("data-pwned") is None
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018  # reading it is what raises
