"""How well article text is extracted: on the real pages of ``shared/corpus/articles``, the
share of the segments an extractor must keep ("with") that are in the text watcher extracts,
and the share of boilerplate segments (menus, footers, related links: "without") that are.

    .venv/bin/python bench/article_quality.py [CORPUS_DIR]

Prints one line, e.g. ``with 95.0 % (151/159) without 14.5 % (24/166) 54 pages 1.6 s``.
``tests/test_article.py`` holds the floors (issue 14): with >= 93 %, without <= 15 %.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from watcher.article import main_text
from watcher.errors import ArticleError

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "articles"


@dataclass(frozen=True)
class Quality:
    pages: int
    kept: int
    must_keep: int
    leaked: int
    must_drop: int
    seconds: float

    @property
    def with_share(self) -> float:
        return self.kept / self.must_keep

    @property
    def without_share(self) -> float:
        return self.leaked / self.must_drop

    def __str__(self) -> str:
        return (
            f"with {self.with_share:.1%} ({self.kept}/{self.must_keep}) "
            f"without {self.without_share:.1%} ({self.leaked}/{self.must_drop}) "
            f"{self.pages} pages {self.seconds:.1f} s"
        ).replace("%", " %")


def measure(corpus: Path = CORPUS) -> Quality:
    expected = json.loads((corpus / "expected.json").read_text(encoding="utf-8"))
    kept = must_keep = leaked = must_drop = 0
    start = time.perf_counter()
    for name, segments in expected.items():
        page = (corpus / "pages" / name).read_bytes()
        try:
            text = main_text(page, url=segments["url"] or f"http://127.0.0.1/{name}")
        except ArticleError:
            text = ""
        must_keep += len(segments["with"])
        must_drop += len(segments["without"])
        kept += sum(s in text for s in segments["with"])
        leaked += sum(s in text for s in segments["without"])
    return Quality(len(expected), kept, must_keep, leaked, must_drop, time.perf_counter() - start)


def main(argv: list[str]) -> int:
    print(measure(Path(argv[0]) if argv else CORPUS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
