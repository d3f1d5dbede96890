"""GuardConfig validation: typos and impossible policies fail at load time, not at scan time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from finserve.serving.guard.config import DEFAULT_ENTITIES, KNOWN_ENTITIES, EntityAction, GuardConfig
from finserve.serving.guard.recognizers import FACTORIES


def test_defaults() -> None:
    config = GuardConfig()
    assert config.default_action is EntityAction.replace
    assert config.entities == list(DEFAULT_ENTITIES)
    assert config.spacy_model is None
    assert config.action_for("CREDIT_CARD") is EntityAction.replace


def test_yaml_round_trip() -> None:
    config = GuardConfig.from_yaml(
        "default_action: mask\n"
        "policies: {CREDIT_CARD: block, US_SSN: hash}\n"
        "entities: [CREDIT_CARD, US_SSN]\n"
    )
    assert config.action_for("CREDIT_CARD") is EntityAction.block
    assert config.action_for("US_SSN") is EntityAction.hash
    assert config.uses(EntityAction.hash) and not config.uses(EntityAction.redact)
    assert GuardConfig.model_validate(config.model_dump(mode="json")) == config


@pytest.mark.parametrize(
    "fields",
    [
        {"entities": ["CREDIT_CARDS"]},  # typo
        {"entities": []},
        {"policies": {"IBAN": "block"}},  # unknown type
        {"default_action": "delete"},
        {"entities": ["LOCATION"]},  # NER-only without a spaCy model
        {"score_threshold": 1.5},
        {"mask_char": "**"},
        {"hash_length": 4},
        {"unknown_field": 1},
    ],
)
def test_rejects_invalid(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GuardConfig.model_validate(fields)


def test_duplicate_entities_collapse() -> None:
    assert GuardConfig(entities=["US_SSN", "US_SSN", "PERSON"]).entities == ["US_SSN", "PERSON"]


def test_every_pattern_entity_has_a_recognizer() -> None:
    ner_only = {"LOCATION", "ORGANIZATION", "NRP"}
    assert set(FACTORIES) == KNOWN_ENTITIES - ner_only
