"""Precision and recall of the matcher on a labelled corpus (default: shared/corpus/dev).

    python bench/match_quality.py [CORPUS_DIR] [--themes CONFIG] [--relabel JSON] [--floor 0.97] [--verbose]

The corpus directory holds ``config.yaml`` (speakers, themes), ``feeds/*`` and ``labels.json``
(entry id -> {"speakers", "statements", "themes"}). ``--themes`` takes the themes from another
config instead (the shipped ``feeds.yaml`` on ``shared/corpus/real-news``, whose labels use the
shipped theme names). ``--relabel`` replaces some labels (``tests/data/dev-relabels.json``: the
dev labels the current contract changes, each with its reason). Every feed is run through ``parse_feed`` and ``Matcher.match``; each
(entry, watch) pair is a true/false positive/negative per category, and themes are also scored
one by one. Exits 1 when any precision or recall is below the floor, 2 when the corpus is
inconsistent.

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


#: Theme keys besides the phrases, read as the config would (see docs/matching.md).
THEME_OPTIONS = ("threshold", "near", "where", "at_least", "none_of_scope", "min_score")


def load_watches(config_path: Path, themes_path: Path | None = None) -> tuple[list[Speaker], list[Theme]]:
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    raw_themes = raw.get("themes") or ()
    if themes_path is not None:
        raw_themes = (yaml.safe_load(themes_path.read_text(encoding="utf-8")) or {}).get("themes") or ()
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
            **{k: t[k] for k in THEME_OPTIONS if k in t},
        )
        for t in raw_themes
    ]
    return speakers, themes


def predict(corpus: Path, themes_path: Path | None = None) -> Labels:
    """Run parse + match over every feed file; entry id -> category -> watch names."""
    matcher = Matcher(*load_watches(corpus / "config.yaml", themes_path))
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
    """Scores per category, then per theme (``theme: NAME``) for every theme either side names."""
    scores = {c: Score() for c in CATEGORIES}
    theme_names = sorted({t for labels in (*expected.values(), *predicted.values()) for t in labels["themes"]})
    scores.update({f"theme: {t}": Score() for t in theme_names})
    for entry_id, labels in expected.items():
        for category in CATEGORIES:
            got, want = predicted[entry_id][category], labels[category]
            scores[category].tp += len(got & want)
            scores[category].fp += len(got - want)
            scores[category].fn += len(want - got)
        for t in theme_names:
            got_t, want_t = t in predicted[entry_id]["themes"], t in labels["themes"]
            row = scores[f"theme: {t}"]
            row.tp += got_t and want_t
            row.fp += got_t and not want_t
            row.fn += want_t and not got_t
    return scores


def load_labels(corpus: Path, relabel: Path | None = None) -> Labels:
    raw = json.loads((corpus / "labels.json").read_text(encoding="utf-8"))
    if relabel is not None:
        for entry_id, changed in json.loads(relabel.read_text(encoding="utf-8")).items():
            if entry_id in raw:
                raw[entry_id] |= {c: v for c, v in changed.items() if c in CATEGORIES}
    return {k: {c: set(v[c]) for c in CATEGORIES} for k, v in raw.items()}


Floors = dict[str, tuple[float, float]]


def parse_floors(spec: str) -> Floors:
    """ "0.97" (every category), or "speakers=0.98,statements=0.95/0.90,themes=0.85/0.80":
    precision/recall floors per category; "themes" also applies to each theme's own row."""
    if "=" not in spec:
        return {c: (float(spec), float(spec)) for c in CATEGORIES}
    floors: Floors = {}
    for part in spec.split(","):
        category, _, values = part.partition("=")
        precision, _, recall = values.partition("/")
        floors[category.strip()] = (float(precision), float(recall or precision))
    return floors


def below_floor(scores: dict[str, Score], floors: Floors) -> list[str]:
    out = []
    for name, s in scores.items():
        floor = floors.get("themes" if name.startswith("theme: ") else name)
        if floor is not None and (s.precision < floor[0] or s.recall < floor[1]):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--themes", type=Path, help="take the themes from this config (e.g. feeds.yaml)")
    parser.add_argument("--relabel", type=Path, help="JSON: entry id -> categories whose labels it replaces")
    parser.add_argument(
        "--floor", default="0.97", help='"0.97", or per category: "statements=0.95/0.90,themes=0.85/0.80"'
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="list every disagreement")
    args = parser.parse_args(argv)

    expected = load_labels(args.corpus, args.relabel)
    predicted = predict(args.corpus, args.themes)
    if set(predicted) != set(expected):
        print(f"entry ids differ from labels.json: {sorted(set(predicted) ^ set(expected))}")
        return 2

    scores = score(predicted, expected)
    width = max(len(c) for c in scores) + 2
    print(f"{'category':<{width}}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}")
    for category, s in scores.items():
        print(f"{category:<{width}}{s.tp:>5}{s.fp:>5}{s.fn:>5}{s.precision:>11.3f}{s.recall:>8.3f}")
    if args.verbose:
        for entry_id in sorted(expected):
            for category in CATEGORIES:
                got, want = predicted[entry_id][category], expected[entry_id][category]
                if got != want:
                    print(f"  {entry_id} {category}: missing {sorted(want - got)} extra {sorted(got - want)}")
    below = below_floor(scores, parse_floors(args.floor))
    if below:
        print(f"below the floor ({args.floor}): {', '.join(below)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
