"""The tamper-evident audit log: hash-chained JSON lines of masked request outcomes."""

from .chain import GENESIS_HASH
from .log import (
    AuditConfig,
    AuditError,
    AuditLog,
    AuditLogCorrupt,
    AuditRecord,
    AuditRefused,
    FsyncPolicy,
    OnPII,
    VerifyReport,
    verify_chain,
)

__all__ = [
    "GENESIS_HASH",
    "AuditConfig",
    "AuditError",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditRecord",
    "AuditRefused",
    "FsyncPolicy",
    "OnPII",
    "VerifyReport",
    "verify_chain",
]
