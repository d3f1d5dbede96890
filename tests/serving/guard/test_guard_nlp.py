"""The NLP engine: a tokenizer with lemmas by default, an installed spaCy pipeline for NER, no downloads.

The NER test uses a real spaCy pipeline whose `entity_ruler` labels two names; it stands in for a
statistical model such as en_core_web_lg, which is not installed here and must never be downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy

from finserve.serving.guard import GuardConfig, GuardConfigError, PIIGuard
from finserve.serving.guard.nlp import TokenizerNlpEngine, build_nlp_engine


@pytest.fixture(scope="module")
def ner_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": [{"LOWER": "jane"}, {"LOWER": "austen"}]},
            {"label": "GPE", "pattern": "Paris"},
            {"label": "ORG", "pattern": "Northwind Bank"},
        ]
    )
    path = tmp_path_factory.mktemp("spacy") / "ner_pipeline"
    nlp.to_disk(path)
    return path


def test_default_engine_is_a_tokenizer_with_lemmas() -> None:
    engine = build_nlp_engine(GuardConfig())
    assert isinstance(engine, TokenizerNlpEngine)
    artifacts = engine.process_text("My SSN please", "en")
    assert artifacts.lemmas == ["my", "ssn", "please"]
    assert artifacts.entities == []


def test_context_words_raise_scores(make_guard) -> None:
    guard = make_guard(entities=["US_SSN"])
    bare = guard.scan("the code 536-22-8145 failed").findings[0].score
    with_context = guard.scan("my ssn 536-22-8145 failed").findings[0].score
    assert with_context > bare


def test_missing_spacy_model_is_a_config_error_and_is_not_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    downloads: list[str] = []
    monkeypatch.setattr(spacy.cli, "download", lambda name, *a, **k: downloads.append(name))
    with pytest.raises(GuardConfigError, match="not installed"):
        PIIGuard(GuardConfig(spacy_model="en_core_web_finserve_missing"))
    assert downloads == []


def test_spacy_pipeline_adds_ner_entities(ner_pipeline: Path) -> None:
    config = GuardConfig(
        spacy_model=str(ner_pipeline), entities=["PERSON", "LOCATION", "ORGANIZATION", "CREDIT_CARD"]
    )
    guard = PIIGuard(config)
    text = "Jane Austen moved to Paris and banks with Northwind Bank, card 4111 1111 1111 1111"
    result = guard.scan(text)
    found = {(f.type, text[f.start : f.end]) for f in result.findings}
    assert found == {
        ("PERSON", "Jane Austen"),
        ("LOCATION", "Paris"),
        ("ORGANIZATION", "Northwind Bank"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
    }
    assert result.text == "<PERSON> moved to <LOCATION> and banks with <ORGANIZATION>, card <CREDIT_CARD>"


def test_ner_types_not_configured_are_not_reported(ner_pipeline: Path) -> None:
    guard = PIIGuard(GuardConfig(spacy_model=str(ner_pipeline), entities=["PERSON"]))
    assert guard.scan("Jane Austen moved to Paris").text == "<PERSON> moved to Paris"
