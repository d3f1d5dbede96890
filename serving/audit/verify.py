"""Checking a log: the hash chain across its files, the signed checkpoints and the head file.

What each check catches, so a report can say what happened:

- the chain (``prev_hash``/``hash``, ``seq``): an edited, deleted, inserted or reordered line and a
  deleted file in the middle;
- checkpoint MACs (needs the key): a chain recomputed from some line on, checkpoints included;
- the head file (a copy of the newest checkpoint): a truncated tail or an emptied log;
- a ``final`` checkpoint followed by lines: lines appended after the log was sealed at shutdown;
- a log that starts past line 1: allowed only from a signed checkpoint that a ``purge`` line
  accounts for (otherwise the oldest file was deleted by hand).

Without the key the chain and the head file are still checked, and the report says the
checkpoints were not verified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from finserve.contracts import StrictModel

from .chain import GENESIS_HASH, HASH_KEY, PREV_KEY, check_line
from .checkpoint import CHECKPOINT, KIND, PURGE, mac_ok
from .layout import all_files, head_file

SEQ_KEY = "seq"


class VerifyReport(StrictModel):
    """The outcome of checking a log."""

    ok: bool = Field(description="True when every check passed.")
    lines: int = Field(ge=0, description="Lines checked (up to and including the first bad one).")
    files: int = Field(0, ge=0, description="Files of the log found (rotated ones and the active one).")
    first_bad_line: int | None = Field(
        None, ge=1, description="Number (seq) of the first broken or missing line."
    )
    bad_file: str | None = Field(None, description="File holding the first bad line, if it is in one.")
    bad_file_line: int | None = Field(
        None, ge=1, description="1-based line of the first bad line within bad_file."
    )
    reason: str | None = Field(None, description="Why that line is bad.")
    head_hash: str = Field(
        description="Hash of the last intact line (64 zeros for an empty log); anchor it elsewhere."
    )
    starts_at: int = Field(1, ge=1, description="Number of the log's first line (past 1 after a purge).")
    checkpoints_verified: bool = Field(
        False, description="True when a key was given and checkpoint MACs checked."
    )
    checkpoints: int = Field(
        0, ge=0, description="Checkpoints passed (signature checked when a key was given)."
    )
    last_good_checkpoint: int | None = Field(
        None, description="Number of the last checkpoint line that passed."
    )
    unsigned_tail: int = Field(0, ge=0, description="Lines after the last checkpoint (a live log has some).")
    notes: list[str] = Field(default_factory=list, description="What the check could not cover.")


class _Bad(Exception):
    def __init__(
        self, reason: str, line: int, file: Path | None = None, file_line: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.line, self.file, self.file_line = reason, line, file, file_line


class _State:
    def __init__(self) -> None:
        self.prev = GENESIS_HASH
        self.expected = 1
        self.started = False
        self.starts_at = 1
        self.checkpoints = 0
        self.last_checkpoint: int | None = None
        self.final = False  # the last checkpoint seen was written at shutdown
        self.unsigned = 0
        self.lines = 0
        self.macs: dict[int, str] = {}  # checkpoint seq -> mac, to match the head file
        self.purged_to: set[int] = set()  # first_kept_line of every purge line


def verify_chain(path: str | Path, key: bytes | None = None) -> VerifyReport:
    """Check every line of the log whose active file is `path` (with its rotated files); stops at the
    first bad line. `key`: the checkpoint key, to check signatures."""
    path = Path(path)
    files = all_files(path)
    state = _State()
    notes = (
        []
        if key
        else [
            "checkpoint signatures not verified (no key given): a chain recomputed by someone "
            "who can write the files would pass"
        ]
    )
    if not files:
        if head_file(path).exists():
            return _report(
                state,
                files,
                notes,
                key,
                _Bad("the log's files are gone but its head file remains (the log was deleted)", 1),
            )
        return VerifyReport(
            ok=False, lines=0, reason=f"{path} does not exist", head_hash=GENESIS_HASH, notes=notes
        )
    try:
        for index, file in enumerate(files):
            _check_file(file, index == 0, state, key)
        _check_end(path, state, key, notes)
    except _Bad as bad:
        return _report(state, files, notes, key, bad)
    return _report(state, files, notes, key, None)


def _report(
    state: _State, files: list[Path], notes: list[str], key: bytes | None, bad: _Bad | None
) -> VerifyReport:
    return VerifyReport(
        ok=bad is None,
        lines=state.lines,
        files=len(files),
        first_bad_line=bad.line if bad else None,
        bad_file=bad.file.name if bad and bad.file else None,
        bad_file_line=bad.file_line if bad else None,
        reason=bad.reason if bad else None,
        head_hash=state.prev,
        starts_at=state.starts_at,
        checkpoints_verified=key is not None,
        checkpoints=state.checkpoints,
        last_good_checkpoint=state.last_checkpoint,
        unsigned_tail=state.unsigned,
        notes=notes,
    )


def _check_file(file: Path, first_file: bool, state: _State, key: bytes | None) -> None:
    with open(file, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            state.lines += 1

            def bad(reason: str, line: int = state.expected) -> _Bad:
                return _Bad(reason, line, file, number)  # noqa: B023 - used before the loop moves on

            if not raw.endswith(b"\n"):
                raise bad("incomplete line (no newline: a write was cut short)")
            try:
                text = raw.decode("utf-8")
                data = json.loads(text)
            except UnicodeDecodeError:
                raise bad("not UTF-8") from None
            except json.JSONDecodeError as exc:
                raise bad(f"not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise bad("not a JSON object")
            if not state.started:
                _start(data, first_file, state, key, bad)
            digest, reason = check_line(text, state.prev)
            if digest is None:
                raise bad(reason or "broken line")
            if data.get(SEQ_KEY) != state.expected:
                raise bad(
                    f"line number {data.get(SEQ_KEY)!r} where {state.expected} was expected "
                    "(lines were removed or inserted)"
                )
            kind = data.get(KIND)
            if number == 1 and kind != CHECKPOINT:
                raise bad("a file must open with a checkpoint (files were joined or the first line removed)")
            if kind == CHECKPOINT:
                _checkpoint(data, state, key, bad)
            else:
                state.unsigned += 1
                if state.final and key is not None:
                    raise bad(
                        "a line follows the final checkpoint written at shutdown (it was appended afterwards)"
                    )
            if kind == PURGE and isinstance(data.get("first_kept_line"), int):
                state.purged_to.add(data["first_kept_line"])
            state.prev = digest
            state.expected += 1


def _start(data: dict[str, Any], first_file: bool, state: _State, key: bytes | None, bad: Any) -> None:
    """The log's first line: line 1 after the genesis hash, or (after a purge) a signed checkpoint."""
    state.started = True
    seq, prev = data.get(SEQ_KEY), data.get(PREV_KEY)
    if seq == 1 and prev == GENESIS_HASH:
        return
    if not (isinstance(seq, int) and seq > 1 and isinstance(prev, str) and data.get(KIND) == CHECKPOINT):
        raise bad("the log does not start at line 1 after the genesis hash, nor at a checkpoint", 1)
    if key is not None and not mac_ok(key, data):
        raise bad("the log starts at a checkpoint whose signature does not verify", seq)
    state.prev, state.expected, state.starts_at = prev, seq, seq


def _checkpoint(data: dict[str, Any], state: _State, key: bytes | None, bad: Any) -> None:
    if data.get("lines") != state.expected - 1 or data.get("head") != state.prev:
        raise bad("checkpoint does not describe the lines before it (the chain was rewritten)")
    if key is not None and not mac_ok(key, data):
        raise bad(
            "checkpoint signature does not verify: the lines before it were rewritten and the chain "
            "recomputed (or another key signed it)"
        )
    state.checkpoints += 1
    state.last_checkpoint = state.expected
    state.final = data.get("final") is True
    state.unsigned = 0
    state.macs[state.expected] = str(data.get("mac"))


def _check_end(path: Path, state: _State, key: bytes | None, notes: list[str]) -> None:
    last = state.expected - 1
    if state.starts_at > 1 and state.starts_at not in state.purged_to:
        raise _Bad(
            f"lines 1 to {state.starts_at - 1} are missing and no purge line accounts for them "
            "(a rotated file was deleted)",
            1,
        )
    if state.starts_at > 1 and key is None:
        notes.append(
            f"the log starts at line {state.starts_at} (purged); its opening checkpoint is not verified"
        )
    head = _read_head(path)
    if head is None:
        if key is not None and last > 0:
            raise _Bad(
                "the head file (the newest checkpoint's copy) is missing: a truncated tail would not show",
                last + 1,
            )
        notes.append("no head file: a truncated tail would not show")
        return
    seq = head.get(SEQ_KEY)
    if not isinstance(seq, int) or head.get(KIND) != CHECKPOINT:
        raise _Bad("the head file does not hold a checkpoint", last + 1)
    if key is not None and not mac_ok(key, head):
        raise _Bad("the head file's signature does not verify", last + 1)
    if seq > last:
        raise _Bad(
            f"the log ends at line {last} but its head file records a checkpoint at line {seq}: "
            "the tail was truncated",
            last + 1,
        )
    if seq >= state.starts_at and state.macs.get(seq) != head.get("mac"):
        raise _Bad(f"line {seq} is not the checkpoint the head file records (the chain was rewritten)", seq)


def _read_head(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(head_file(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["HASH_KEY", "VerifyReport", "verify_chain"]
