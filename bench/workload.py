"""One benchmark workload: a temp dir with N generated feeds, their server, and watcher configs.

``Workload`` is a context manager: it generates the feeds (``bench.feedgen``), writes them
(``bench.server.FeedSite``), starts the loopback server process, and on exit stops the server
and deletes the temp dir. ``write_config`` writes a ``feeds.yaml`` for a fresh SQLite file
with the generated speakers and themes, no channels, and ``alert_on_first_poll: false``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.feedgen import FeedGenerator, Watches, make_watches
from bench.server import FeedSite, ServerProcess

REPO = Path(__file__).resolve().parent.parent


class Workload:
    """N feeds x M entries on 127.0.0.1, with the watches that track them."""

    def __init__(
        self,
        feeds: int,
        entries: int,
        seed: int = 1,
        python: str = sys.executable,
        server_seconds: float = 7200.0,
        keep: bool = False,
    ) -> None:
        self.feeds, self.entries, self.seed, self.python, self.keep = feeds, entries, seed, python, keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"watcher-bench-{feeds}x{entries}-"))
        self.watches: Watches = make_watches(seed)
        self.generator = FeedGenerator(seed, entries, self.watches)
        self.site = FeedSite(self.dir / "site", self.generator, feeds)
        self.site.root.mkdir()
        started = time.perf_counter()
        self.bytes = self.site.publish_all(0)
        self.generate_seconds = time.perf_counter() - started
        self.server = ServerProcess(self.site.root, python, REPO, server_seconds)

    def urls(self) -> list[str]:
        return [self.server.url(self.site.name(i)) for i in range(self.feeds)]

    def write_config(self, name: str, *, interval: str = "15m") -> Path:
        """A config for a fresh database ``<name>.db`` in the workload's dir; returns its path."""
        data = {
            "database": f"sqlite:///{self.dir / (name + '.db')}",
            "defaults": {"interval": interval, "timeout": "30s", "alert_on_first_poll": False},
            "feeds": [{"name": self.site.name(i), "url": url} for i, url in enumerate(self.urls())],
            "speakers": [{"name": s.name, "aliases": list(s.aliases)} for s in self.watches.speakers],
            "themes": [
                {
                    "name": t.name,
                    "all_of": [list(g) for g in t.all_of],
                    **({"any_of": list(t.any_of)} if t.any_of else {}),
                    **({"none_of": list(t.none_of)} if t.none_of else {}),
                }
                for t in self.watches.themes
            ],
        }
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def database(self, name: str) -> Path:
        return self.dir / f"{name}.db"

    def __enter__(self) -> Workload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
