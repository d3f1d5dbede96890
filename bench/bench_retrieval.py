"""Retrieval latency and quality on the full Banking77 knowledge base.

Ingests the training part of the default split (8,002 examples) and the 77 answers into a fresh Milvus
Lite file, then times, on held-out validation queries: embedding one query, the Milvus searches, a full
search with caches off, an L1 hit and an L2 hit (a real redis-server on a free port). Also reports
top-1 answer-intent accuracy on those queries. Banking77: PolyAI, CC BY 4.0.

    python -m bench.bench_retrieval [--queries 300] [--rows N] [--out bench/results/retrieval.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine, percentiles, start_redis

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"
PACKAGES = ("onnxruntime", "torch", "sentence-transformers", "pymilvus", "milvus-lite", "redis", "pydantic")


def time_sync(
    fn: Callable[[str], object], texts: list[str], cpu_clock: Callable[[], float] = time.thread_time
) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per call (CPU time shows the cost without other tenants' load).

    ``cpu_clock``: this thread's CPU (the default), or ``time.process_time`` for calls whose work runs in
    other threads of this process (Milvus Lite's in-process server answers on its own threads).
    """
    wall, cpu = [], []
    for text in texts:
        w, c = time.perf_counter(), cpu_clock()
        fn(text)
        cpu.append((cpu_clock() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return wall, cpu


def with_cpu(timed: tuple[list[float], list[float]]) -> dict[str, float]:
    wall, cpu = timed
    return {**percentiles(wall), "cpu_p50_ms": round(statistics.median(cpu), 3)}


async def time_async(fn: Callable[[str], Awaitable[object]], texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        start = time.perf_counter()
        await fn(text)
        out.append((time.perf_counter() - start) * 1000)
    return out


async def run(queries: int, rows: int | None, out: Path) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from finserve.serving.paths import banking77_csv
    from finserve.serving.retrieval import (
        Embedder,
        RetrievalConfig,
        Retriever,
        default_split,
        ingest,
        lite_fastpath,
        read_banking77,
    )
    from finserve.serving.retrieval.store import MilvusStore

    result: dict[str, Any] = {
        "benchmark": "retrieval",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    result["machine"] = machine(PACKAGES)
    train, val = default_split(read_banking77(banking77_csv()))
    train = train[:rows] if rows else train
    sample = random.Random(77).sample(val, queries)
    texts = [t for t, _ in sample]
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    redis_proc, redis_url = start_redis(work)
    try:
        start = time.perf_counter()
        embedder = Embedder(threads=None, cache_dir=work / "onnx")
        result["embedder_load_and_export_s"] = round(time.perf_counter() - start, 2)
        base = RetrievalConfig(milvus_uri=str(work / "milvus.db"), redis_url=None)
        report = ingest(base, rows=train, progress=False, embedder=embedder)
        result["ingest_full"] = {
            "seconds": round(report.seconds, 1),
            "answers": report.answers,
            "examples": report.examples,
            "docs_per_s": round((report.answers + report.examples) / report.seconds, 1),
        }

        # Query-time settings from here on: one intra-op thread (the serving default).
        query_embedder = Embedder(threads=1, cache_dir=work / "onnx")
        result["embed_one_query"] = with_cpu(time_sync(lambda q: query_embedder.embed([q]), texts))

        store = MilvusStore(base.milvus_uri, timeout_s=10)
        store.index_info(base.collection)
        vectors = {q: query_embedder.embed([q])[0] for q in texts}
        direct_top1: dict[str, str] = {}

        def answers(q: str) -> None:
            direct_top1[q] = store.search(base.collection, vectors[q], "answer", "default", None, base.top_k)[
                0
            ].intent

        def examples(q: str) -> None:
            store.search(base.collection, vectors[q], "example", "default", None, 10)

        # The store installs the Lite fast path (serving/retrieval/lite_fastpath.py); milvus-lite's own
        # executor is timed beside it, on the same collection in the same run.
        lite_fastpath.uninstall()
        result["milvus_search_answers_top3_lite_executor"] = with_cpu(
            time_sync(answers, texts, time.process_time)
        )
        result["milvus_search_examples_top10_lite_executor"] = with_cpu(
            time_sync(examples, texts, time.process_time)
        )
        lite_fastpath.install()
        result["milvus_search_answers_top3"] = with_cpu(time_sync(answers, texts, time.process_time))
        result["milvus_search_examples_top10"] = with_cpu(time_sync(examples, texts, time.process_time))
        store.close()

        off = Retriever(base.model_copy(update={"cache_enabled": False}), embedder=query_embedder)
        found: dict[str, Any] = {}

        async def full(q: str) -> None:
            found[q] = await off.search(q)

        async def timed_full(key: str) -> None:
            cpu0 = time.process_time()
            result[key] = percentiles(await time_async(full, texts))
            result[key]["cpu_mean_ms"] = round((time.process_time() - cpu0) * 1000 / len(texts), 3)

        off.ready()  # connects now: connecting installs the fast path, which the next line takes out again
        lite_fastpath.uninstall()
        await timed_full("search_cache_off_lite_executor")
        lite_fastpath.install()
        await timed_full("search_cache_off")
        await off.aclose()

        with_l1 = Retriever(base, embedder=query_embedder)
        for q in texts:
            await with_l1.search(q)
        l1 = await time_async(with_l1.search, texts * 5)
        assert [(await with_l1.search(q)).cache for q in texts[:5]] == ["l1"] * 5
        result["search_l1_hit"] = percentiles(l1)
        await with_l1.aclose()

        l2_config = base.model_copy(update={"redis_url": redis_url, "l1_max_entries": 0})
        with_l2 = Retriever(l2_config, embedder=query_embedder)
        for q in texts:
            await with_l2.search(q)
        result["search_l2_hit"] = percentiles(await time_async(with_l2.search, texts))
        assert [(await with_l2.search(q)).cache for q in texts[:5]] == ["l2"] * 5
        await with_l2.aclose()

        truth = dict(sample)
        vote = {q: Counter(h.intent for h in found[q].examples).most_common(1)[0][0] for q in texts}
        result["quality_on_validation_sample"] = {
            "queries": len(texts),
            "answer_top1_fused": round(
                sum(found[q].hits[0].intent == truth[q] for q in texts) / len(texts), 4
            ),
            "answer_top3_fused": round(
                sum(truth[q] in {h.intent for h in found[q].hits} for q in texts) / len(texts), 4
            ),
            "answer_top1_answer_text_only": round(
                sum(direct_top1[q] == truth[q] for q in texts) / len(texts), 4
            ),
            "example_vote_top10": round(sum(vote[q] == truth[q] for q in texts) / len(texts), 4),
        }
    finally:
        redis_proc.kill()
        redis_proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queries", type=int, default=300, help="held-out validation queries timed per stage"
    )
    parser.add_argument("--rows", type=int, default=None, help="index only N training rows (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.queries, args.rows, args.out)), indent=2))


if __name__ == "__main__":
    main()
