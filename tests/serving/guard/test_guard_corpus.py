"""The guard against the generated PII corpus (tests/data/pii_corpus.jsonl) and Banking77: the
targets of docs/pii.md. Leak counts are behaviour, so they are asserted; timings are not."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from finserve.serving.guard import GuardResult, PIIGuard
from finserve.serving.paths import banking77_csv

DATA = Path(__file__).resolve().parents[2] / "data"
CORPUS = DATA / "pii_corpus.jsonl"


def _cases() -> list[dict[str, Any]]:
    with open(CORPUS, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _leaked(case: dict[str, Any], results: list[GuardResult]) -> bool:
    """A PII letter or digit outside every finding of its turn; for clean cases, any finding."""
    if not case["pii"]:
        return any(r.findings for r in results)
    for turn, start, end in case["pii"]:
        text = case["turns"][turn]
        spans = [(f.start, f.end) for f in results[turn].findings]
        if any(text[i].isalnum() and not any(s <= i < e for s, e in spans) for i in range(start, end)):
            return True
    return False


@pytest.fixture(scope="module")
def outcomes(guard: PIIGuard) -> list[tuple[dict[str, Any], bool]]:
    return [(case, _leaked(case, guard.scan_many(case["turns"]))) for case in _cases()]


def test_corpus_is_large_and_varied() -> None:
    cases = _cases()
    assert len(cases) >= 2000
    assert len({c["format"] for c in cases}) >= 40
    assert len({c["turns"][0] for c in cases}) > 0.95 * len(cases)


def test_corpus_is_what_its_generator_makes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_pii_corpus", DATA / "make_pii_corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path / "corpus.jsonl")])
    assert (tmp_path / "corpus.jsonl").read_text(encoding="utf-8") == CORPUS.read_text(encoding="utf-8")


def test_no_structured_pii_leaks_in_any_format(outcomes) -> None:
    leaks = Counter(c["format"] for c, bad in outcomes if bad and c["kind"] == "structured")
    assert leaks == Counter()


@pytest.mark.parametrize(("kind", "limit"), [("name", 0.05), ("spelled", 0.10)])
def test_leak_rate_within_target(outcomes, kind: str, limit: float) -> None:
    cases = [bad for c, bad in outcomes if c["kind"] == kind]
    assert len(cases) >= 100
    assert sum(cases) / len(cases) <= limit


def test_clean_corpus_text_is_not_altered(outcomes) -> None:
    clean = [(c["id"], bad) for c, bad in outcomes if c["kind"] == "clean"]
    assert clean and [i for i, bad in clean if bad] == []


def test_banking77_altered_at_most_one_percent(guard: PIIGuard) -> None:
    with open(banking77_csv(), encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    altered = sum(r.text != t for t, r in zip(texts, guard.scan_each(texts), strict=True))
    assert len(texts) == 10_003
    assert altered / len(texts) <= 0.01
