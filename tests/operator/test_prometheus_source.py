"""The Prometheus adapter against a fake Prometheus HTTP API (an aiohttp server on a local port):
numbers, no data, NaN, too many series, query errors and an unreachable server."""

from __future__ import annotations

import socket

import pytest

from finserve.operator.adapters.prometheus import PrometheusSource, parse_result


def vector(*values: str) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)],
        },
    }


@pytest.mark.parametrize(
    ("payload", "value", "error"),
    [
        (vector("0.25"), 0.25, None),
        (vector(), None, None),
        (vector("NaN"), None, None),
        (vector("+Inf"), float("inf"), None),
        (vector("1", "2"), None, "returned 2 series"),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}, 3.0, None),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            None,
            "unsupported result type",
        ),
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, None, "bad_data: parse error"),
    ],
    ids=["number", "empty", "nan is no data", "infinity", "many series", "scalar", "matrix", "query error"],
)
def test_parse_result(payload, value, error):
    reading = parse_result(payload)
    assert reading.value == value
    assert (reading.error is None) == (error is None)
    if error:
        assert error in reading.error


async def test_queries_a_server(fake_prometheus):
    prom, url = fake_prometheus
    prom.set("finserve_requests_total", 42.0)
    source = PrometheusSource(url)
    try:
        reading = await source.query("requests", 'sum(increase(finserve_requests_total{model="m"}[60s]))')
        empty = await source.query("other", "up")
        prom.down = True
        down = await source.query("requests", "finserve_requests_total")
    finally:
        await source.aclose()
    assert reading.value == 42.0 and reading.error is None
    assert prom.queries[0] == 'sum(increase(finserve_requests_total{model="m"}[60s]))'
    assert empty.value is None and empty.error is None
    assert down.error == "unavailable: storage is down"


async def test_unreachable_server_is_an_error_reading():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = PrometheusSource(f"http://127.0.0.1:{port}", timeout=2)
    try:
        reading = await source.query("requests", "up")
    finally:
        await source.aclose()
    assert reading.value is None
    assert reading.error is not None and "unreachable" in reading.error
