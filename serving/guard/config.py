"""The PII policy: which entity types to look for and what to do with each one found.

Kept free of Presidio imports so the serving config can load it without paying for the analyzer.
"""

from __future__ import annotations

from enum import Enum
from typing import Self

from pydantic import Field, field_validator, model_validator

from finserve.contracts import StrictModel

# Entity types found by patterns, checksums and context rules: no language model needed.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IP_ADDRESS",
    "UK_SORT_CODE",
    "UK_ACCOUNT_NUMBER",
    "CARD_SECRET",
    "PERSON",
    "UK_NINO",
    "ID_NUMBER",
    "DATE_OF_BIRTH",
    "ADDRESS",
    "CREDENTIAL",
    "ACCOUNT_NUMBER",
    "CRYPTO",
    "COORDINATES",
    "MAC_ADDRESS",
)
# Further Presidio pattern recognizers a policy may switch on; off by default because they are
# either noisy on banking chat (DATE_TIME, US_BANK_NUMBER) or rare in it.
OPTIONAL_PATTERN_ENTITIES: tuple[str, ...] = (
    "US_BANK_NUMBER",
    "US_ITIN",
    "US_PASSPORT",
    "UK_NHS",
    "URL",
    "DATE_TIME",
)
# Only a spaCy NER model finds these; they need `spacy_model`.
NER_ONLY_ENTITIES: tuple[str, ...] = ("LOCATION", "ORGANIZATION", "NRP")

KNOWN_ENTITIES: frozenset[str] = frozenset(DEFAULT_ENTITIES + OPTIONAL_PATTERN_ENTITIES + NER_ONLY_ENTITIES)

HASH_KEY_ENV = "FINSERVE_PII_HASH_KEY"
"""Env var holding the HMAC key of the ``hash`` action. Never put the key in a config file."""


class EntityAction(str, Enum):
    """What the guard does with one finding."""

    mask = "mask"  # every character (but the last `mask_keep_last`) becomes `mask_char`
    redact = "redact"  # removed from the text
    hash = "hash"  # <TYPE:hmac> - a keyed pseudonym, stable for one key, so joins still work
    replace = "replace"  # <TYPE>
    block = "block"  # replaced as <TYPE> and listed in GuardResult.blocked: the caller rejects the request


class GuardConfig(StrictModel):
    """PII policy shared by the input, context and output guards and by `finserve guard`."""

    default_action: EntityAction = Field(
        EntityAction.replace, description="Action for every entity type without its own policy."
    )
    policies: dict[str, EntityAction] = Field(
        default_factory=dict, description="Per-entity-type action, e.g. {CREDIT_CARD: block}."
    )
    entities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ENTITIES),
        description="Entity types to look for; others are never reported. See docs/pii.md.",
    )
    score_threshold: float = Field(
        0.4, ge=0.0, le=1.0, description="Findings scoring below this are ignored (Presidio scores, 0..1)."
    )
    spacy_model: str | None = Field(
        None,
        description="Installed spaCy pipeline (package name or path) for NER; None = patterns only. "
        "Never downloaded: a missing model is a configuration error.",
    )
    language: str = Field("en", min_length=2, description="Language code passed to Presidio.")
    mask_char: str = Field("*", min_length=1, max_length=1, description="Character the mask action writes.")
    mask_keep_last: int = Field(
        0, ge=0, le=8, description="Trailing characters the mask action leaves visible (0 = mask all)."
    )
    hash_length: int = Field(16, ge=8, le=64, description="Hex digits of the HMAC kept by the hash action.")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB"],
        min_length=1,
        description="Regions whose national phone formats are recognised; +CC numbers are found anywhere.",
    )
    allow_list: list[str] = Field(
        default_factory=list,
        description="Exact strings never treated as PII, e.g. the bank's own support number.",
    )

    @field_validator("entities")
    @classmethod
    def _check_entities(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - KNOWN_ENTITIES)
        if unknown:
            raise ValueError(f"unknown entity types {unknown}; known: {sorted(KNOWN_ENTITIES)}")
        if not v:
            raise ValueError("entities must name at least one entity type")
        return list(dict.fromkeys(v))

    @field_validator("policies")
    @classmethod
    def _check_policies(cls, v: dict[str, EntityAction]) -> dict[str, EntityAction]:
        unknown = sorted(set(v) - KNOWN_ENTITIES)
        if unknown:
            raise ValueError(f"policies name unknown entity types {unknown}")
        return v

    @field_validator("phone_regions")
    @classmethod
    def _upper_regions(cls, v: list[str]) -> list[str]:
        return [r.upper() for r in v]

    @model_validator(mode="after")
    def _ner_needs_model(self) -> Self:
        needs_ner = sorted(set(self.entities) & set(NER_ONLY_ENTITIES))
        if needs_ner and self.spacy_model is None:
            raise ValueError(f"entity types {needs_ner} need a spaCy NER model: set spacy_model")
        return self

    def action_for(self, entity_type: str) -> EntityAction:
        return self.policies.get(entity_type, self.default_action)

    def uses(self, action: EntityAction) -> bool:
        """Whether any configured entity type resolves to `action`."""
        return any(self.action_for(e) is action for e in self.entities)
