"""The middleware Ray Serve runs before its own request-id handling, composed exactly as Ray composes
HTTP middlewares (ray.serve's _apply_middlewares: its RequestIdMiddleware innermost, ours outside it)
around a small Starlette app that records what it received. No Ray cluster is needed for this."""

from __future__ import annotations

import pytest
from ray.serve._private.http_util import _apply_middlewares
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from finserve.serving.client_fields import ClientFields
from finserve.serving.client_ids import HASH_KEY_ENV, INVALID_HEADER_MARK, pseudonym
from finserve.serving.guard.config import HASH_KEY_ENV as GUARD_HASH_KEY_ENV
from finserve.serving.ray_ingress import middlewares
from finserve.serving.serve_env import RAY_INGRESS_CALLBACK

CARD_ID = "4458-5630-7407-7526"


def echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {"request_id": request.headers.get("x-request-id"), "mark": request.headers.get(INVALID_HEADER_MARK)}
    )


@pytest.fixture
def client() -> TestClient:
    app = _apply_middlewares(Starlette(routes=[Route("/", echo, methods=["POST"])]), middlewares())
    return TestClient(app)


@pytest.mark.parametrize(
    ("sent", "seen", "mark"),
    [
        ("req-1", "req-1", None),
        (CARD_ID, pseudonym(CARD_ID), None),  # charset-valid but a card: pseudonymised, answered
        (
            "id with spaces",
            pseudonym("id with spaces"),
            "x-request-id",
        ),  # invalid: marked, the gateway says 400
    ],
)
def test_ray_sees_and_echoes_only_safe_request_ids(client, sent, seen, mark):
    resp = client.post("/", headers={"x-request-id": sent})
    assert resp.json() == {"request_id": seen, "mark": mark}
    # Ray's RequestIdMiddleware echoes what it read: the safe value, never the client's raw one.
    assert resp.headers.get_list("x-request-id") == [seen]


def test_a_response_carries_one_request_id_though_the_app_and_ray_both_set_it():
    def answer(request: Request) -> JSONResponse:  # as the gateway does: its own x-request-id on every answer
        return JSONResponse({}, headers={"x-request-id": request.headers["x-request-id"]})

    app = _apply_middlewares(Starlette(routes=[Route("/", answer, methods=["POST"])]), middlewares())
    bare = _apply_middlewares(Starlette(routes=[Route("/", answer, methods=["POST"])]), [])
    assert TestClient(bare).post("/", headers={"x-request-id": "req-3"}).headers.get_list("x-request-id") == [
        "req-3",
        "req-3",
    ]  # Ray alone: twice, read by clients as "req-3, req-3"
    resp = TestClient(app).post("/", headers={"x-request-id": "req-3"})
    assert resp.headers.get_list("x-request-id") == ["req-3"] and resp.headers["x-request-id"] == "req-3"


def test_a_client_cannot_send_the_mark(client):
    resp = client.post("/", headers={"x-request-id": "req-2", INVALID_HEADER_MARK: "x-request-id"})
    assert resp.json() == {"request_id": "req-2", "mark": None}


async def test_the_gateway_answers_a_marked_id_with_400_naming_it():
    from finserve.serving.guard.engine import PIIGuard
    from finserve.serving.stages import LocalGuard

    ctx, error = await ClientFields(LocalGuard(PIIGuard()), "default").context(
        {"x-request-id": pseudonym("id with spaces"), INVALID_HEADER_MARK: "x-request-id"}
    )
    assert error is not None and error.param == "x-request-id"
    assert ctx.request_id == pseudonym("id with spaces")


def test_wiring():
    """Ray resolves the callback by import path and checks what it returns, as it will at start."""
    from ray.serve._private.http_util import validate_http_proxy_callback_return
    from ray.serve._private.utils import call_function_from_import_path

    assert validate_http_proxy_callback_return(call_function_from_import_path(RAY_INGRESS_CALLBACK))
    assert HASH_KEY_ENV == GUARD_HASH_KEY_ENV
