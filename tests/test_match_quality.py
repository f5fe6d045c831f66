"""Data test: the matcher meets the issue's floors on the labelled dev corpus (bench/match_quality.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "dev"
FLOOR = 0.97

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"labelled corpus not found at {CORPUS}")


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("match_quality", REPO / "bench" / "match_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_precision_and_recall_meet_the_floor_in_every_category() -> None:
    bench = load_bench()
    labels = json.loads((CORPUS / "labels.json").read_text(encoding="utf-8"))
    expected = {k: {c: set(v[c]) for c in bench.CATEGORIES} for k, v in labels.items()}
    predicted = bench.predict(CORPUS)
    assert set(predicted) == set(expected), "every labelled entry is parsed, and nothing else"
    scores = bench.score(predicted, expected)
    below = {
        c: (round(s.precision, 3), round(s.recall, 3)) for c, s in scores.items() if min(s.precision, s.recall) < FLOOR
    }
    assert below == {}


def test_script_exit_code_reports_the_floor() -> None:
    bench = load_bench()
    assert bench.main([str(CORPUS)]) == 0
    assert bench.main([str(CORPUS), "--floor", "1.01"]) == 1
