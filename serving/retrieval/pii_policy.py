"""What happens to knowledge that holds personal data: quarantine at ingest, hold-back at serving time.

Knowledge is supposed to be clean; a document with a card number or an email in it is a mistake
upstream. Two layers catch it:

- ``finserve ingest`` scans every document with the PII guard. A document with findings is
  quarantined: ``skip`` leaves it out of the index, ``mask`` indexes the guard's masked text. Either
  way one JSON line per document goes to the quarantine file next to the index (ids, entity types and
  counts, never the text) and one record to the audit log.
- At serving time a retrieved chunk whose findings cross the hold-back policy is left out of the
  prompt altogether (masking alone would still tell the model that something was there), and the
  request is answered from the remaining knowledge.

Config and file format only, plus the pure hold-back decision: no Presidio, no vector store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from pydantic import Field

from finserve.contracts import StrictModel

QUARANTINE_FILE = "quarantine.jsonl"


class QuarantinePolicy(str, Enum):
    skip = "skip"  # not indexed at all
    mask = "mask"  # indexed with the guard's masked text


class QuarantineConfig(StrictModel):
    """Ingest-time scanning of knowledge documents."""

    policy: QuarantinePolicy = Field(
        QuarantinePolicy.skip,
        description="skip: a document with PII findings is not indexed; mask: it is indexed with its PII masked.",
    )
    path: str | None = Field(
        None,
        description="Quarantine list (JSON lines). None: quarantine.jsonl next to the Milvus Lite file, or "
        "<data dir>/index/quarantine.jsonl for a Milvus server.",
    )


class HoldBackConfig(StrictModel):
    """Serving-time policy for retrieved chunks in which the context guard finds PII."""

    entities: list[str] | None = Field(
        None,
        description="Entity types that hold a chunk back from the prompt; None: every type the guard finds.",
    )
    min_score: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="A finding holds its chunk back only from this guard score up (0: any finding).",
    )


class QuarantineRecord(StrictModel):
    """One quarantined document: where it came from and what was found, never the text itself."""

    time: datetime = Field(default_factory=lambda: datetime.now(UTC), description="When ingest found it.")
    doc_id: str = Field(description="Document id, e.g. answer:card_arrival or example:17.")
    kind: str = Field(description="answer or example.")
    intent: str = Field(description="Intent the document belongs to.")
    tenant: str = Field(description="Tenant the document belongs to.")
    policy: QuarantinePolicy = Field(
        description="What ingest did: skip (not indexed) or mask (indexed masked)."
    )
    entities: dict[str, int] = Field(description="Entity type -> number of findings.")
    index_version: str = Field(description="Index version the ingest built.")


def quarantine_path(config: QuarantineConfig, milvus_uri: str, data_dir: Path) -> Path:
    if config.path:
        return Path(config.path)
    if "://" not in milvus_uri:
        return Path(milvus_uri).parent / QUARANTINE_FILE
    return data_dir / "index" / QUARANTINE_FILE


def write_quarantine(path: Path, records: Sequence[QuarantineRecord]) -> None:
    """Replaces the list with this ingest's records (the list describes the current index), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def read_quarantine(path: Path) -> list[QuarantineRecord]:
    """The quarantine list; [] when no ingest wrote one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [QuarantineRecord.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]


def quarantine_counts(records: Iterable[QuarantineRecord]) -> dict[tuple[str, str], int]:
    """(policy, entity type) -> documents with at least one finding of that type."""
    out: dict[tuple[str, str], int] = {}
    for r in records:
        for entity in r.entities:
            key = (r.policy.value, entity)
            out[key] = out.get(key, 0) + 1
    return out


def held_back(findings: Sequence[Iterable[tuple[str, float]]], config: HoldBackConfig) -> list[bool]:
    """For each chunk's findings (entity type, score): whether the policy keeps it out of the prompt."""
    wanted = None if config.entities is None else set(config.entities)
    return [
        any((wanted is None or entity in wanted) and score >= config.min_score for entity, score in chunk)
        for chunk in findings
    ]
