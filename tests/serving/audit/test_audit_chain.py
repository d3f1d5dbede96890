"""The hash-chain format, checked against an independent computation (what an external verifier does)."""

from __future__ import annotations

import hashlib
import json

import pytest

from finserve.serving.audit.chain import GENESIS_HASH, chain_line, check_line, line_hash


def _independent_hash(record: dict, prev: str) -> str:
    payload = json.dumps(
        {**record, "prev_hash": prev}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def test_hash_is_sha256_over_canonical_json_with_prev_hash() -> None:
    record = {"b": 1, "a": "é <PERSON>", "n": None, "f": 1.25}
    assert line_hash(record, GENESIS_HASH) == _independent_hash(record, GENESIS_HASH)


def test_chain_line_round_trips() -> None:
    line, digest = chain_line({"x": 1}, GENESIS_HASH)
    assert json.loads(line) == {"x": 1, "prev_hash": GENESIS_HASH, "hash": digest}
    assert check_line(line, GENESIS_HASH) == (digest, None)


def test_check_line_reports_each_kind_of_damage() -> None:
    line, _ = chain_line({"x": 1}, GENESIS_HASH)
    assert check_line(line.replace('"x":1', '"x":2'), GENESIS_HASH)[1].startswith("hash does not match")
    assert check_line(line, "f" * 64)[1].startswith("prev_hash does not match")
    assert check_line("{not json", GENESIS_HASH)[1].startswith("not valid JSON")
    assert check_line("[1, 2]", GENESIS_HASH)[1] == "not a JSON object"
    assert check_line('{"x": 1}', GENESIS_HASH)[1].startswith("missing")


def test_record_may_not_smuggle_its_own_hash() -> None:
    with pytest.raises(ValueError):
        line_hash({"hash": "0" * 64}, GENESIS_HASH)
