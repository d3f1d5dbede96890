"""finserve_vector_store_unavailable_total: the gateway counts requests whose retrieval found Milvus down
(answered from the answers held in memory, or refused 503), so an operator can alert on it from the
gateway's /metrics (the retriever's own process is not scraped), and finserve_circuit_breaker_open{breaker=
"vector_store"} shows the outage as the gateway last saw it. A missing index is not an outage.
Real guard, router and audit log; retrieval is scripted (the real outage: tests/serving/retrieval/
test_retrieval_milvus_down.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted_stages import Retrieval, scripted_pipeline

from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import RequestContext
from finserve.serving.retrieval import IndexMissing, VectorStoreUnavailable
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalGuard

METRIC = "finserve_vector_store_unavailable_total"
GAUGE = "finserve_circuit_breaker_open"


class Failing(Retrieval):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def search(self, masked_query, filters=None):  # noqa: ANN001, ANN201
        raise self.exc


@pytest.fixture(scope="module")
def guard() -> LocalGuard:
    return LocalGuard(PIIGuard(ServingConfig().guard))


def _request() -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Where is my card?"}]
    )


async def test_requests_that_found_the_store_down_are_counted(tmp_path: Path, guard: LocalGuard) -> None:
    pipeline = scripted_pipeline(ServingConfig(), tmp_path, guard)
    count = lambda: pipeline.metrics.registry.get_sample_value(METRIC) or 0.0  # noqa: E731
    registry = pipeline.metrics.registry
    is_open = lambda: registry.get_sample_value(GAUGE, {"breaker": "vector_store"})  # noqa: E731
    await pipeline.chat(_request(), RequestContext())
    assert (count(), is_open()) == (0, 0)
    pipeline.retrieval = Retrieval(cache="answers")
    assert (await pipeline.chat(_request(), RequestContext())).finserve.cache == "answers"
    assert (count(), is_open()) == (1, 1)
    pipeline.retrieval = Retrieval(cache="l1")  # a cache hit says nothing of Milvus: the gauge stays
    await pipeline.chat(_request(), RequestContext())
    assert is_open() == 1
    pipeline.retrieval = Failing(VectorStoreUnavailable("Milvus search failed"))
    with pytest.raises(VectorStoreUnavailable):
        await pipeline.chat(_request(), RequestContext())
    assert (count(), is_open()) == (2, 1)
    pipeline.retrieval = Failing(IndexMissing("no index: run `finserve ingest`"))
    with pytest.raises(IndexMissing):
        await pipeline.chat(_request(), RequestContext())
    assert count() == 2
    pipeline.retrieval = Retrieval(cache="miss")  # Milvus answered again
    await pipeline.chat(_request(), RequestContext())
    assert is_open() == 0
