"""Leak rates of a PII guard on tests/data/pii_corpus.jsonl, per format and per kind.

A case leaks when any letter or digit of one of its PII spans is left outside every finding of the
turn it is in. Used by bench_guard (figures for docs/pii.md) and tests/serving/guard/test_guard_corpus.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_corpus.jsonl"


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def leaked(case: dict[str, Any], results: list[Any]) -> bool:
    """Whether a PII character of `case` survives in `results` (one GuardResult per turn);
    for clean cases, whether the guard altered anything."""
    if not case["pii"]:
        return any(r.findings for r in results)
    for turn, start, end in case["pii"]:
        covered = [(f.start, f.end) for f in results[turn].findings]
        text = case["turns"][turn]
        for i in range(start, end):
            if text[i].isalnum() and not any(s <= i < e for s, e in covered):
                return True
    return False


def score(scan_many: Callable[[list[str]], list[Any]], cases: list[dict[str, Any]]) -> dict[str, Any]:
    """{"formats": {format: {kind, cases, leaked}}, "kinds": {kind: {cases, leaked, rate}}, "leaks": [...ids]}."""
    formats: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"cases": 0, "leaked": 0})
    leaks: list[str] = []
    for case in cases:
        bad = leaked(case, scan_many(case["turns"]))
        row = formats.setdefault(case["format"], {"kind": case["kind"], "cases": 0, "leaked": 0})
        row["cases"] += 1
        row["leaked"] += int(bad)
        kinds[case["kind"]]["cases"] += 1
        kinds[case["kind"]]["leaked"] += int(bad)
        if bad:
            leaks.append(case["id"])
    for row in kinds.values():
        row["rate"] = round(row["leaked"] / row["cases"], 4)
    return {"formats": formats, "kinds": dict(kinds), "leaks": leaks}
