"""Domain errors and the one place that maps them to HTTP and gRPC status codes.

Stages raise these (or the contracts' registry errors); only the gateway turns them into responses.
Messages are written for the client and never carry request content (it may hold PII).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass

import grpc

from finserve.contracts.registry import AdapterCorrupt, AdapterNotFound

from .inference.errors import (
    AdapterIncompatible,
    EngineNotReady,
    EngineOverloaded,
    PromptTooLong,
    ProvidersUnavailable,
    ProviderUnavailable,
)
from .retrieval.errors import VectorStoreUnavailable

log = logging.getLogger(__name__)


class FinserveError(Exception):
    """Base of every error the gateway knows how to answer."""

    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


class InvalidRequest(FinserveError):
    code = "invalid_request"


def invalid_field(field: str, why: str) -> InvalidRequest:
    """A 400 naming ``field`` ("<field>: <why>"); ``why`` must not quote the client's value."""
    return InvalidRequest(f"{field}: {why}", param=field)


class Unauthorized(FinserveError):
    """No credential, or one that does not verify (401, with a WWW-Authenticate challenge)."""

    code = "unauthorized"

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        # RFC 6750: a presented but bad token says error="invalid_token"; a missing one says nothing more.
        self.challenge = 'Bearer realm="finserve"' + (', error="invalid_token"' if invalid_token else "")


class Forbidden(FinserveError):
    """A verified principal without the scope or tenant the request needs (403)."""

    code = "forbidden"


class PayloadTooLarge(FinserveError):
    code = "payload_too_large"


class ModelNotFound(FinserveError):
    code = "model_not_found"


class PIIBlocked(FinserveError):
    """The guard's policy says ``block`` for an entity type found in the request."""

    code = "pii_blocked"

    def __init__(self, entity_types: list[str]) -> None:
        self.entity_types = sorted(entity_types)
        super().__init__(
            "request blocked by the PII policy: it contains " + ", ".join(self.entity_types),
            param="messages",
        )


class BackendUnavailable(FinserveError):
    """A dependency (vector store, generator) is down: the client should retry later."""

    code = "backend_unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)


class NotReady(BackendUnavailable):
    code = "not_ready"


class AuditUnavailable(BackendUnavailable):
    """The request's audit line could not be written, so it gets no answer (write-ahead)."""

    code = "audit_unavailable"

    def __init__(self) -> None:
        super().__init__("the audit log cannot be written; the request was not answered, retry later")


class GeneratorUnavailable(BackendUnavailable):
    """The Generator deployment has no replica that can answer (its circuit breaker is open): refused at once
    instead of queued, so the fallback answers without waiting for a replacement replica."""

    code = "generator_unavailable"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("no generator replica is available; retry later", retry_after=retry_after)


class Overloaded(BackendUnavailable):
    """Shed by admission control (the generator's queue is full): retry later. A distinct type so a fallback
    answer may stand in for it."""

    code = "overloaded"


class RateLimited(FinserveError):
    """A rate limit of the caller or its tenant is used up; ``headers`` are the x-ratelimit-* ones."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers or {}


class GenerationFailed(FinserveError):
    code = "generation_failed"


class DeadlineExceeded(FinserveError):
    """A stage ran past its timeout or the request's deadline (x-finserve-deadline-ms) and no fallback answered."""

    code = "deadline_exceeded"

    def __init__(self, stage: str) -> None:
        super().__init__(f"the request ran out of time ({stage}); retry, or allow more time", retry_after=1)
        self.stage = stage


# The gRPC code for each HTTP status, so both transports say the same thing about one error.
_GRPC: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,  # what gRPC itself answers to an oversized message
    # The request is well formed but the PII policy refuses it: distinct from a malformed one, as 422 is.
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass(frozen=True)
class ErrorMapping:
    status: int
    code: str
    message: str
    param: str | None = None
    retry_after: int | None = None
    www_authenticate: str | None = None  # the 401 challenge (HTTP header WWW-Authenticate)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _GRPC.get(self.status, grpc.StatusCode.INTERNAL)


_STATUS: dict[type[Exception], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    ModelNotFound: 404,
    AdapterNotFound: 404,
    PayloadTooLarge: 413,
    PIIBlocked: 422,
    RateLimited: 429,
    AdapterCorrupt: 500,
    GenerationFailed: 500,
    DeadlineExceeded: 504,
    BackendUnavailable: 503,
    VectorStoreUnavailable: 503,
    PromptTooLong: 400,
    AdapterIncompatible: 500,
    EngineNotReady: 503,
    EngineOverloaded: 503,
    ProviderUnavailable: 503,
    ProvidersUnavailable: 503,
}


def _ray_backpressure(exc: BaseException) -> bool:
    """Ray Serve's BackPressureError (a deployment's max_queued_requests reached), checked without importing
    ray.serve here: its import reads Ray's environment once, which `finserve up` must set first."""
    module = sys.modules.get("ray.serve.exceptions")
    cls = getattr(module, "BackPressureError", None) if module else None
    return cls is not None and isinstance(exc, cls)


def map_error(exc: BaseException) -> ErrorMapping:
    """Status, code and client-safe message for any exception (unknown ones become a bare 500)."""
    if _ray_backpressure(exc):
        wait = getattr(exc, "retry_after_s", None) or 2
        return ErrorMapping(
            503,
            "overloaded",
            "the generator is at capacity; retry later",
            retry_after=max(1, math.ceil(wait)),
        )
    # Errors raised in another Ray Serve replica arrive wrapped; the cause is what we raised.
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(exc, FinserveError):
        exc = cause
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is None:
            continue
        if isinstance(exc, FinserveError):
            return ErrorMapping(
                status, exc.code, exc.message, exc.param, exc.retry_after, getattr(exc, "challenge", None)
            )
        # Registry and engine messages name files and folders (and the adapter the client asked for):
        # the client gets a fixed message; the server log keeps the detail.
        if isinstance(exc, AdapterNotFound):
            return ErrorMapping(status, "adapter_not_found", "the adapter is not in the registry", "model")
        if isinstance(exc, AdapterCorrupt):
            log.error("adapter corrupt: %s", exc)
            return ErrorMapping(
                status, "adapter_corrupt", "the adapter failed verification; see the server log"
            )
        if isinstance(exc, PromptTooLong):
            return ErrorMapping(status, "prompt_too_long", str(exc), "messages")
        if isinstance(exc, AdapterIncompatible):
            log.error("adapter incompatible: %s", exc)
            return ErrorMapping(
                status,
                "adapter_incompatible",
                "the adapter does not fit the served base model; see the server log",
            )
        if isinstance(exc, EngineOverloaded):
            return ErrorMapping(
                status,
                "overloaded",
                "the generator is at capacity; retry later",
                retry_after=max(1, math.ceil(getattr(exc, "retry_after_s", 1))),
            )
        if isinstance(exc, ProviderUnavailable | ProvidersUnavailable):
            # The upstream's own message may quote the prompt back: the client gets a fixed one.
            log.warning("generator providers: %s", exc)
            return ErrorMapping(
                status,
                "backend_unavailable",
                "the generator is unavailable; retry later",
                retry_after=max(1, math.ceil(getattr(exc, "retry_after_s", 5))),
            )
        if isinstance(exc, EngineNotReady):
            return ErrorMapping(
                status, "not_ready", "the generator is still loading; retry later", retry_after=5
            )
        if isinstance(exc, VectorStoreUnavailable):
            return ErrorMapping(
                status,
                "backend_unavailable",
                "the knowledge base is unavailable; retry later",
                retry_after=max(1, math.ceil(exc.retry_after_s)),
            )
    # Unknown errors: no message detail (it could echo input), the request id identifies it in logs.
    return ErrorMapping(500, "internal_error", "internal error; see the request id in the server log")
