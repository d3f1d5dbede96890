"""One audit line's content: the request record, with every client-supplied text made storable.

A record must never be lost because a client sent something odd: over-long identifiers are cut to
their limit (with a marker saying how much was cut) and lone UTF-16 surrogates, which no UTF-8 file
can hold, are written as ``\\udXXX`` escapes. Both happen before validation, so a record that would
otherwise fail its own schema is still written, bounded and escaped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from finserve.contracts import AdapterRef, StrictModel

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+", re.MULTILINE)

# Field -> the most characters it keeps. input/output are bounded by the request body limit upstream.
LIMITS: dict[str, int] = {
    "request_id": 200,
    "tenant": 200,
    "model": 200,
    "principal": 200,
    "intent": 200,
    "index_version": 200,
    "trace_id": 64,
    "degraded": 200,
    "provider": 200,
    "error": 2000,
}
MAX_CITATIONS = 100
CITATION_LIMIT = 200
_TEXT_FIELDS = ("input", "output")


def storable(text: str) -> str:
    """`text` with lone surrogates escaped (``\\ud800``), so it always encodes as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bounded(text: str, limit: int) -> str:
    """`text` made storable and cut to `limit` characters, ending in a marker of what was cut."""
    text = storable(text)
    if len(text) <= limit:
        return text
    # The marker is sized for the worst case, so text and marker together stay within the limit.
    keep = max(0, limit - len(f"...[{len(text)} chars cut]"))
    return text[:keep] + f"...[{len(text) - keep} chars cut]"


class AuditRecord(StrictModel):
    """One request's outcome. Text fields hold masked text only.

    ``principal`` is the verified caller (``key:<id>``, ``jwt:<subject>``, ``legacy-key``; None while auth
    is off or when the credential did not verify); ``trace_id`` stays None until tracing is wired in;
    ``degraded`` names the fallback that answered (e.g. a curated answer) once there is one.
    """

    time: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When the request finished (UTC)."
    )
    request_id: str = Field(min_length=1, max_length=200, description="The gateway's request id.")
    principal: str | None = Field(
        None,
        max_length=200,
        description="Who called: key:<key id>, jwt:<subject> or legacy-key; None while "
        "auth is off or the credential did not verify.",
    )
    tenant: str = Field(
        min_length=1,
        max_length=200,
        description="Tenant the request ran as ('-': refused before one was established).",
    )
    model: str = Field(min_length=1, max_length=200, description="Model name the client asked for.")
    adapter: str | None = Field(
        None, description="Adapter that served it, NAME@VERSION; None if none was picked."
    )
    route: str | None = Field(
        None,
        pattern=r"^(stable|canary|override|shadow)$",
        description="How the adapter was chosen: stable, canary, override (x-finserve-adapter) or shadow "
        "(a mirrored request whose answer was compared, never returned); None if no route was picked.",
    )
    intent: str | None = Field(None, max_length=200, description="Predicted intent label, if any.")
    citations: list[str] = Field(
        default_factory=list,
        max_length=MAX_CITATIONS,
        description="Ids of the retrieved documents the answer was built on, best first.",
    )
    index_version: str | None = Field(
        None, max_length=200, description="Content hash of the knowledge index that answered retrieval."
    )
    trace_id: str | None = Field(
        None, max_length=64, description="OpenTelemetry trace id (32 hex digits) when tracing is on."
    )
    degraded: str | None = Field(
        None, max_length=200, description="Which fallback answered instead of the model, if one did."
    )
    provider: str | None = Field(
        None,
        max_length=200,
        description="Generator provider that answered (failover pools); None: one engine.",
    )
    held_back: list[str] = Field(
        default_factory=list,
        max_length=MAX_CITATIONS,
        description="Ids of retrieved documents kept out of the prompt because the context guard found PII.",
    )
    input: str = Field(description="The user input, masked.")
    output: str | None = Field(
        None, description="The answer (or the part of it sent), masked; None when none."
    )
    pii: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Stage (input|context|output|audit) -> entity type -> count."
    )
    status: int = Field(ge=100, le=599, description="HTTP status code returned (499: the client went away).")
    error: str | None = Field(
        None, max_length=2000, description="Domain error code/message; never a traceback."
    )
    latency_ms: float = Field(ge=0.0, description="End-to-end latency in milliseconds.")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Client values (model, tenant, request id, text) are bounded and escaped, never refused:
        # an audit line that fails its own schema would be a request with no line at all.
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, limit in LIMITS.items():
            if isinstance(out.get(name), str):
                out[name] = bounded(out[name], limit)
        for name in _TEXT_FIELDS:
            if isinstance(out.get(name), str):
                out[name] = storable(out[name])
        cites = out.get("citations")
        if isinstance(cites, list):
            out["citations"] = [
                bounded(c, CITATION_LIMIT) if isinstance(c, str) else c for c in cites[:MAX_CITATIONS]
            ]
        return out

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
