"""The bank's own packaged knowledge holds no PII: ingest quarantines a document the guard flags, so a false
positive here would silently drop an answer or an off-topic example from the index."""

from __future__ import annotations

from importlib.resources import files

import yaml

from finserve.serving.guard import PIIGuard

_DATA = files("finserve.serving.retrieval").joinpath("data")


def test_curated_answers_are_clean(guard: PIIGuard) -> None:
    answers = yaml.safe_load(_DATA.joinpath("answers.yaml").read_text(encoding="utf-8"))
    assert len(answers) == 77
    flagged = {
        intent: [(text[f.start : f.end], f.type) for f in guard.scan(text).findings]
        for intent, text in answers.items()
    }
    assert {intent: found for intent, found in flagged.items() if found} == {}


def test_off_topic_examples_are_clean(guard: PIIGuard) -> None:
    lines = [
        line.strip() for line in _DATA.joinpath("off_topic.txt").read_text(encoding="utf-8").splitlines()
    ]
    texts = [line for line in lines if line and not line.startswith("#")]
    assert len(texts) > 100
    flagged = [
        (text, [(text[f.start : f.end], f.type) for f in r.findings])
        for text, r in zip(texts, guard.scan_each(texts), strict=True)
    ]
    assert [item for item in flagged if item[1]] == []
