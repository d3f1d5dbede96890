"""The tamper-evident audit log: one hash-chained JSON line per request, whatever its outcome.

Writers in any number of threads and processes share one file: each append takes an exclusive
``flock``, reads the hash of the last line under that lock and only then writes, so the chain
never forks. The log holds masked text only; see ``AuditLog`` for the optional re-scan.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

from pydantic import Field, field_validator

from finserve.contracts import AdapterRef, StrictModel

from ..paths import data_dir
from .chain import GENESIS_HASH, HASH_KEY, chain_line, check_line

AUDIT_STAGE = "audit"
"""pii[] key under which the audit re-scan records what it masked (it means a guard upstream missed it)."""

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+", re.MULTILINE)


def _default_path() -> Path:
    return data_dir() / "audit" / "audit.jsonl"


class FsyncPolicy(str, Enum):
    always = "always"  # fsync after every line: survives power loss, costs a disk flush per request
    never = "never"  # hand lines to the OS only: survives a process crash, not a host crash


class OnPII(str, Enum):
    mask = "mask"  # write the guard's sanitized text and count it under pii["audit"]
    refuse = "refuse"  # raise AuditRefused and write nothing


class AuditConfig(StrictModel):
    """Where the audit log lives and how hard it tries to be durable."""

    path: Path = Field(
        default_factory=_default_path, description="JSON-lines file (default DATA_DIR/audit/audit.jsonl)."
    )
    fsync: FsyncPolicy = Field(
        FsyncPolicy.always, description="always: fsync every line; never: leave it to the OS."
    )
    on_pii: OnPII = Field(
        OnPII.mask,
        description="When a re-scan guard is attached and finds PII: mask it, or refuse the record.",
    )


class AuditRecord(StrictModel):
    """One request's outcome. Text fields hold masked text only."""

    time: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When the request finished (UTC)."
    )
    request_id: str = Field(min_length=1, max_length=200, description="The gateway's request id.")
    tenant: str = Field(min_length=1, max_length=200, description="Tenant the request belongs to.")
    model: str = Field(min_length=1, max_length=200, description="Model name the client asked for.")
    adapter: str | None = Field(
        None, description="Adapter that served it, NAME@VERSION; None if none was picked."
    )
    route: str | None = Field(
        None, pattern=r"^(stable|canary|override|shadow)$",
        description="How the adapter was chosen: stable, canary, override (x-finserve-adapter) or shadow "
        "(a mirrored request whose answer was compared, never returned); None if no route was picked.")
    intent: str | None = Field(None, max_length=200, description="Predicted intent label, if any.")
    input: str = Field(description="The user input, masked.")
    output: str | None = Field(None, description="The answer, masked; None when there is none.")
    pii: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Stage (input|context|output|audit) -> entity type -> count."
    )
    held_back: list[str] = Field(
        default_factory=list,
        description="Ids of retrieved documents kept out of the prompt because the context guard found PII.")
    status: int = Field(ge=100, le=599, description="HTTP status code returned.")
    error: str | None = Field(
        None, max_length=2000, description="Domain error code/message; never a traceback."
    )
    latency_ms: float = Field(ge=0.0, description="End-to-end latency in milliseconds.")

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        return v.astimezone(UTC)

    @field_validator("adapter")
    @classmethod
    def _adapter_ref(cls, v: str | None) -> str | None:
        if v is not None:
            AdapterRef.parse(v)
        return v

    @field_validator("error")
    @classmethod
    def _no_traceback(cls, v: str | None) -> str | None:
        if v is not None and _TRACEBACK.search(v):
            raise ValueError("error must be a domain error code or message, not a traceback")
        return v

    @field_validator("pii")
    @classmethod
    def _counts(cls, v: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        if any(n < 0 for counts in v.values() for n in counts.values()):
            raise ValueError("pii counts must not be negative")
        return v


class VerifyReport(StrictModel):
    """The outcome of checking a log's hash chain."""

    ok: bool = Field(description="True when every line is intact and chained.")
    lines: int = Field(ge=0, description="Lines checked (up to and including the first bad one).")
    first_bad_line: int | None = Field(None, ge=1, description="1-based number of the first broken line.")
    reason: str | None = Field(None, description="Why that line is broken.")
    head_hash: str = Field(
        description="Hash of the last intact line (64 zeros for an empty log); anchor it elsewhere."
    )


class AuditError(Exception):
    """Base of the audit log's errors."""


class AuditLogCorrupt(AuditError):
    """The log's last line is unreadable, so no new line can be chained to it."""


class AuditRefused(AuditError):
    """The re-scan found PII in a record and the policy is ``refuse``."""

    def __init__(self, entity_types: list[str]) -> None:
        self.entity_types = sorted(entity_types)
        super().__init__("audit record refused: it contains unmasked " + ", ".join(self.entity_types))


class Scanned(Protocol):
    @property
    def text(self) -> str: ...

    def counts(self) -> dict[str, int]: ...


class TextScanner(Protocol):
    """What the re-scan hook needs: PIIGuard fits."""

    def scan(self, text: str) -> Scanned: ...


class AuditLog:
    """Appends hash-chained records to one JSON-lines file.

    `guard`, if given, re-scans ``input``, ``output`` and ``error`` of every record before it is
    written. The pipeline already passes masked text, so with the same policy the re-scan finds
    nothing and costs one scan per field; it is the last line of defence against a caller that
    forgets to mask. ``on_pii=mask`` keeps the record (audit completeness matters) with the
    sanitized text and the counts under ``pii["audit"]``; ``refuse`` raises AuditRefused.
    """

    def __init__(self, config: AuditConfig | None = None, guard: TextScanner | None = None) -> None:
        self.config = config or AuditConfig()
        self.guard = guard
        self._thread_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.config.path

    def append(self, record: AuditRecord) -> str:
        """Write `record` as the next line; returns the line's hash."""
        record = self._screen(record)
        data = record.model_dump(mode="json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # flock excludes other processes; the thread lock keeps this process's threads from
        # queueing on flock with separate file descriptions.
        with self._thread_lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                line, digest = chain_line(data, _last_hash(fd))
                _write_all(fd, (line + "\n").encode("utf-8"))
                if self.config.fsync is FsyncPolicy.always:
                    os.fsync(fd)
            finally:
                os.close(fd)  # releases the flock
        return digest

    def _screen(self, record: AuditRecord) -> AuditRecord:
        if self.guard is None:
            return record
        found: dict[str, int] = {}
        updates: dict[str, str] = {}
        for field in ("input", "output", "error"):
            value = getattr(record, field)
            if not value:
                continue
            scanned = self.guard.scan(value)
            counts = scanned.counts()
            if counts:
                updates[field] = scanned.text
                for entity, n in counts.items():
                    found[entity] = found.get(entity, 0) + n
        if not found:
            return record
        if self.config.on_pii is OnPII.refuse:
            raise AuditRefused(list(found))
        pii = {**record.pii, AUDIT_STAGE: found}
        return record.model_copy(update={**updates, "pii": pii})


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _last_hash(fd: int, block: int = 8192) -> str:
    """The ``hash`` of the file's last line, read backwards from the end; GENESIS for an empty file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return GENESIS_HASH
    tail = b""
    pos = size
    while pos > 0:
        step = min(block, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        if tail.count(b"\n") >= 2 or pos == 0:
            break
    if not tail.endswith(b"\n"):
        raise AuditLogCorrupt("the last line is incomplete (a write was cut short)")
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    try:
        value = json.loads(last)[HASH_KEY]
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditLogCorrupt(f"the last line carries no readable hash ({exc.__class__.__name__})") from exc
    if not isinstance(value, str):
        raise AuditLogCorrupt("the last line's hash is not a string")
    return value


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from fh


def verify_chain(path: str | Path) -> VerifyReport:
    """Check every line of the log at `path`; stops at the first broken line."""
    path = Path(path)
    if not path.exists():
        return VerifyReport(
            ok=False, lines=0, first_bad_line=None, reason=f"{path} does not exist", head_hash=GENESIS_HASH
        )
    prev = GENESIS_HASH
    number = 0
    for number, raw in enumerate(_lines(path), start=1):
        reason: str | None
        if not raw.endswith(b"\n"):
            reason = "incomplete line (no newline: a write was cut short)"
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                reason = "not UTF-8"
            else:
                digest, reason = check_line(text, prev)
                if digest is not None:
                    prev = digest
                    continue
        return VerifyReport(ok=False, lines=number, first_bad_line=number, reason=reason, head_hash=prev)
    return VerifyReport(ok=True, lines=number, head_hash=prev)
