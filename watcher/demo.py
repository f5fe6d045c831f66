"""``watcher demo``: the whole product, offline, in a few seconds.

Serves the bundled sample feeds on loopback, polls them with the configured speakers and
themes into a fresh SQLite file, delivers the alerts through a real SMTP exchange with a
local mail sink, and reports where each rendered email was written.

It works in a folder of its own and never deletes a file it did not write there (see
:func:`claim`).
"""

from __future__ import annotations

import dataclasses
import functools
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


#: Marks a folder as the demo's own and lists, one per line, the files the demo wrote in it:
#: the only ones a later demo may delete.
MARKER = ".watcher-demo"
_DATABASE = "demo.db"


def claim(directory: Path) -> None:
    """Make ``directory`` the demo's: create it, or take an empty one, or clean one an earlier
    demo made by deleting only the files that demo listed in its marker.

    Raises:
        WatcherError: the folder holds files the demo did not make (never deleted).
    """
    marker = directory / MARKER
    if marker.is_file():
        for name in marker.read_text(encoding="utf-8").splitlines():
            made = directory / name
            # Only plain files directly listed, inside the folder: a hand-edited marker
            # cannot make the demo delete anything else.
            if name and made.resolve().parent.is_relative_to(directory.resolve()) and made.is_file():
                made.unlink()
    elif directory.exists() and any(directory.iterdir()):
        raise WatcherError(
            f"{directory} is not empty and was not made by `watcher demo`",
            "give --dir a new or empty folder; the demo never deletes files it did not write",
        )
    (directory / "mail").mkdir(parents=True, exist_ok=True)
    _record(directory, [])


def _record(directory: Path, made: list[Path]) -> None:
    """Write the marker: the database's files (listed before they exist, so that a demo
    stopped half-way is still cleaned up) and ``made``."""
    names = [_DATABASE, f"{_DATABASE}-wal", f"{_DATABASE}-shm"]
    names += [str(p.relative_to(directory)) for p in made]
    (directory / MARKER).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def run_demo(config: Config, directory: Path) -> DemoResult:
    """Run the demo in ``directory`` (see :func:`claim`) with ``config``'s speakers and themes.

    Raises:
        WatcherError: ``directory`` holds files the demo did not make.
    """
    claim(directory)
    mail_dir = directory / "mail"
    database = f"sqlite:///{(directory / _DATABASE).resolve()}"
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
                    full_text="never",  # offline: the sample entries link to sites not served here
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
            emails = sorted(m.path for m in sink.messages if m.path is not None)
            _record(directory, emails)
    return DemoResult(
        base_url=base_url,
        feeds=len(names),
        watches=[s.name for s in config.speakers] + [t.name for t in config.themes],
        hits=hits,
        emails=emails,
        database=database,
    )
