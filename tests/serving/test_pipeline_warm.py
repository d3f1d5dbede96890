"""Warming the context guard: every knowledge chunk is scanned once at start, so requests only read the
chunk cache. Real Presidio guard, real Retriever (MiniLM + Milvus Lite small index); the generator and
intent head are stand-ins (no LLM is loaded: only the front half is under test)."""

from __future__ import annotations

from pathlib import Path

from scripted_stages import Generator

from finserve.contracts import AdapterRef
from finserve.serving.audit.log import AuditLog
from finserve.serving.config import DEFAULT_MODEL, ServingConfig
from finserve.serving.guard.engine import PIIGuard
from finserve.serving.pipeline import Pipeline, RequestContext
from finserve.serving.retrieval import Retriever
from finserve.serving.routing import Router
from finserve.serving.schemas import ChatCompletionRequest
from finserve.serving.stages import LocalAudit, LocalGuard, RetrievalStage


class _NoHead:
    async def head_scores(self, masked_text: str, adapter: AdapterRef) -> None:
        return None


class _CountingGuard(LocalGuard):
    def __init__(self, guard: PIIGuard) -> None:
        self.scanned: list[str] = []

        def scan_many(texts: list[str]):
            self.scanned.extend(texts)
            return guard.scan_many(texts)

        super().__init__(guard)
        self.chunks._scan_many = scan_many  # count what reaches Presidio through the chunk cache


def _pipeline(cfg: ServingConfig, retrieval: RetrievalStage) -> tuple[Pipeline, _CountingGuard]:
    """The real pipeline around ``retrieval``, with a guard that counts what reaches Presidio."""
    guard = _CountingGuard(PIIGuard(cfg.guard))
    return Pipeline(
        cfg,
        guard=guard,
        retrieval=retrieval,
        intent=_NoHead(),
        generator=Generator(),
        audit=LocalAudit(AuditLog(cfg.audit)),
        router=Router(cfg.router),
    ), guard


async def test_warm_scans_every_answer_once_and_requests_then_hit_the_cache(
    tmp_path: Path, small_index: Path
) -> None:
    from stack_config import stack_config

    cfg = stack_config(tmp_path, small_index)
    retriever = Retriever(cfg.retrieval)
    pipeline, guard = _pipeline(cfg, retriever)
    try:
        assert await pipeline.warm() == 77
        assert len(guard.scanned) == 77 and len(set(guard.scanned)) == 77  # every answer text, once
        req = ChatCompletionRequest(
            model=DEFAULT_MODEL, messages=[{"role": "user", "content": "My new card has not arrived"}]
        )
        out = await pipeline.chat(req, RequestContext())
        assert len(out.finserve.citations) == 3
        assert len(guard.scanned) == 77  # the context pass ran, from the warmed cache
    finally:
        await retriever.aclose()


async def test_warm_failure_leaves_requests_working(tmp_path: Path, small_index: Path) -> None:
    from stack_config import stack_config

    class _Broken(Retriever):
        async def knowledge_texts(self) -> list[str]:
            raise RuntimeError("index not reachable yet")

    cfg = stack_config(tmp_path, small_index)
    retriever = _Broken(cfg.retrieval)
    pipeline, guard = _pipeline(cfg, retriever)
    try:
        assert await pipeline.warm() == 0
        req = ChatCompletionRequest(
            model=DEFAULT_MODEL, messages=[{"role": "user", "content": "Card not arrived"}]
        )
        out = await pipeline.chat(req, RequestContext())
        assert len(guard.scanned) == 3 and len(out.finserve.citations) == 3  # scanned on demand instead
    finally:
        await retriever.aclose()
