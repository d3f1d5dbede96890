"""Domain errors map to status codes in one place."""

from __future__ import annotations

import grpc
import pytest

from finserve.contracts import AdapterCorrupt, AdapterNotFound
from finserve.serving.errors import (
    AuditUnavailable,
    BackendUnavailable,
    Forbidden,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    PIIBlocked,
    Unauthorized,
    map_error,
)

G = grpc.StatusCode


@pytest.mark.parametrize(
    ("exc", "status", "code", "grpc_code"),
    [
        (
            InvalidRequest("messages.0.role: bad", param="messages.0.role"),
            400,
            "invalid_request",
            G.INVALID_ARGUMENT,
        ),
        (Unauthorized("no key"), 401, "unauthorized", G.UNAUTHENTICATED),
        (Forbidden("key:abc lacks the scope 'admin'"), 403, "forbidden", G.PERMISSION_DENIED),
        (ModelNotFound("no such model"), 404, "model_not_found", G.NOT_FOUND),
        (AdapterNotFound("banking@9.0.0 missing"), 404, "adapter_not_found", G.NOT_FOUND),
        (PayloadTooLarge("too big"), 413, "payload_too_large", G.RESOURCE_EXHAUSTED),
        (PIIBlocked(["US_SSN", "CREDIT_CARD"]), 422, "pii_blocked", G.FAILED_PRECONDITION),
        (AdapterCorrupt("bad checksum"), 500, "adapter_corrupt", G.INTERNAL),
        (BackendUnavailable("milvus down"), 503, "backend_unavailable", G.UNAVAILABLE),
        (AuditUnavailable(), 503, "audit_unavailable", G.UNAVAILABLE),
        (RuntimeError("secret 4111 1111 1111 1111"), 500, "internal_error", G.INTERNAL),
    ],
)
def test_mapping(exc, status, code, grpc_code):
    m = map_error(exc)
    assert (m.status, m.code, m.grpc_code) == (status, code, grpc_code)


def test_unauthorized_carries_its_bearer_challenge():
    assert map_error(Unauthorized("no credential")).www_authenticate == 'Bearer realm="finserve"'
    assert map_error(Unauthorized("bad", invalid_token=True)).www_authenticate == (
        'Bearer realm="finserve", error="invalid_token"'
    )
    assert map_error(Forbidden("no scope")).www_authenticate is None


def test_unknown_errors_do_not_echo_their_message():
    m = map_error(RuntimeError("card 4111 1111 1111 1111"))
    assert "4111" not in m.message


def test_blocked_names_the_entity_types_sorted():
    m = map_error(PIIBlocked(["US_SSN", "CREDIT_CARD"]))
    assert "CREDIT_CARD, US_SSN" in m.message


def test_retry_after_for_unavailable_backends():
    assert map_error(BackendUnavailable("down", retry_after=7)).retry_after == 7


def test_wrapped_remote_errors_map_by_their_cause():
    class Wrapped(Exception):
        def __init__(self, cause: Exception) -> None:
            super().__init__("wrapped")
            self.cause = cause

    assert map_error(Wrapped(ModelNotFound("x"))).status == 404


def test_vector_store_down_is_503_with_retry_after():
    from finserve.serving.retrieval import VectorStoreUnavailable

    m = map_error(VectorStoreUnavailable("connection refused to 10.0.0.1", retry_after_s=2.5))
    assert (m.status, m.retry_after, m.grpc_code) == (503, 3, grpc.StatusCode.UNAVAILABLE)
    assert "10.0.0.1" not in m.message


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry"),
    [
        ("PromptTooLong", 400, "prompt_too_long", None),
        ("AdapterIncompatible", 500, "adapter_incompatible", None),
        ("EngineNotReady", 503, "not_ready", 5),
    ],
)
def test_generator_errors(exc, status, code, retry):
    from finserve.serving.inference import errors

    m = map_error(getattr(errors, exc)("detail"))
    assert (m.status, m.code, m.retry_after) == (status, code, retry)
