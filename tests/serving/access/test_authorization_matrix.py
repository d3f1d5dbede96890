"""The authorisation matrix: principals x tenants x scopes x endpoints, over HTTP and gRPC, every cell
asserted (status, and for inference the audit line's principal, tenant and route).

The stack is in-process and real (Presidio guard, MiniLM + Milvus Lite retrieval, the hash-chained audit
log, the FastAPI app and a grpc.aio server) except the generator and the intent head: a scripted
generator (a fake: the matrix is about who may call, and the real model is exercised by test_gateway.py
and the slow gRPC tests) and a head that has no opinion.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest
from jwks_util import AUDIENCE, ISSUER, rsa_key, write_jwks
from scripted_stages import Generator

from finserve.contracts import AdapterRef, Route
from finserve.serving.access import AuthConfig, JwtConfig
from finserve.serving.access.keys import KeysFile, new_key, write_keys
from finserve.serving.audit import AuditLog, read_records
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.gateway import create_api
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.oip_grpc import grpc_predict_v2_pb2 as pb
from finserve.serving.oip_grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from finserve.serving.oip_grpc.server import start_grpc_server
from finserve.serving.oip_grpc.servicer import InferenceServicer
from finserve.serving.pipeline import Pipeline
from finserve.serving.retrieval import Embedder, Retriever
from finserve.serving.routing import Router, RouterConfig
from finserve.serving.stages import LocalAudit, LocalGuard

STABLE = AdapterRef(name="banking77", version="1.0.0")
CANARY = AdapterRef(name="banking77", version="1.1.0")
GONE = "banking77@0.9.0"  # a version the route does not serve (e.g. rolled back)
LEGACY = "legacy-s3cret-0123456789"


class NoHead:
    async def head_scores(self, masked_text: str, adapter: AdapterRef):
        return None


# ---- principals: (name, authorization header or None, audited principal id or None) ----


def _principals(tmp: Path) -> tuple[dict[str, str | None], dict[str, str | None], AuthConfig]:
    specs = {
        "retail": (["retail"], ["infer"]),
        "multi": (["retail", "business"], ["infer"]),
        "override": (["retail"], ["infer", "adapter:override"]),
        "ops": (["retail"], ["admin"]),
        "revoked": (["retail"], ["infer"]),
    }
    keys, auth, who = KeysFile(), {}, {}
    for name, (tenants, scopes) in specs.items():
        key, record = new_key(name, tenants, scopes)
        if name == "revoked":
            record.revoked_at = record.created_at
        keys.keys.append(record)
        auth[name], who[name] = f"Bearer {key}", f"key:{record.id}"
    write_keys(tmp / "keys.json", keys)
    signer = rsa_key()
    jwks = write_jwks(tmp / "jwks.json", signer)
    auth["jwt"], who["jwt"] = f"Bearer {signer.token()}", "jwt:svc-retail-app"
    auth["jwt-expired"], who["jwt-expired"] = f"Bearer {signer.token(ttl_s=-3600)}", None
    auth["legacy"], who["legacy"] = f"Bearer {LEGACY}", "legacy-key"
    auth["none"], who["none"] = None, None
    auth["bad"], who["bad"] = "Bearer fsk_000000000000_" + "A" * 43, None
    auth["revoked"], who["revoked"] = auth["revoked"], None
    cfg = AuthConfig(
        keys_file=str(tmp / "keys.json"), jwt=JwtConfig(jwks_file=str(jwks), issuer=ISSUER, audience=AUDIENCE)
    )
    return auth, who, cfg


# ---- the cells: request name -> expected status per principal ----
REQUESTS = (
    "chat",
    "chat:retail",
    "chat:business",
    "override",
    "override:gone",
    "models",
    "metrics",
    "health",
)
U = {r: 401 for r in REQUESTS} | {"health": 200}  # no principal: everything but the probes is 401
EXPECTED: dict[str, dict[str, int]] = {
    "none": U,
    "bad": U,
    "revoked": U,
    "jwt-expired": U,
    #            chat chat:retail chat:business override override:gone models metrics health
    "retail": dict(zip(REQUESTS, (200, 200, 403, 403, 403, 200, 403, 200), strict=True)),
    "jwt": dict(zip(REQUESTS, (200, 200, 403, 403, 403, 200, 403, 200), strict=True)),
    "multi": dict(zip(REQUESTS, (400, 200, 200, 403, 403, 200, 403, 200), strict=True)),
    "override": dict(zip(REQUESTS, (200, 200, 403, 200, 403, 200, 403, 200), strict=True)),
    "ops": dict(zip(REQUESTS, (403, 403, 403, 403, 403, 403, 200, 200), strict=True)),
    # The legacy key: scope infer, the default tenant only.
    "legacy": dict(zip(REQUESTS, (200, 403, 403, 403, 403, 200, 403, 200), strict=True)),
}
TENANT = {"retail": "retail", "jwt": "retail", "override": "retail", "legacy": "default"}


def _headers(request: str, authorization: str | None, rid: str) -> dict[str, str]:
    h = {"x-request-id": rid}
    if authorization:
        h["authorization"] = authorization
    if ":" in request and request.startswith("chat"):
        h["x-finserve-tenant"] = request.split(":")[1]
    if request == "override":
        h["x-finserve-adapter"] = str(CANARY)
    if request == "override:gone":
        h["x-finserve-adapter"] = GONE
    return h


def _names_why(principal: str, request: str, message: str, who: dict) -> bool:
    """A 403 says which: the principal's missing scope or tenant, or the version policy (an overriding
    principal naming a version its route does not serve)."""
    if principal == "override" and request == "override:gone":
        return "serves now" in message
    return who[principal] in message


def _tenant_of(principal: str, request: str) -> str:
    return request.split(":")[1] if request.startswith("chat:") else TENANT.get(principal, "retail")


@pytest.fixture
async def stack(tmp_path: Path, small_index: Path, monkeypatch):
    from stack_config import stack_config

    monkeypatch.setenv("FINSERVE_API_KEY", LEGACY)
    auth, who, auth_cfg = _principals(tmp_path)
    cfg: ServingConfig = stack_config(tmp_path, small_index)
    cfg.auth = auth_cfg
    # The matrix is about who may call: a Milvus call slowed by a busy machine must not turn a cell into a 503.
    cfg.retrieval = cfg.retrieval.model_copy(update={"milvus_timeout_s": 60.0})
    cfg.gateway = cfg.gateway.model_copy(update={"metric_tenants": ["retail"]})
    cfg.exposure = cfg.exposure.model_copy(update={"docs": True})  # so the route walk covers /docs too
    cfg.router = RouterConfig(routes={DEFAULT_MODEL: Route(base_model="b", stable=STABLE, canary=CANARY)})
    retriever = Retriever(cfg.retrieval, embedder=Embedder())
    pipeline = Pipeline(
        cfg,
        guard=LocalGuard(PIIGuard(cfg.guard)),
        retrieval=retriever,
        intent=NoHead(),
        generator=Generator(["Your", "card", "is", "on", "its", "way."], adapters=None),
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=Router(cfg.router),
    )

    async def ready() -> dict[str, bool]:
        return {"all": True}

    server, port = await start_grpc_server(InferenceServicer(pipeline, ready), "127.0.0.1", 0)
    transport = httpx.ASGITransport(app=create_api(pipeline, ready))
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://finserve") as client,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        try:
            yield client, GRPCInferenceServiceStub(channel), auth, who, cfg
        finally:
            await server.stop(None)
            await pipeline.aclose()
            await retriever.aclose()


def _audit(cfg: ServingConfig) -> dict[str, dict]:
    return {line["request_id"]: line for line in read_records(cfg.audit.path)}


def _check_audit(
    failures: list[str], lines: dict, rid: str, principal: str, request: str, status: int, who: dict
) -> None:
    line = lines.get(rid)
    if line is None:
        failures.append(f"{rid}: no audit line")
        return
    want = (status, who[principal])
    got = (line["status"], line["principal"])
    if got != want:
        failures.append(f"{rid}: audit (status, principal) {got} != {want}")
    if status == 200:
        if line["tenant"] != _tenant_of(principal, request):
            failures.append(f"{rid}: audit tenant {line['tenant']}")
        route = "override" if request == "override" else None
        if route and line["route"] != route:
            failures.append(f"{rid}: audit route {line['route']}")
    elif line["tenant"] not in ("-", _tenant_of(principal, request)):
        failures.append(f"{rid}: refused request audited as tenant {line['tenant']}")


async def test_http_matrix(stack):
    client, _, auth, who, cfg = stack
    failures: list[str] = []
    cells = [(p, r) for p in EXPECTED for r in REQUESTS]
    for principal, request in cells:
        rid = f"h-{principal}-{request.replace(':', '-')}"
        headers = _headers(request, auth[principal], rid)
        if request.startswith(("chat", "override")):
            resp = await client.post(
                "/v1/chat/completions",
                headers=headers,
                json={
                    "model": DEFAULT_MODEL,
                    "messages": [{"role": "user", "content": "my card has not arrived"}],
                },
            )
        else:
            path = {"models": "/v1/models", "metrics": "/metrics", "health": "/healthz"}[request]
            resp = await client.get(path, headers=headers)
        want = EXPECTED[principal][request]
        if resp.status_code != want:
            failures.append(f"{principal} x {request}: {resp.status_code} != {want} {resp.text[:200]}")
            continue
        if want == 401 and 'Bearer realm="finserve"' not in resp.headers.get("www-authenticate", ""):
            failures.append(f"{principal} x {request}: 401 without WWW-Authenticate")
        if want in (401, 403):
            err = resp.json()["error"]
            code = "unauthorized" if want == 401 else "forbidden"
            if err["code"] != code or (
                want == 403 and not _names_why(principal, request, err["message"], who)
            ):
                failures.append(f"{principal} x {request}: error {err}")
        if want == 200 and request == "override" and resp.json()["finserve"]["adapter"] != str(CANARY):
            failures.append(f"{principal} x {request}: not served by the canary")
    lines = _audit(cfg)
    for principal, request in cells:
        if request.startswith(("chat", "override")):
            rid = f"h-{principal}-{request.replace(':', '-')}"
            _check_audit(failures, lines, rid, principal, request, EXPECTED[principal][request], who)
    assert not failures, "\n".join(failures)
    # Overridden traffic is labelled apart: the canary analysis (model="<route>") never counts it.
    metrics = (await client.get("/metrics", headers={"authorization": auth["ops"]})).text
    assert f'model="override:{DEFAULT_MODEL}"' in metrics
    assert (
        f'finserve_requests_total{{adapter="banking77",code="200",model="{DEFAULT_MODEL}",version="1.1.0"}}'
        not in metrics
    )
    assert 'tenant="business"' not in metrics  # only configured tenants label metrics


GRPC_CODES = {
    200: grpc.StatusCode.OK,
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
}
GRPC_REQUESTS = tuple(r for r in REQUESTS if r != "metrics")


def _infer() -> pb.ModelInferRequest:
    text = pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"card not here"]),
    )
    return pb.ModelInferRequest(model_name=DEFAULT_MODEL, inputs=[text])


async def test_grpc_matrix(stack):
    _, stub, auth, who, cfg = stack
    failures: list[str] = []
    cells = [(p, r) for p in EXPECTED for r in GRPC_REQUESTS]
    for principal, request in cells:
        rid = f"g-{principal}-{request.replace(':', '-')}"
        metadata = tuple(_headers(request, auth[principal], rid).items())
        try:
            if request.startswith(("chat", "override")):
                await stub.ModelInfer(_infer(), metadata=metadata, timeout=60)
            elif request == "models":
                await stub.ModelMetadata(pb.ModelMetadataRequest(name=DEFAULT_MODEL), metadata=metadata)
            else:
                await stub.ServerLive(pb.ServerLiveRequest(), metadata=metadata)
            code, details = grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as err:
            code, details = err.code(), err.details()
        want = EXPECTED[principal][request]
        if code != GRPC_CODES[want]:
            failures.append(f"{principal} x {request}: {code} != {GRPC_CODES[want]} {details}")
        elif want == 403 and not _names_why(principal, request, details, who):
            failures.append(f"{principal} x {request}: 403 details do not name the principal: {details}")
    lines = _audit(cfg)
    for principal, request in cells:
        if request.startswith(("chat", "override")):
            rid = f"g-{principal}-{request.replace(':', '-')}"
            _check_audit(failures, lines, rid, principal, request, EXPECTED[principal][request], who)
    assert not failures, "\n".join(failures)


async def test_model_version_override_needs_the_scope_over_grpc(stack):
    _, stub, auth, _, cfg = stack
    req = _infer()
    req.model_version = str(CANARY)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(req, metadata=(("authorization", auth["retail"]),), timeout=60)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "adapter:override" in err.value.details()
    resp = await stub.ModelInfer(
        req, metadata=(("authorization", auth["override"]), ("x-request-id", "g-mv")), timeout=60
    )
    assert json.loads(json.dumps([t.name for t in resp.outputs]))
    assert _audit(cfg)["g-mv"]["route"] == "override"


async def test_every_route_but_the_probes_refuses_an_anonymous_caller(stack):
    """Walks the app's routes (FastAPI's /docs and /openapi.json included), so an endpoint added later
    without auth fails here."""
    from finserve.serving.access import required_scope

    client = stack[0]
    app = client._transport.app
    paths = {
        (r.path.replace("{model}", DEFAULT_MODEL), m) for r in app.routes for m in getattr(r, "methods", ())
    }
    assert ("/openapi.json", "GET") in paths and ("/v1/chat/completions", "POST") in paths
    for path, method in sorted(paths):
        if method == "HEAD":
            continue
        resp = await client.request(
            method, path, headers={"x-request-id": "walk"}, **({"json": {}} if method == "POST" else {})
        )
        want = 401 if required_scope(path) is not None else 200
        assert resp.status_code == want, (method, path, resp.status_code)
