"""The tamper-evident audit log: one hash-chained JSON line per request, whatever its outcome.

Writers in any number of threads and processes share one log: each append takes an exclusive
``flock`` on the log's lock file, reads the last line of the active file under that lock and only
then writes, so the chain never forks. Every line carries ``seq`` (its 1-based number in the whole
chain, across rotated files), ``prev_hash`` and ``hash``. Besides request records the chain holds:

- ``kind: checkpoint`` lines (see checkpoint.py): one opens every file, one follows every
  ``checkpoint_every`` lines, one closes the log at shutdown (``final``); the latest is copied to the
  head file, which is how a truncated tail shows;
- ``kind: seal`` lines: a torn last line (a write cut short, e.g. by a full disk) is cut off on start,
  on the readiness probe or on the next append, and the seal records how many bytes were removed;
- ``kind: purge`` lines: ``purge(before)`` removed whole old files (GDPR retention).

The log holds masked text only; see ``AuditLog`` for the optional re-scan.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from finserve.contracts import StrictModel

from ..paths import data_dir
from .chain import GENESIS_HASH, HASH_KEY, chain_line
from .checkpoint import CHECKPOINT, KIND, PURGE, SEAL, checkpoint_fields, load_or_create_key
from .layout import all_files, head_file, lock_file, rotated_name
from .record import AuditRecord
from .status import refusal_reason
from .verify import VerifyReport, verify_chain

log = logging.getLogger(__name__)

AUDIT_STAGE = "audit"
"""pii[] key under which the audit re-scan records what it masked (it means a guard upstream missed it)."""

SEQ_KEY = "seq"

__all__ = [
    "AUDIT_STAGE",
    "AuditConfig",
    "AuditError",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditRecord",
    "AuditRefused",
    "AuditWriteFailed",
    "FsyncPolicy",
    "OnPII",
    "PurgeReport",
    "VerifyReport",
    "read_records",
    "verify_chain",
]


def _default_path() -> Path:
    return data_dir() / "audit" / "audit.jsonl"


class FsyncPolicy(str, Enum):
    always = "always"  # fsync after every line: survives power loss, costs a disk flush per request
    never = "never"  # hand lines to the OS only: survives a process crash, not a host crash


class OnPII(str, Enum):
    mask = "mask"  # write the guard's sanitized text and count it under pii["audit"]
    refuse = "refuse"  # raise AuditRefused and write nothing


class AuditConfig(StrictModel):
    """Where the audit log lives, how hard it tries to be durable, how it is signed and rotated."""

    path: Path = Field(
        default_factory=_default_path,
        description="Active JSON-lines file (default DATA_DIR/audit/audit.jsonl).",
    )
    fsync: FsyncPolicy = Field(
        FsyncPolicy.always, description="always: fsync every line; never: leave it to the OS."
    )
    on_pii: OnPII = Field(
        OnPII.mask,
        description="When a re-scan guard is attached and finds PII: mask it, or refuse the record.",
    )
    checkpoint_key_file: Path | None = Field(
        default_factory=lambda: Path(p) if (p := os.environ.get("FINSERVE_AUDIT_KEY_FILE")) else None,
        description="File holding the checkpoint HMAC key (32+ bytes, raw or hex; the chart mounts a Secret "
        "and sets FINSERVE_AUDIT_KEY_FILE). It must exist when set. Unset: checkpoint.key beside the log, "
        "created (0600) on first use: fine on a laptop, but anyone who can read it can re-sign a rewritten log.",
    )
    checkpoint_every: int = Field(
        1000, ge=1, description="Write a signed checkpoint after every this many lines (and at shutdown)."
    )
    rotate_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="Rotate the active file once it reaches this size; 0: never by size.",
    )
    rotate_daily: bool = Field(True, description="Start a new file on the first line of each UTC day.")
    min_free_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="Readiness fails when the log's file system has less free space than this.",
    )
    refuse_below_free_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="The gateway refuses requests up front (503 audit_unavailable, before retrieval and "
        "generation) while the log's file system has less free space than this, or is read-only; more than "
        "one maximal line (the config refuses less than 4x gateway.max_body_bytes). 0: no space check up "
        "front. The append still fails closed on its own.",
    )
    status_ttl_s: float = Field(
        1.0,
        ge=0,
        description="Seconds the gateway reuses its last up-front check of the log (statvfs, writable) "
        "before asking again (0: every request asks).",
    )

    def key_path(self) -> Path:
        return self.checkpoint_key_file or self.path.with_name("checkpoint.key")


class AuditError(Exception):
    """Base of the audit log's errors."""


class AuditLogCorrupt(AuditError):
    """The log's last complete line is unreadable, so no new line can be chained to it."""


class AuditLogLegacy(AuditError):
    """The active file was written before line numbers and signed checkpoints (a hash chain only)."""


class AuditWriteFailed(AuditError):
    """The line could not be made durable (read-only file, full disk, ...): nothing was appended."""


class AuditRefused(AuditError):
    """The re-scan found PII in a record and the policy is ``refuse``."""

    def __init__(self, entity_types: list[str]) -> None:
        self.entity_types = sorted(entity_types)
        super().__init__("audit record refused: it contains unmasked " + ", ".join(self.entity_types))


class PurgeReport(StrictModel):
    removed: list[str] = Field(description="Names of the files removed, oldest first.")
    first_kept_line: int | None = Field(description="Number of the first line still in the log.")


class Scanned(Protocol):
    @property
    def text(self) -> str: ...

    def counts(self) -> dict[str, int]: ...


class TextScanner(Protocol):
    """What the re-scan hook needs: PIIGuard fits."""

    def scan(self, text: str) -> Scanned: ...


@dataclass
class _Handle:
    fd: int  # the active file; rotation replaces it


@dataclass
class _Tail:
    """What an append needs to know about the active file's end."""

    hash: str = GENESIS_HASH
    seq: int = 0
    final: bool = False  # the last line is the checkpoint written at shutdown
    torn: int = 0  # bytes after the last newline: a write that was cut short


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AuditLog:
    """Appends hash-chained records to a rotating set of JSON-lines files.

    `guard`, if given, re-scans ``input``, ``output`` and ``error`` of every record before it is
    written. The pipeline already passes masked text, so with the same policy the re-scan finds
    nothing and costs one scan per field; it is the last line of defence against a caller that
    forgets to mask. ``on_pii=mask`` keeps the record (audit completeness matters) with the
    sanitized text and the counts under ``pii["audit"]``; ``refuse`` raises AuditRefused.

    Construction loads (or, for the default path, creates) the checkpoint key and repairs a torn
    tail; a log that cannot be written then is reported by ``problem()`` rather than raised.
    """

    def __init__(
        self,
        config: AuditConfig | None = None,
        guard: TextScanner | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.config = config or AuditConfig()
        self.guard = guard
        self._clock = clock  # injected by tests of daily rotation
        self._thread_lock = threading.Lock()
        self._key = load_or_create_key(self.config.key_path(), create=self.config.checkpoint_key_file is None)
        self._failure: str | None = None
        self.problem()  # seals a torn tail left by an earlier process, if it can

    @property
    def path(self) -> Path:
        return self.config.path

    # ---- appending ----

    def append(self, record: AuditRecord) -> str:
        """Write `record` as the next line, durably (per the fsync policy); returns the line's hash.

        Raises AuditWriteFailed when the line could not be written: the file is then as it was.
        """
        record = self._screen(record)
        return self._write(record.model_dump(mode="json"))

    def close(self) -> None:
        """Seal the log for shutdown: a final signed checkpoint, unless the last line is one already."""
        try:
            with self._locked() as handle:
                tail = self._tail(handle)
                if tail.seq and not tail.final:
                    self._commit(handle, tail, None, final=True)
        except (OSError, AuditError) as exc:
            log.error("audit log not sealed at shutdown: %s", exc)

    def _write(self, data: dict[str, Any]) -> str:
        try:
            with self._locked() as handle:
                digest = self._commit(handle, self._tail(handle), data)
        except OSError as exc:
            self._failure = f"cannot write the audit log: {exc.strerror or exc}"
            raise AuditWriteFailed(self._failure) from None
        except AuditError as exc:
            self._failure = str(exc)
            raise
        self._failure = None
        return digest

    def _tail(self, handle: _Handle) -> _Tail:
        """The active file's end. A file an older finserve wrote (hash chain, no line numbers) cannot be
        continued with signed checkpoints: it is renamed aside whole (its own hashes still check it line by
        line) and a new chain starts, instead of refusing every request after an upgrade."""
        try:
            return _read_tail(handle.fd)
        except AuditLogLegacy:
            os.fsync(handle.fd)
            target = self.path.with_name(
                f"{self.path.stem}.legacy-{self._clock():%Y%m%dT%H%M%SZ}{self.path.suffix}"
            )
            os.rename(self.path, target)
            os.close(handle.fd)
            handle.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            _fsync_dir(self.path.parent)
            log.warning(
                "audit log from an older finserve moved aside to %s; a new signed chain starts", target.name
            )
            return _Tail()

    def _commit(self, handle: _Handle, tail: _Tail, data: dict[str, Any] | None, final: bool = False) -> str:
        """Under the lock: seal a torn tail, rotate, open or resume as needed, then write `data`
        (and the checkpoints it is due) in one write. Returns the hash of `data`'s line."""
        now = self._clock()
        seal = self._cut_torn(handle.fd, tail) if tail.torn else None
        if seal is not None:
            tail = _read_tail(handle.fd)
        lines: list[str] = []
        last_checkpoint: str | None = None
        record_hash = tail.hash

        def add(fields: dict[str, Any]) -> str:
            nonlocal tail
            line, digest = chain_line({**fields, SEQ_KEY: tail.seq + 1}, tail.hash)
            lines.append(line)
            tail = _Tail(hash=digest, seq=tail.seq + 1)
            return line

        def checkpoint(is_final: bool = False) -> None:
            nonlocal last_checkpoint
            last_checkpoint = add(checkpoint_fields(self._key, tail.seq, tail.hash, is_final, _iso(now)))

        size = os.fstat(handle.fd).st_size
        if size and data is not None and KIND not in data and self._rotation_due(handle.fd, size, now):
            self._rotate(handle)
            size = 0
        if size == 0:
            checkpoint()  # every file opens with a signed checkpoint: where a purged log verifies from
        elif tail.final and not final:
            checkpoint()  # a new writer resumes a log sealed at shutdown ("appended after sealing" shows)
        if seal is not None:
            add(seal)
        if data is not None:
            add(data)
            record_hash = tail.hash
            if tail.seq % self.config.checkpoint_every == 0:
                checkpoint()
        if final:
            checkpoint(is_final=True)
        self._append_lines(handle.fd, size, lines)
        if last_checkpoint is not None:
            self._write_head(last_checkpoint)
        return record_hash

    def _cut_torn(self, fd: int, tail: _Tail) -> dict[str, Any]:
        """Cut off a torn last line; returns the seal line that records what was removed."""
        size = os.fstat(fd).st_size
        fragment = os.pread(fd, tail.torn, size - tail.torn)
        os.ftruncate(fd, size - tail.torn)
        self._fsync(fd)
        log.warning(
            "audit log: removed an incomplete last line of %d bytes (a write was cut short)", tail.torn
        )
        return {
            KIND: SEAL,
            "time": _iso(self._clock()),
            "torn_bytes": tail.torn,
            "torn_sha256": hashlib.sha256(fragment).hexdigest(),
        }

    def _rotation_due(self, fd: int, size: int, now: datetime) -> bool:
        if self.config.rotate_max_bytes and size >= self.config.rotate_max_bytes:
            return True
        if not self.config.rotate_daily:
            return False
        opened = _opened(fd)  # the day of the file's opening checkpoint, not of a record's own time
        return opened is not None and opened < now.date()

    def _rotate(self, handle: _Handle) -> None:
        """Rename the active file away (under the lock) and open a fresh one in its place."""
        os.fsync(handle.fd)
        target = rotated_name(self.path, _first_seq(self.path) or 0)
        os.rename(self.path, target)
        os.close(handle.fd)
        handle.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.path.parent)
        log.info("audit log rotated to %s", target.name)

    def _append_lines(self, fd: int, size: int, lines: list[str]) -> None:
        if not lines:
            return
        try:
            _write_all(fd, "".join(line + "\n" for line in lines).encode("utf-8"))
            self._fsync(fd)
        except OSError:
            # Take back whatever part of the lines got out, so the next append finds a clean end.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise

    def _fsync(self, fd: int) -> None:
        if self.config.fsync is FsyncPolicy.always:
            os.fsync(fd)

    def _write_head(self, line: str) -> None:
        """Copy the newest checkpoint beside the log (atomically), so cutting the log's tail shows."""
        head = head_file(self.path)
        tmp = head.with_name(head.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, (line + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, head)
        except OSError as exc:
            # The lines are written; only the copy is stale, which verify reports.
            self._failure = f"cannot update the audit head file: {exc.strerror or exc}"
            log.error("audit log: %s", self._failure)
        else:
            log.info("audit checkpoint %s", line)  # a second copy, in the process log

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Handle]:
        """The active file, open for appending, under the log's exclusive lock (threads and processes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # flock excludes other processes; the thread lock keeps this process's threads from
        # queueing on flock with separate file descriptions. The lock is a file of its own, so a
        # writer that waited while another rotated still finds the new active file.
        with self._thread_lock:
            lock_fd = os.open(lock_file(self.path), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                handle = _Handle(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600))
                try:
                    yield handle
                finally:
                    os.close(handle.fd)
            finally:
                os.close(lock_fd)  # releases the flock

    # ---- readiness ----

    def problem(self) -> str | None:
        """Why a line could not be appended now, or None: the readiness check.

        Opens the active file for writing under the lock (a read-only file or directory fails),
        seals a torn tail, and checks the free space; a failed append counts until this passes.
        """
        try:
            with self._locked() as handle:
                tail = self._tail(handle)
                if tail.torn:
                    self._commit(handle, tail, None)
            free = _free_bytes(self.path.parent)
        except OSError as exc:
            return f"cannot write the audit log: {exc.strerror or exc}"
        except AuditError as exc:
            return str(exc)
        if free < self.config.min_free_bytes:
            return f"less than {self.config.min_free_bytes} bytes free for the audit log"
        self._failure = None
        return None

    def ready(self) -> bool:
        return self.problem() is None

    def refusal(self) -> str | None:
        """Why an append would fail now, from cheap checks only (statvfs and access, no lock, no file opened):
        a read-only or unwritable log, or less free space than ``refuse_below_free_bytes``. None: go ahead."""
        folder = self.path.parent
        try:
            st = os.statvfs(folder)
        except OSError as exc:
            return f"cannot reach the audit log's folder: {exc.strerror or exc}"
        target = self.path if self.path.exists() else folder
        return refusal_reason(
            free_bytes=st.f_bavail * st.f_frsize,
            read_only=bool(st.f_flag & os.ST_RDONLY),
            writable=os.access(target, os.W_OK),
            margin_bytes=self.config.refuse_below_free_bytes,
        )

    # ---- retention ----

    def purge(self, before: datetime) -> PurgeReport:
        """Remove whole rotated files whose last line is older than `before`, oldest first.

        The active file is never removed, nor any file after one that is kept, so what stays is one
        unbroken chain; it opens with a signed checkpoint, and a chained ``purge`` line records what went.
        """
        if before.tzinfo is None:
            raise ValueError("before must be timezone-aware")
        removed: list[str] = []
        with self._locked() as handle:
            files = all_files(self.path)
            for path, successor in zip(
                files, files[1:], strict=False
            ):  # never the active file, which has none
                closed = _opened_at(successor)  # a file's last line precedes its successor's opening
                if closed is None or closed >= before:
                    break
                path.unlink()
                removed.append(path.name)
            if removed:
                _fsync_dir(self.path.parent)
                files = all_files(self.path)
                first = _first_seq(files[0]) if files else None
                record = {
                    KIND: PURGE,
                    "time": _iso(self._clock()),
                    "before": _iso(before),
                    "files": removed,
                    "first_kept_line": first,
                }
                self._commit(handle, self._tail(handle), record)
            else:
                first = None
        return PurgeReport(removed=removed, first_kept_line=first)

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _read_tail(fd: int, block: int = 8192) -> _Tail:
    """The last complete line's hash, number and kind, and how many torn bytes follow it."""
    size = os.fstat(fd).st_size
    if size == 0:
        return _Tail()
    tail = b""
    pos = size
    while pos > 0:
        step = min(block, pos)
        pos -= step
        tail = os.pread(fd, step, pos) + tail
        if tail.count(b"\n") >= 2 or pos == 0:
            break
    torn = len(tail) - (tail.rfind(b"\n") + 1)
    body = tail[: len(tail) - torn]
    if not body:  # the loop read back to the start: the file holds one torn line and nothing else
        return _Tail(torn=torn)
    last = body[:-1].rsplit(b"\n", 1)[-1]
    try:
        data = json.loads(last)
        if isinstance(data, dict) and HASH_KEY in data and SEQ_KEY not in data and KIND not in data:
            raise AuditLogLegacy("the active audit file predates line numbers and signed checkpoints")
        value, seq = data[HASH_KEY], data[SEQ_KEY]
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditLogCorrupt(
            f"the audit log's last line carries no readable hash ({exc.__class__.__name__}): "
            "check it with `finserve audit verify`"
        ) from exc
    if not isinstance(value, str) or not isinstance(seq, int):
        raise AuditLogCorrupt("the audit log's last line carries no readable hash")
    final = data.get(KIND) == CHECKPOINT and data.get("final") is True
    return _Tail(hash=value, seq=seq, final=final, torn=torn)


def _opened(fd: int) -> date | None:
    """UTC day of the active file's first line (its opening checkpoint)."""
    first = os.pread(fd, 4096, 0).split(b"\n", 1)[0]
    try:
        return datetime.fromisoformat(json.loads(first)["time"]).astimezone(UTC).date()
    except (ValueError, KeyError, TypeError):
        return None


def _first_seq(path: Path) -> int | None:
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        return int(json.loads(first)[SEQ_KEY])
    except (ValueError, KeyError, TypeError):
        return None


def _opened_at(path: Path) -> datetime | None:
    """When the file's opening checkpoint was written; None if unreadable."""
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        return datetime.fromisoformat(json.loads(first)["time"]).astimezone(UTC)
    except (ValueError, KeyError, TypeError):
        return None


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The request records of the log whose active file is `path`, oldest first (no checkpoints etc.)."""
    for file in all_files(Path(path)):
        with open(file, encoding="utf-8") as fh:
            for raw in fh:
                if raw.endswith("\n"):
                    data = json.loads(raw)
                    if KIND not in data:
                        yield data
