"""The generator's prefix cache on real RAG prompts: the whole pipeline in one process, off against on.

Held-out validation questions go through the in-process pipeline (guard, retrieval, intent, the
prompt with the system prompt and three knowledge chunks, the CPU generator with the default
adapter, the output guard, the audit) at a fixed concurrency, once per variant, each variant on a
fresh stack (the cache starts empty: its hits are the ones a cold replica earns on distinct
questions). Reported per variant: requests/s, generated tokens/s, the generate stage's p50/p95,
the share of prompt tokens served from the cache, and how many completions are the same text as
the first variant's. Needs the index (`finserve ingest`) and the adapter (`make adapters`).

    python -m bench.bench_prefix_cache [--queries 64] [--concurrency 8] [--tokens 32] [--threads 1]
        [--variants 0 256] [--out bench/results/prefix_cache.json]

``--variants``: prefix-cache sizes in MiB, 0 = off. ``--threads``: torch threads for the generator
(the serving default gives its replica one CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, machine, percentiles, write_result

PACKAGES = ("torch", "transformers", "peft", "ray", "pymilvus", "presidio-analyzer")


async def run_variant(
    questions: list[str], prefix_mb: int, concurrency: int, tokens: int, threads: int | None
) -> tuple[dict[str, Any], list[str]]:
    from finserve.serving.config import DEFAULT_MODEL, load_serving_config
    from finserve.serving.local import build_local_stack
    from finserve.serving.pipeline import RequestContext
    from finserve.serving.schemas import ChatCompletionRequest

    cfg = load_serving_config(None)
    cfg.retrieval = cfg.retrieval.model_copy(update={"cache_enabled": False})
    cfg.audit = cfg.audit.model_copy(update={"path": Path(tempfile.mkdtemp()) / "audit.jsonl"})
    cpu = cfg.generator.cpu.model_copy(update={"prefix_cache_mb": prefix_mb, "num_threads": threads})
    cfg.generator = cfg.generator.model_copy(update={"cpu": cpu, "max_batch_size": max(concurrency, 1)})
    stack = build_local_stack(cfg)
    await stack.start()
    gate = asyncio.Semaphore(concurrency)
    texts: list[str] = [""] * len(questions)
    generate_ms: list[float] = []
    prompt = cached = completion = 0

    async def one(i: int, question: str) -> None:
        nonlocal prompt, cached, completion
        async with gate:
            req = ChatCompletionRequest(
                model=DEFAULT_MODEL, max_tokens=tokens, messages=[{"role": "user", "content": question}]
            )
            ctx = RequestContext()
            out = await stack.pipeline.chat(req, ctx)
        texts[i] = out.choices[0].message.content
        generate_ms.append(ctx.timings_ms["generate"])
        prompt += out.usage.prompt_tokens
        completion += out.usage.completion_tokens
        cached += out.usage.prompt_tokens_details.cached_tokens if out.usage.prompt_tokens_details else 0

    try:
        # Two questions first, outside the timing: the adapter loads and the kernels warm up. They
        # are not in the measured list, so they only fill the cache with what any request would.
        for question in ("Where is my card?", "How do I top up?"):
            req = ChatCompletionRequest(
                model=DEFAULT_MODEL, max_tokens=2, messages=[{"role": "user", "content": question}]
            )
            await stack.pipeline.chat(req, RequestContext())
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i, q) for i, q in enumerate(questions)))
        wall, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        runner = getattr(stack.engine, "runner", None)
        cache = getattr(runner, "prefix_cache", None)
    finally:
        await stack.stop()
    return {
        "prefix_cache_mb": prefix_mb,
        "requests": len(questions),
        "wall_s": round(wall, 2),
        "process_cpu_s": round(cpu_s, 2),
        "requests_per_s": round(len(questions) / wall, 3),
        "generated_tokens_per_s": round(completion / wall, 2),
        "generate": percentiles(generate_ms),
        "prompt_tokens_mean": round(prompt / len(questions), 1),
        "cached_prompt_share": round(cached / prompt, 4) if prompt else 0.0,
        "cache_blocks_at_end": len(cache) if cache is not None else 0,
        "cache_mib_at_end": round(cache.nbytes / 2**20, 1) if cache is not None else 0.0,
    }, texts


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import load_splits

    rows = load_splits(banking77_csv()).validation[: args.queries]
    questions = [text for text, _ in rows]
    results, first_texts = [], None
    for mb in args.variants:
        result, texts = await run_variant(questions, mb, args.concurrency, args.tokens, args.threads)
        if first_texts is None:
            first_texts = texts
        result["same_text_as_first_variant"] = sum(a == b for a, b in zip(first_texts, texts, strict=True))
        results.append(result)
        print(result, flush=True)
    base = results[0]
    for r in results[1:]:
        r["ratio_requests_per_s"] = round(r["requests_per_s"] / base["requests_per_s"], 3)
        r["ratio_generate_p50"] = round(r["generate"]["p50_ms"] / base["generate"]["p50_ms"], 3)
    return {"variants": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 256])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "prefix_cache.json")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    info = machine(PACKAGES)
    payload = asyncio.run(main_async(args))
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    command = (
        f"python -m bench.bench_prefix_cache --queries {args.queries} --concurrency {args.concurrency} "
        f"--tokens {args.tokens} --threads {args.threads} --variants {' '.join(map(str, args.variants))}"
    )
    path = write_result("prefix_cache", {"command": command, "machine": info, **payload}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
