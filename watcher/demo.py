"""``watcher demo``: the whole product, offline, in a few seconds.

Serves the bundled sample feeds on loopback, polls them with the configured speakers and
themes into a fresh SQLite file, delivers the alerts through a real SMTP exchange with a
local mail sink, and reports where each rendered email was written.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from watcher.config import ChannelSettings, Config, FeedSettings, SmtpSettings
from watcher.errors import WatcherError
from watcher.mailsink import MailSink
from watcher.service import make_watcher
from watcher.types import StoredHit


@dataclass(frozen=True)
class DemoResult:
    base_url: str
    feeds: int
    watches: list[str]
    hits: list[StoredHit]
    emails: list[Path]
    database: str


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_demo(config: Config, directory: Path) -> DemoResult:
    """Run the demo in ``directory`` (emptied first) with ``config``'s speakers and themes."""
    if directory.exists():
        shutil.rmtree(directory)
    mail_dir = directory / "mail"
    mail_dir.mkdir(parents=True)
    database = f"sqlite:///{(directory / 'demo.db').resolve()}"
    samples = Path(str(resources.files("watcher") / "demo_feeds"))
    names = sorted(p.name for p in samples.glob("*.xml"))
    if not names:
        raise WatcherError(f"no sample feeds in {samples}", "reinstall watcher; its package data is missing")
    with _serve(samples) as base_url, MailSink(mail_dir) as sink:
        demo_config = dataclasses.replace(
            config,
            database_url=database,
            feeds=tuple(
                FeedSettings(
                    url=f"{base_url}/{name}",
                    name=name.removesuffix(".xml"),
                    interval=timedelta(minutes=1),
                    timeout=timedelta(seconds=10),
                    alert_on_first_poll=True,
                )
                for name in names
            ),
            smtp=SmtpSettings(
                host="127.0.0.1",
                port=sink.port,
                security="none",
                username=None,
                password=None,
                sender="watcher-demo@localhost",
                timeout=timedelta(seconds=10),
            ),
            channels=(
                ChannelSettings(
                    name="demo-desk",
                    type="email",
                    to=("analyst@localhost",),
                    digest=None,
                    watches=None,
                    statements_only=False,
                    url=None,
                    secret=None,
                ),
            ),
        )
        watcher = make_watcher(demo_config)
        try:
            watcher.poll()
            watcher.deliver()
            hits = watcher.store.list_hits()
        finally:
            watcher.close()
    return DemoResult(
        base_url=base_url,
        feeds=len(names),
        watches=[s.name for s in config.speakers] + [t.name for t in config.themes],
        hits=hits,
        emails=sorted(mail_dir.glob("*.eml")),
        database=database,
    )
