"""Where the Ray Serve gateway's retrieval runs: in the gateway replica (a real Retriever on a real Milvus
Lite index and MiniLM), or behind the Retriever deployment. The Gateway class is built here without Ray;
the generator's handle is a stand-in with ``.remote`` (no LLM is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_handles import FakeHandle

from finserve.contracts import AdapterRef
from finserve.serving.app import Gateway, build_app
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.inference.types import GenerationResult
from finserve.serving.pipeline import RequestContext
from finserve.serving.schemas import ChatCompletionRequest

pytestmark = pytest.mark.filterwarnings("ignore:coroutine .*ASGIIngressWrapper.__del__:RuntimeWarning")


async def _generate(request: Any) -> GenerationResult:
    return GenerationResult(
        text="It is on its way.",
        prompt_tokens=5,
        completion_tokens=5,
        finish_reason="stop",
        adapter=AdapterRef.base(),
    )


async def _ready() -> bool:
    return True


def _config(tmp_path: Path, index: Path) -> ServingConfig:
    from stack_config import stack_config

    cfg = stack_config(tmp_path, index)
    cfg.deployments = cfg.deployments.model_copy(update={"retrieval_placement": "gateway"})
    return cfg


async def test_gateway_placement_searches_in_the_replica(tmp_path: Path, small_index: Path) -> None:
    cfg = _config(tmp_path, small_index)
    gateway = Gateway.__new__(
        Gateway
    )  # as a replica builds it: the ingress wrapper's __init__ is a coroutine
    await gateway.__init__(
        cfg.model_dump(mode="json"), None, None, FakeHandle(generate=_generate, ready=_ready), None
    )
    try:
        assert "retriever" not in gateway._handles  # no Retriever deployment to call
        assert (await gateway.readiness())["retriever"] is True
        req = ChatCompletionRequest(
            model=DEFAULT_MODEL, messages=[{"role": "user", "content": "My new card still has not arrived"}]
        )
        out = await gateway.pipeline.chat(req, RequestContext())
        assert out.finserve.intent == "card_arrival"
        assert out.finserve.citations and out.finserve.citations[0].startswith("answer:")
        assert out.finserve.timings_ms["retrieval"] > 0
    finally:
        await gateway._local_retriever.aclose()


@pytest.mark.parametrize("placement", ["gateway", "deployment"])
def test_build_app_binds_a_retriever_deployment_only_for_deployment_placement(placement: str) -> None:
    cfg = ServingConfig()
    cfg.deployments = cfg.deployments.model_copy(update={"retrieval_placement": placement})
    gateway_args = build_app(cfg)._bound_deployment.init_args  # (config, guard, retriever, generator, audit)
    assert (gateway_args[2] is not None) == (placement == "deployment")


def test_gateway_placement_with_milvus_lite_refuses_two_gateway_replicas() -> None:
    cfg = ServingConfig()
    two = cfg.deployments.gateway.model_copy(update={"num_replicas": 2})
    cfg.deployments = cfg.deployments.model_copy(update={"retrieval_placement": "gateway", "gateway": two})
    with pytest.raises(ValueError, match="one gateway replica"):
        build_app(cfg)
    cfg.retrieval = cfg.retrieval.model_copy(update={"milvus_uri": "http://milvus:19530"})
    assert build_app(cfg)._bound_deployment.init_args[2] is None  # a Milvus server: any number of gateways
