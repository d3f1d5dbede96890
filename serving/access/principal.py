"""Who is calling: the typed result of a verified credential, and the scopes finserve knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

INFER = "infer"  # chat completions, OIP infer, model listing and metadata
ADAPTER_OVERRIDE = "adapter:override"  # may pick a served adapter version (x-finserve-adapter)
ADMIN = "admin"  # operational endpoints: /metrics, /docs, /openapi.json
SCOPES = (INFER, ADAPTER_OVERRIDE, ADMIN)
ANY_TENANT = "*"  # a principal whose tenants hold this may act for any tenant (it still names one)

PrincipalKind = Literal["key", "jwt"]


@dataclass(frozen=True)
class Principal:
    """A verified caller. ``id`` is public (a key id, or the token's subject): it goes to logs and
    the audit line's ``principal``; the credential itself never does."""

    id: str
    kind: PrincipalKind
    tenants: tuple[str, ...]
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def may_act_for(self, tenant: str) -> bool:
        return tenant in self.tenants or ANY_TENANT in self.tenants
