"""Precision and recall of the matcher on a labelled corpus (default: shared/corpus/dev).

    python bench/match_quality.py [CORPUS_DIR] [--floor 0.97] [--verbose]

The corpus directory holds ``config.yaml`` (speakers, themes), ``feeds/*`` and ``labels.json``
(entry id -> {"speakers", "statements", "themes"}). Every feed is run through ``parse_feed``
and ``Matcher.match``; each (entry, watch) pair is a true/false positive/negative per category.
Exits 1 when any precision or recall is below the floor, 2 when the corpus is inconsistent.

The config is read with plain ``yaml.safe_load`` on purpose: this script measures matching,
and must not depend on ``watcher.config``'s validation.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from watcher.config import Speaker, Theme  # noqa: E402
from watcher.match import Matcher  # noqa: E402
from watcher.parse import parse_feed  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "dev"
CATEGORIES = ("speakers", "statements", "themes")
Labels = dict[str, dict[str, set[str]]]


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def load_watches(config_path: Path) -> tuple[list[Speaker], list[Theme]]:
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    speakers = [
        Speaker(
            name=s["name"],
            aliases=tuple(s.get("aliases") or ()),
            threshold=s.get("threshold"),
        )
        for s in raw.get("speakers") or ()
    ]
    themes = [
        Theme(
            name=t["name"],
            all_of=tuple(tuple(group) for group in t.get("all_of") or ()),
            any_of=tuple(t.get("any_of") or ()),
            none_of=tuple(t.get("none_of") or ()),
            threshold=t.get("threshold"),
        )
        for t in raw.get("themes") or ()
    ]
    return speakers, themes


def predict(corpus: Path) -> Labels:
    """Run parse + match over every feed file; entry id -> category -> watch names."""
    matcher = Matcher(*load_watches(corpus / "config.yaml"))
    predicted: Labels = {}
    for path in sorted((corpus / "feeds").iterdir()):
        parsed = parse_feed(path.read_bytes(), url=path.resolve().as_uri())
        for article in parsed.articles:
            hits = matcher.match(article)
            predicted[article.entry_id or article.key] = {
                "speakers": {h.watch for h in hits if h.kind == "speaker"},
                "statements": {h.watch for h in hits if h.kind == "speaker" and h.statement},
                "themes": {h.watch for h in hits if h.kind == "theme"},
            }
    return predicted


def score(predicted: Labels, expected: Labels) -> dict[str, Score]:
    scores = {c: Score() for c in CATEGORIES}
    for entry_id, labels in expected.items():
        for category in CATEGORIES:
            got, want = predicted[entry_id][category], labels[category]
            scores[category].tp += len(got & want)
            scores[category].fp += len(got - want)
            scores[category].fn += len(want - got)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--floor", type=float, default=0.97)
    parser.add_argument("--verbose", "-v", action="store_true", help="list every disagreement")
    args = parser.parse_args(argv)

    raw_labels = json.loads((args.corpus / "labels.json").read_text(encoding="utf-8"))
    expected: Labels = {k: {c: set(v[c]) for c in CATEGORIES} for k, v in raw_labels.items()}
    predicted = predict(args.corpus)
    if set(predicted) != set(expected):
        print(f"entry ids differ from labels.json: {sorted(set(predicted) ^ set(expected))}")
        return 2

    scores = score(predicted, expected)
    print(f"{'category':<12}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}")
    for category, s in scores.items():
        print(f"{category:<12}{s.tp:>5}{s.fp:>5}{s.fn:>5}{s.precision:>11.3f}{s.recall:>8.3f}")
    if args.verbose:
        for entry_id in sorted(expected):
            for category in CATEGORIES:
                got, want = predicted[entry_id][category], expected[entry_id][category]
                if got != want:
                    print(f"  {entry_id} {category}: missing {sorted(want - got)} extra {sorted(got - want)}")
    below = [c for c, s in scores.items() if min(s.precision, s.recall) < args.floor]
    if below:
        print(f"below the {args.floor} floor: {', '.join(below)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
