"""The knowledge base as data: answers per intent, Banking77 examples, the split, documents, version.

Pure functions apart from reading the two input files; no vector store, no model.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import yaml

from finserve.contracts.evaluation import OUT_OF_SCOPE

from .config import default_answers_path, default_off_topic_path
from .types import Document

Row = tuple[str, str]
"""(text, category): one Banking77 example."""

# Bump when the document layout changes, so old indexes get a new version even with the same inputs.
KB_FORMAT = "finserve-kb/1"
SPLIT_TEST_SIZE = 0.2
SPLIT_SEED = 77


def read_banking77(path: str | Path) -> list[Row]:
    """The CSV's (text, category) rows in file order."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [(rec["text"], rec["category"]) for rec in csv.DictReader(fh)]


def default_split(rows: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """The team's one train/validation split: 80/20, stratified by category, seed 77, rows in file order.

    Training and evaluation reuse this so held-out rows never reach the index.
    """
    from sklearn.model_selection import train_test_split

    rows = [(text, category) for text, category in rows]
    train, val = train_test_split(
        rows, test_size=SPLIT_TEST_SIZE, random_state=SPLIT_SEED, stratify=[c for _, c in rows]
    )
    return list(train), list(val)


def load_answers(path: str | Path | None = None) -> dict[str, str]:
    """intent -> answer text, from YAML; every value a non-empty string."""
    with open(path or default_answers_path(), encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of intent -> answer text")
    answers: dict[str, str] = {}
    for intent, text in data.items():
        if not isinstance(intent, str) or not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: answer for {intent!r} must be a non-empty string")
        answers[intent] = " ".join(text.split())
    return answers


def load_off_topic(path: str | Path | None = None) -> list[str]:
    """The off-topic questions, one per line (``#`` comments and blank lines skipped); None: the shipped list,
    an empty string: none."""
    if path == "":
        return []
    with open(path or default_off_topic_path(), encoding="utf-8") as fh:
        lines = (" ".join(line.split()) for line in fh)
        return [line for line in lines if line and not line.startswith("#")]


def build_documents(
    answers: Mapping[str, str], rows: Iterable[Row], tenant: str, off_topic: Sequence[str] = ()
) -> list[Document]:
    """Answers (sorted by intent), then examples in the given order (each example's intent needs an answer),
    then the off-topic questions as examples of :data:`OUT_OF_SCOPE` (which has no answer)."""
    docs = [
        Document(id=f"answer:{intent}", text=text, intent=intent, kind="answer", tenant=tenant)
        for intent, text in sorted(answers.items())
    ]
    missing: set[str] = set()
    for n, (text, intent) in enumerate(rows):
        if intent not in answers:
            missing.add(intent)
            continue
        docs.append(Document(id=f"example:{n}", text=text, intent=intent, kind="example", tenant=tenant))
    if missing:
        raise ValueError(f"no answer text for intents: {', '.join(sorted(missing))}")
    docs.extend(
        Document(id=f"off_topic:{n}", text=text, intent=OUT_OF_SCOPE, kind="example", tenant=tenant)
        for n, text in enumerate(off_topic)
    )
    return docs


def index_version(documents: Iterable[Document], embedder_id: str) -> str:
    """sha256 over the format, the embedder and every document: same inputs, same version."""
    digest = hashlib.sha256(f"{KB_FORMAT}\n{embedder_id}\n".encode())
    for doc in documents:
        digest.update(json.dumps([doc.id, doc.kind, doc.intent, doc.tenant, doc.text]).encode())
        digest.update(b"\n")
    return digest.hexdigest()
