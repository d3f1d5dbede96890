"""Where the Ray Serve gateway's audit records go: appended by the gateway itself, or sent to the Audit
deployment. The Gateway class is built here without Ray; its handles are stand-ins with ``.remote``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_handles import FakeHandle

from finserve.contracts import AdapterRef
from finserve.serving.app import Gateway
from finserve.serving.audit import read_records, verify_chain
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.inference.types import GenerationResult
from finserve.serving.pipeline import RequestContext
from finserve.serving.retrieval import Hit, RetrievalResult
from finserve.serving.schemas import ChatCompletionRequest

CARD = "4111 1111 1111 1111"
# Ray Serve's ingress wrapper has an async __del__ that only a replica awaits; garbage collection here
# merely warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .*ASGIIngressWrapper.__del__:RuntimeWarning")


async def _search(query: str, filters: Any = None) -> RetrievalResult:
    hit = Hit(
        id="answer:card_arrival",
        text="Cards arrive in 3-5 days.",
        intent="card_arrival",
        kind="answer",
        tenant="default",
        score=0.8,
    )
    return RetrievalResult(
        hits=[hit], examples=[hit.model_copy(update={"kind": "example"})], cache="off", index_version="v1"
    )


async def _generate(request: Any) -> GenerationResult:
    return GenerationResult(
        text="It is on its way.",
        prompt_tokens=5,
        completion_tokens=5,
        finish_reason="stop",
        adapter=AdapterRef.base(),
    )


async def _gateway(tmp_path: Path, audit: FakeHandle | None) -> Gateway:
    cfg = ServingConfig()
    cfg.audit = cfg.audit.model_copy(update={"path": tmp_path / "audit.jsonl"})
    # As a Ray Serve replica builds it: the ingress wrapper's __init__ is a coroutine.
    gateway = Gateway.__new__(Gateway)
    await gateway.__init__(
        cfg.model_dump(mode="json"), None, FakeHandle(search=_search), FakeHandle(generate=_generate), audit
    )
    return gateway


def _request() -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL, messages=[{"role": "user", "content": f"Card {CARD} missing"}]
    )


def test_gateway_placement_is_the_default() -> None:
    assert ServingConfig().deployments.audit_placement == "gateway"


async def test_gateway_placement_appends_a_masked_chained_record_before_answering(tmp_path: Path) -> None:
    gateway = await _gateway(tmp_path, audit=None)
    assert "audit" not in gateway._handles  # readiness waits on no Audit deployment
    out = await gateway.pipeline.chat(_request(), RequestContext())
    # chat() has returned: the record is already on disk (the append is on the path, not after it).
    [record] = read_records(tmp_path / "audit.jsonl")
    assert record["request_id"] == out.finserve.request_id and record["status"] == 200
    assert CARD not in record["input"] and "<CREDIT_CARD>" in record["input"]
    assert verify_chain(tmp_path / "audit.jsonl").ok


async def test_deployment_placement_sends_the_record_to_the_audit_deployment(tmp_path: Path) -> None:
    sent: list[Any] = []

    async def append(record: Any) -> str:
        sent.append(record)
        return "hash"

    gateway = await _gateway(tmp_path, audit=FakeHandle(append=append, ready=lambda: True))
    out = await gateway.pipeline.chat(_request(), RequestContext())
    assert [r.request_id for r in sent] == [out.finserve.request_id]
    assert not (tmp_path / "audit.jsonl").exists()  # the gateway wrote nothing itself
    assert "audit" in gateway._handles


@pytest.mark.parametrize("placement", ["gateway", "deployment"])
def test_build_app_binds_an_audit_deployment_only_for_deployment_placement(placement: str) -> None:
    from finserve.serving.app import build_app

    cfg = ServingConfig()
    cfg.deployments = cfg.deployments.model_copy(update={"audit_placement": placement})
    gateway_args = build_app(cfg)._bound_deployment.init_args  # (config, guard, retriever, generator, audit)
    assert (gateway_args[4] is not None) == (placement == "deployment")
