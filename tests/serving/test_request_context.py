"""The audit line built from a request's context: every outcome gets one, a malformed context a minimal one."""

from __future__ import annotations

from finserve.serving.request_context import CLIENT_CLOSED, RequestContext, audit_record


def test_the_line_carries_what_the_pipeline_learned() -> None:
    ctx = RequestContext(request_id="r-1", tenant="acme")
    ctx.masked_input, ctx.masked_output = "my card <CREDIT_CARD>", "Your card is on its way."
    ctx.pii = {"input": {"CREDIT_CARD": 1}}
    ctx.degraded, ctx.degraded_cause = "fallback", "generator_unavailable"
    record = audit_record(ctx, 200, None, 12.3456)
    assert (record.request_id, record.tenant, record.status, record.latency_ms) == (
        "r-1",
        "acme",
        200,
        12.346,
    )
    assert record.input == "my card <CREDIT_CARD>" and record.pii == {"input": {"CREDIT_CARD": 1}}
    assert record.error == "generator_unavailable"  # a degraded answer says why, though it is a 200
    assert audit_record(ctx, CLIENT_CLOSED, "cancelled", 1.0).error == "cancelled"


def test_a_context_that_fails_the_schema_still_leaves_a_minimal_line() -> None:
    ctx = RequestContext(request_id="r-2")
    ctx.pii = {"input": {"CREDIT_CARD": "many"}}  # not a count
    record = audit_record(ctx, 200, None, -1.0)
    assert record.request_id == "r-2" and record.error == "audit_record_invalid:pii"
    assert record.latency_ms == 0.0 and record.pii == {}
