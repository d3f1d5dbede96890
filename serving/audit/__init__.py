"""The tamper-evident audit log: hash-chained JSON lines of masked request outcomes, with signed
checkpoints, rotation and retention."""

from .chain import GENESIS_HASH
from .checkpoint import CheckpointKeyError, create_key, read_key
from .log import (
    AuditConfig,
    AuditError,
    AuditLog,
    AuditLogCorrupt,
    AuditRefused,
    AuditWriteFailed,
    FsyncPolicy,
    OnPII,
    PurgeReport,
    read_records,
)
from .record import AuditRecord
from .verify import VerifyReport, verify_chain

__all__ = [
    "GENESIS_HASH",
    "AuditConfig",
    "AuditError",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditRecord",
    "AuditRefused",
    "AuditWriteFailed",
    "CheckpointKeyError",
    "FsyncPolicy",
    "OnPII",
    "PurgeReport",
    "VerifyReport",
    "create_key",
    "read_key",
    "read_records",
    "verify_chain",
]
