"""The hash chain of the audit log: pure functions over JSON-ready dicts, no file I/O.

Each line is the record's JSON plus ``prev_hash`` and ``hash``. ``hash`` is SHA-256 over the
canonical JSON (sorted keys, no spaces, UTF-8) of everything on the line except ``hash`` itself,
so it covers the record and the previous line's hash: editing, removing or reordering any line
breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS_HASH = "0" * 64
HASH_KEY = "hash"
PREV_KEY = "prev_hash"


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def line_hash(record: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 hex over the record with ``prev_hash`` added."""
    if HASH_KEY in record or PREV_KEY in record:
        raise ValueError(f"a record must not carry {HASH_KEY!r} or {PREV_KEY!r} itself")
    return hashlib.sha256(canonical({**record, PREV_KEY: prev_hash})).hexdigest()


def chain_line(record: dict[str, Any], prev_hash: str) -> tuple[str, str]:
    """(the JSON line without its newline, its hash) for `record` following `prev_hash`."""
    digest = line_hash(record, prev_hash)
    line = json.dumps(
        {**record, PREV_KEY: prev_hash, HASH_KEY: digest}, ensure_ascii=False, separators=(",", ":")
    )
    return line, digest


def check_line(line: str, expected_prev: str) -> tuple[str | None, str | None]:
    """(this line's hash, None) if it is intact and follows `expected_prev`, else (None, reason)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    stored, prev = data.pop(HASH_KEY, None), data.pop(PREV_KEY, None)
    if not isinstance(stored, str) or not isinstance(prev, str):
        return None, f"missing {HASH_KEY!r} or {PREV_KEY!r}"
    if prev != expected_prev:
        return (
            None,
            "prev_hash does not match the previous line's hash (a line was removed, inserted or reordered)",
        )
    if line_hash(data, prev) != stored:
        return None, "hash does not match the line's content (the line was edited)"
    return stored, None
