"""The OTEL_* switch and the JSON log line shared by serving and the operator."""

from __future__ import annotations

import json
import logging

import pytest

from finserve.contracts.telemetry import (
    JsonFormatter,
    bind_request_fields,
    reset_request_fields,
    tracing_requested,
)


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),  # no endpoint: nowhere to send spans
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ],
)
def test_tracing_is_on_only_with_somewhere_to_send_spans(env: dict[str, str], on: bool) -> None:
    assert tracing_requested(env) is on


def test_a_json_line_carries_the_bound_request_and_the_callers_extras() -> None:
    record = logging.LogRecord(
        "finserve.x", logging.WARNING, __file__, 1, "slow stage %s", ("retrieval",), None
    )
    record.stage_ms = 12.5
    token = bind_request_fields(lambda: {"request_id": "r1", "tenant": "acme", "adapter_version": None})
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        reset_request_fields(token)
    assert line["message"] == "slow stage retrieval" and line["level"] == "WARNING"
    assert (line["request_id"], line["tenant"], line["stage_ms"]) == ("r1", "acme", 12.5)
    assert "adapter_version" not in line  # empty fields are left out
    assert "request_id" not in json.loads(JsonFormatter().format(record))  # nothing bound: no request fields
