"""Our CPU engine (transformers + int8 + lean forward) against the llama.cpp engine (xllamacpp), in one process,
on the same prompts, interleaved round by round so both see the same machine load.

Per round and engine: decode at batch 1 and over 8 concurrent sequences, prefill of a RAG prompt built with the
serving prompt builder (system prompt + three knowledge answers + a question, about 270 tokens; cold: a fresh
prefix each time, warm: the same prompt again), and a mixed-adapter batch (stable + canary + base requests in the
same second) next to the same batch on one adapter. llama.cpp's own server handler, called directly with the same
token ids and no engine around it, is the anchor for what the engine wrapper costs. Compare figures as ratios
within a run: on a shared machine absolute rates move with other processes' load (recorded at start and end).

    python -m bench.bench_engines [--rounds 2] [--tokens 48] [--threads 1] [--out bench/results/engines.json]
    python -m bench.bench_engines --pipeline 1 4 16 --tokens 64 --queries 8 [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.bench_generator import PROMPTS as GENERATOR_PROMPTS
from bench.common import RESULTS_DIR, machine, write_result

PACKAGES = ("torch", "transformers", "peft", "xllamacpp", "gguf")
# The generator bench's long-answer prompts: both engines compared on what bench_generator measures.
PROMPTS = GENERATOR_PROMPTS
STABLE, CANARY = "banking77@2.1.0", "banking77@1.6.0"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))


def rag_messages(nonce: str | None) -> list[Any]:
    """What the pipeline sends the generator for a card question: the real builder over three real answers."""
    import yaml

    from finserve.serving.config import DEFAULT_SYSTEM_PROMPT
    from finserve.serving.inference import ChatMessage
    from finserve.serving.prompt import build_messages
    from finserve.serving.retrieval.config import default_answers_path

    answers = yaml.safe_load(default_answers_path().read_text())
    knowledge = [answers[k] for k in ("card_arrival", "card_delivery_estimate", "lost_or_stolen_card")]
    system = DEFAULT_SYSTEM_PROMPT if nonce is None else f"Session {nonce}. {DEFAULT_SYSTEM_PROMPT}"
    return build_messages(
        system,
        knowledge,
        [
            ChatMessage(
                role="user",
                content="My new card still has not arrived, it has been two weeks. What should I do?",
            )
        ],
    )


async def timed(engine: Any, req: Any) -> dict[str, float]:
    """One streamed request: time to first text, and the rest."""
    t0 = time.perf_counter()
    first = None
    usage = None
    async for chunk in engine.stream(req):
        if first is None and chunk.delta:
            first = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
    end = time.perf_counter()
    assert usage is not None
    return {
        "ttft_s": (first or end) - t0,
        "total_s": end - t0,
        "tokens": usage.completion_tokens,
        "prompt_tokens": usage.prompt_tokens,
        "cached": usage.cached_tokens,
    }


async def decode(engine: Any, n: int, tokens: int, adapters: list[str] | None = None) -> dict[str, Any]:
    from finserve.contracts import AdapterRef
    from finserve.serving.inference import ChatMessage, GenerationRequest

    refs = [AdapterRef.parse(a) for a in adapters] if adapters else [AdapterRef.base()] * n
    reqs = [
        GenerationRequest(
            messages=[ChatMessage(role="user", content=PROMPTS[i % len(PROMPTS)])],
            max_tokens=tokens,
            adapter=refs[i],
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(timed(engine, r) for r in reqs))
    wall = time.perf_counter() - t0
    generated = sum(o["tokens"] for o in outs)
    first = max(o["ttft_s"] for o in outs) if n == 1 else 0.0
    return {
        "tokens_per_s": round(generated / max(wall - first, 1e-9), 2),
        "wall_s": round(wall, 3),
        "tokens": generated,
        "ttft_p50_s": round(statistics.median(o["ttft_s"] for o in outs), 4),
    }


async def prefill(engine: Any, cold: bool) -> dict[str, Any]:
    from finserve.serving.inference import GenerationRequest

    req = GenerationRequest(messages=rag_messages(uuid.uuid4().hex[:8] if cold else None), max_tokens=1)
    if not cold:
        await timed(engine, req)  # the first time fills the prefix cache; the measured one reuses it
    out = await timed(engine, req)
    computed = out["prompt_tokens"] - out["cached"]
    return {
        "ttft_s": round(out["total_s"], 4),
        "prompt_tokens": out["prompt_tokens"],
        "cached_tokens": out["cached"],
        "prefill_tokens_per_s": round(computed / out["total_s"], 1) if computed else None,
    }


def raw_llamacpp(engine: Any, n: int, tokens: int) -> dict[str, Any]:
    """The anchor: llama.cpp's server handler with the same token ids, n threads at once, no engine around it."""
    from finserve.serving.inference import ChatMessage
    from finserve.serving.inference.chat import render_prompt

    handle = engine._server.handle
    results: list[int] = [0] * n

    def one(i: int) -> None:
        ids = render_prompt(engine._tokenizer, [ChatMessage(role="user", content=PROMPTS[i % len(PROMPTS)])])
        out = handle.handle_completions(
            {
                "prompt": ids,
                "max_tokens": tokens,
                "temperature": 0,
                "top_k": 0,
                "min_p": 0.0,
                "cache_prompt": True,
            }
        )
        results[i] = out["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"tokens_per_s": round(sum(results) / wall, 2), "wall_s": round(wall, 3), "tokens": sum(results)}


async def same_text(engines: dict[str, Any], tokens: int) -> dict[str, Any]:
    """Greedy answers of both engines on the same prompts: how many are the same text (Q4_1 in llama.cpp vs the
    dequantized float32 weights in ours: they may drift apart late)."""
    from finserve.serving.inference import ChatMessage, GenerationRequest

    texts = {}
    for name, eng in engines.items():
        texts[name] = [
            (
                await eng.generate(
                    GenerationRequest(messages=[ChatMessage(role="user", content=p)], max_tokens=tokens)
                )
            ).text
            for p in PROMPTS[:4]
        ]
    a, b = texts.values()
    return {
        "same": sum(x == y for x, y in zip(a, b, strict=False)),
        "of": len(a),
        "first_words_same": sum(x.split()[:5] == y.split()[:5] for x, y in zip(a, b, strict=False)),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from finserve.serving.inference import GeneratorConfig, build_engine

    cache = tempfile.mkdtemp(prefix="bench-engines-")
    # The data dir's registry (FINSERVE_REGISTRY or data_dir()/adapters): `finserve adapters seed` puts both there.
    common = {"max_batch_size": 8, "max_new_tokens": args.tokens}
    engines = {
        "own": build_engine(
            GeneratorConfig(engine="transformers", cpu={"num_threads": args.threads}, **common)
        ),
        "llamacpp": build_engine(
            GeneratorConfig(
                engine="llamacpp", **common, llamacpp={"threads": args.threads, "adapter_cache_dir": cache}
            )
        ),
    }
    from finserve.contracts import AdapterRef

    load_s = {}
    for name, eng in engines.items():
        t0 = time.perf_counter()
        await eng.start()
        for ref in (STABLE, CANARY):
            await eng.ensure_adapter(AdapterRef.parse(ref))
        await decode(eng, 8, 4)  # warm-up outside the timing (and the prompts' prefixes cached, for both)
        load_s[name] = round(time.perf_counter() - t0, 2)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        row: dict[str, Any] = {}
        for name, eng in engines.items() if r % 2 == 0 else reversed(engines.items()):
            row[name] = {
                "decode_b1": await decode(eng, 1, args.tokens),
                "decode_b8": await decode(eng, 8, args.tokens),
                "prefill_rag_cold": await prefill(eng, cold=True),
                "prefill_rag_warm": await prefill(eng, cold=False),
                "one_adapter_b6": await decode(eng, 6, args.tokens, [STABLE] * 6),
                "mixed_adapters_b6": await decode(eng, 6, args.tokens, [STABLE, CANARY, "base@0.0.0"] * 2),
            }
            if name == "llamacpp":
                row["llamacpp_raw"] = {
                    "decode_b1": await asyncio.to_thread(raw_llamacpp, eng, 1, args.tokens),
                    "decode_b8": await asyncio.to_thread(raw_llamacpp, eng, 8, args.tokens),
                }
            print(r, name, row[name], flush=True)
        rounds.append(row)
    agreement = await same_text(engines, 24)
    stats = engines["llamacpp"].stats().model_dump()  # type: ignore[attr-defined]
    for eng in engines.values():
        await eng.stop()
    return {
        "rounds": rounds,
        "ratios_llamacpp_over_own": ratios(rounds),
        "load_s": load_s,
        "greedy_text_agreement": agreement,
        "llamacpp_stats_at_end": stats,
    }


async def pipeline_both(args: argparse.Namespace) -> dict[str, Any]:
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import load_splits

    questions = [text for text, _ in load_splits(banking77_csv()).validation[: args.queries]]
    runs: dict[str, Any] = {}
    for name in ("own", "llamacpp", "own", "llamacpp")[: 2 * args.rounds]:
        engine = "transformers" if name == "own" else "llamacpp"
        runs.setdefault(name, []).append(
            await pipeline(engine, questions, args.pipeline, args.tokens, args.threads, args.intent_backbone)
        )
    return {"pipeline": runs}


async def pipeline(
    engine_name: str,
    questions: list[str],
    concurrencies: list[int],
    tokens: int,
    threads: int,
    intent_backbone: str = "auto",
) -> dict[str, Any]:
    """The whole in-process pipeline (guard, retrieval, intent, generator, output guard, audit) on one engine:
    requests/s and generate-stage p50 at each concurrency, 64-token answers by default."""
    from finserve.serving.config import DEFAULT_MODEL, load_serving_config
    from finserve.serving.local import build_local_stack
    from finserve.serving.pipeline import RequestContext
    from finserve.serving.schemas import ChatCompletionRequest

    cfg = load_serving_config(None)
    cfg.retrieval = cfg.retrieval.model_copy(update={"cache_enabled": False})
    cfg.audit = cfg.audit.model_copy(update={"path": Path(tempfile.mkdtemp()) / "audit.jsonl"})
    cfg.intent = cfg.intent.model_copy(update={"backbone": intent_backbone})
    gen = {"engine": engine_name, "max_batch_size": max(concurrencies)}
    if engine_name == "llamacpp":
        gen["llamacpp"] = cfg.generator.llamacpp.model_copy(update={"threads": threads})
    else:
        gen["cpu"] = cfg.generator.cpu.model_copy(update={"num_threads": threads})
    cfg.generator = cfg.generator.model_copy(update=gen)
    stack = build_local_stack(cfg)
    await stack.start()
    out: dict[str, Any] = {}
    try:
        for question in ("Where is my card?", "How do I top up?"):  # adapters load, caches warm
            await stack.pipeline.chat(
                ChatCompletionRequest(
                    model=DEFAULT_MODEL, max_tokens=2, messages=[{"role": "user", "content": question}]
                ),
                RequestContext(),
            )
        for c in concurrencies:
            gate = asyncio.Semaphore(c)
            generate_ms: list[float] = []
            methods: collections.Counter[str] = collections.Counter()  # head+encoder+vote: the head ran
            tokens_out = 0

            async def one(question: str) -> None:
                nonlocal tokens_out
                async with gate:  # noqa: B023 (`one` runs within this iteration: gathered below)
                    ctx = RequestContext()
                    resp = await stack.pipeline.chat(
                        ChatCompletionRequest(
                            model=DEFAULT_MODEL,
                            max_tokens=tokens,
                            messages=[{"role": "user", "content": question}],
                        ),
                        ctx,
                    )
                generate_ms.append(ctx.timings_ms["generate"])  # noqa: B023 (as above)
                methods[ctx.intent.method if ctx.intent else "none"] += 1  # noqa: B023 (as above)
                tokens_out += resp.usage.completion_tokens

            t0 = time.perf_counter()
            await asyncio.gather(*(one(q) for q in questions))
            wall = time.perf_counter() - t0
            out[f"c{c}"] = {
                "requests_per_s": round(len(questions) / wall, 3),
                "generated_tokens_per_s": round(tokens_out / wall, 2),
                "generate_p50_ms": round(statistics.median(generate_ms), 1),
                "requests": len(questions),
                "intent_methods": dict(methods),
            }
            print(engine_name, c, out[f"c{c}"], flush=True)
    finally:
        await stack.stop()
    return out


def ratios(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Per measure, the median over rounds of llama.cpp's figure over ours (>1: llama.cpp faster)."""
    out: dict[str, float] = {}
    for key, field, higher_is_better in (
        ("decode_b1", "tokens_per_s", True),
        ("decode_b8", "tokens_per_s", True),
        ("prefill_rag_cold", "ttft_s", False),
        ("prefill_rag_warm", "ttft_s", False),
        ("one_adapter_b6", "tokens_per_s", True),
        ("mixed_adapters_b6", "tokens_per_s", True),
    ):
        vals = []
        for row in rounds:
            a, b = row["llamacpp"][key][field], row["own"][key][field]
            vals.append(a / b if higher_is_better else b / a)
        out[key] = round(statistics.median(vals), 3)
    raw = [
        row["llamacpp"]["decode_b8"]["tokens_per_s"] / row["llamacpp_raw"]["decode_b8"]["tokens_per_s"]
        for row in rounds
    ]
    out["llamacpp_engine_over_raw_server_b8"] = round(statistics.median(raw), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="threads for both engines (same for each)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results/engines.json (engines_pipeline.json with --pipeline)",
    )
    parser.add_argument(
        "--pipeline",
        type=int,
        nargs="*",
        default=None,
        metavar="CONCURRENCY",
        help="instead: the whole in-process pipeline at these concurrencies (e.g. 1 4 16), both engines",
    )
    parser.add_argument(
        "--queries", type=int, default=8, help="pipeline questions (Banking77 validation rows)"
    )
    parser.add_argument(
        "--intent-backbone",
        default="auto",
        choices=["auto", "transformers"],
        help="pipeline: what the served version's intent head reads (FINSERVE_DEFAULT_ADAPTER picks the version; "
        "without it the base model is served and no head runs)",
    )
    args = parser.parse_args()
    info = {**machine(PACKAGES), "cpu_flags": cpu_flags()}
    if args.pipeline:
        result = asyncio.run(pipeline_both(args))
    else:
        result = asyncio.run(main_async(args))
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    name = "engines_pipeline" if args.pipeline else "engines"
    path = write_result(
        name,
        {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, **result},
        args.out or RESULTS_DIR / f"{name}.json",
    )
    print(path)


if __name__ == "__main__":
    main()
