"""Ingest quarantine end to end: the real CLI (`finserve ingest`, `finserve kb quarantine list`), the real
Presidio guard, MiniLM and a Milvus Lite index. Two answers hold PII (a card number, an email): with the
skip policy they never reach search results, with the mask policy they are found masked; both are listed
and audited, and nothing raw lands in the quarantine list or the audit log."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from finserve.cli import app
from finserve.serving.audit import read_records
from finserve.serving.retrieval import RetrievalConfig, Retriever
from finserve.serving.retrieval.config import default_answers_path

CARD = "4458 5630 7407 7526"
EMAIL = "jane.doe@example.com"
CARD_ANSWER = f"Your new card arrives within five working days. Our test card {CARD} is for staff only."
EMAIL_ANSWER = f"Exchange rates are updated daily; questions to {EMAIL} please."


@pytest.fixture
def kb(tmp_path, monkeypatch, kb_rows, embedder):
    data = tmp_path / "banking77.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(kb_rows)
    answers = yaml.safe_load(default_answers_path().read_text())
    answers["card_arrival"], answers["exchange_rate"] = CARD_ANSWER, EMAIL_ANSWER
    (tmp_path / "answers.yaml").write_text(yaml.safe_dump(answers))
    monkeypatch.setenv("FINSERVE_BANKING77_CSV", str(data))
    monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path / "var"))
    (tmp_path / "var" / "models" / "embedder").mkdir(parents=True)
    shutil.copy(embedder.onnx_path, tmp_path / "var" / "models" / "embedder")
    return tmp_path


def ingest_with(kb, policy: str):
    config = kb / f"serving-{policy}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "retrieval": {
                    "milvus_uri": str(kb / f"{policy}.db"),
                    "redis_url": None,
                    "quarantine": {"policy": policy},
                },
                "audit": {"path": str(kb / f"audit-{policy}.jsonl"), "fsync": "never"},
            }
        )
    )
    result = CliRunner().invoke(
        app, ["ingest", "--config", str(config), "--answers", str(kb / "answers.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "2 documents quarantined for PII" in result.output
    return config


async def search(kb, embedder, policy: str, query: str):
    retriever = Retriever(
        RetrievalConfig(milvus_uri=str(kb / f"{policy}.db"), redis_url=None, top_k=77),
        embedder=embedder,
        registry=CollectorRegistry(),
    )
    try:
        return await retriever.search(query)
    finally:
        await retriever.aclose()


def no_raw(text: str) -> None:
    assert CARD not in text and CARD.replace(" ", "") not in text and EMAIL not in text


async def test_skip_policy_keeps_them_out_lists_and_audits(kb, embedder):
    config = ingest_with(kb, "skip")
    found = await search(kb, embedder, "skip", "When will my new card arrive?")
    ids = {h.id for h in found.hits}
    assert "answer:card_arrival" not in ids and "answer:exchange_rate" not in ids
    assert "answer:activate_my_card" in ids  # the rest of the knowledge is there

    listed = CliRunner().invoke(app, ["kb", "quarantine", "list", "--config", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert {(r["doc_id"], r["policy"], tuple(r["entities"])) for r in rows} == {
        ("answer:card_arrival", "skip", ("CREDIT_CARD",)),
        ("answer:exchange_rate", "skip", ("EMAIL_ADDRESS",)),
    }
    table = CliRunner().invoke(
        app, ["kb", "quarantine", "list", "--config", str(config)], env={"COLUMNS": "200"}
    )
    assert "answer:card_arrival" in table.output and "CREDIT_CARD=1" in table.output
    no_raw((kb / "quarantine.jsonl").read_text())

    audit = list(read_records(kb / "audit-skip.jsonl"))  # request records: checkpoints are lines too
    assert sorted((a["request_id"].rsplit("-", 1)[-1], a["status"], a["pii"]["ingest"]) for a in audit) == [
        ("answer:card_arrival", 422, {"CREDIT_CARD": 1}),
        ("answer:exchange_rate", 422, {"EMAIL_ADDRESS": 1}),
    ]
    no_raw((kb / "audit-skip.jsonl").read_text())


async def test_mask_policy_indexes_them_masked(kb, embedder):
    config = ingest_with(kb, "mask")
    found = await search(kb, embedder, "mask", "When will my new card arrive?")
    texts = {h.id: h.text for h in found.hits}
    assert texts["answer:card_arrival"].startswith("Your new card arrives within five working days.")
    assert "answer:exchange_rate" in texts
    for text in texts.values():
        no_raw(text)
    listed = CliRunner().invoke(app, ["kb", "quarantine", "list", "--config", str(config), "--json"])
    assert {json.loads(line)["policy"] for line in listed.output.splitlines()} == {"mask"}
    audit = list(read_records(kb / "audit-mask.jsonl"))
    assert len(audit) == 2 and {a["status"] for a in audit} == {200}
    no_raw((kb / "audit-mask.jsonl").read_text())


def test_empty_quarantine_list(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["kb", "quarantine", "list"])
    assert result.exit_code == 0 and "no quarantined documents" in result.output
