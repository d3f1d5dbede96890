"""An audit record is never lost to its own schema: client values are bounded and escaped."""

from __future__ import annotations

import json
from pathlib import Path

from finserve.serving.audit import AuditLog, read_records, verify_chain
from finserve.serving.audit.record import bounded


def test_over_long_client_values_are_cut_with_a_marker(make_record) -> None:
    record = make_record(model="m" * 300, tenant="t" * 5000, request_id="r" * 201)
    assert len(record.model) == 200 and record.model.endswith("...[118 chars cut]")
    assert len(record.tenant) == 200 and record.tenant.startswith("t" * 100)
    assert len(record.request_id) <= 200 and record.request_id.endswith("chars cut]")


def test_lone_surrogates_are_escaped(make_record, audit_log: AuditLog, log_path: Path) -> None:
    record = make_record(model="gpt\ud800", input="hello \udfff there", output="ok\ud83d")
    assert record.model == "gpt\\ud800" and record.input == "hello \\udfff there"
    audit_log.append(record)
    raw = log_path.read_bytes()
    raw.decode("utf-8")  # strict: the file is valid UTF-8
    [line] = list(read_records(log_path))
    assert line["model"] == "gpt\\ud800" and line["output"] == "ok\\ud83d"
    assert verify_chain(log_path).ok


def test_citations_are_bounded(make_record) -> None:
    record = make_record(citations=[f"doc-{i}" for i in range(150)] + ["x" * 500])
    assert len(record.citations) == 100
    record = make_record(citations=["x" * 500])
    assert len(record.citations[0]) == 200


def test_new_fields_round_trip(make_record) -> None:
    record = make_record(
        principal="key_abc",
        route="canary",
        citations=["answer:card_arrival"],
        index_version="idx-1",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        degraded=None,
    )
    data = json.loads(record.model_dump_json())
    assert (data["principal"], data["route"], data["citations"], data["index_version"]) == (
        "key_abc",
        "canary",
        ["answer:card_arrival"],
        "idx-1",
    )


def test_bounded_keeps_short_text() -> None:
    assert bounded("short", 200) == "short"
    assert len(bounded("x" * 10_000, 50)) <= 50
