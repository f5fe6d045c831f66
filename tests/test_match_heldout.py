"""Data test: the matcher meets the floor on a held-out corpus written apart from the dev one.

``tests/data/heldout`` follows the same contract as ``shared/corpus/dev`` (R1-R12) with other
speakers, themes and phrasings, so rules fitted to the dev sentences show up here. It is scored
by ``bench/match_quality.py``, as the dev corpus is.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "heldout"
FLOOR = 0.97


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("match_quality", REPO / "bench" / "match_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_heldout_precision_and_recall_meet_the_floor_in_every_category() -> None:
    bench = load_bench()
    labels = json.loads((CORPUS / "labels.json").read_text(encoding="utf-8"))
    expected = {k: {c: set(v[c]) for c in bench.CATEGORIES} for k, v in labels.items()}
    predicted = bench.predict(CORPUS)
    assert set(predicted) == set(expected), "every labelled entry is parsed, and nothing else"
    scores = bench.score(predicted, expected)
    misses = {
        (entry_id, c): sorted(predicted[entry_id][c] ^ want)
        for entry_id, cats in expected.items()
        for c, want in cats.items()
        if predicted[entry_id][c] != want
    }
    below = {
        c: (round(s.precision, 3), round(s.recall, 3)) for c, s in scores.items() if min(s.precision, s.recall) < FLOOR
    }
    assert below == {}, misses


def test_heldout_labels_are_consistent() -> None:
    bench = load_bench()
    config = bench.load_watches(CORPUS / "config.yaml")
    names = {s.name for s in config[0]}
    theme_names = {t.name for t in config[1]}
    for entry_id, labels in json.loads((CORPUS / "labels.json").read_text(encoding="utf-8")).items():
        assert set(labels["statements"]) <= set(labels["speakers"]) <= names, entry_id
        assert set(labels["themes"]) <= theme_names, entry_id
