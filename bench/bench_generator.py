"""Generator throughput and time to first token, per weight format and forward path, through the real engine.

Every variant runs the same requests through TransformersEngine (scheduler, decode loop, PEFT,
streaming): batch 1 (one request at a time) and batch 8 (eight concurrent requests). Greedy
output of every variant is compared with plain float32 transformers'. Variants run one after
another in one process, so compare them as ratios within a run. Writes
bench/results/generator.json.

    python -m bench.bench_generator [--tokens 40] [--single 4] [--rounds 2] [--only NAME ...] [--out ...]

On a shared machine wall-clock rates include time other processes took; the process CPU time
(all threads) is recorded next to them, and the load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "generator.json"
PACKAGES = ("torch", "transformers", "peft")
PROMPTS = (
    "Write a detailed step-by-step guide to opening a savings account.",
    "Explain in detail how a bank transfer between two countries works.",
    "Write a long story about a lost credit card that finds its way home.",
    "Describe every step of disputing a card payment with a bank.",
    "Explain in detail what an IBAN is and how it is structured.",
    "Write a long letter to a customer explaining new account fees.",
    "Describe how exchange rates are set and why they change during the day.",
    "Write a detailed guide to keeping online banking accounts secure.",
)


@dataclass
class Variant:
    name: str
    weights: str
    threads: int
    forward: str = "lean"
    int8_dynamic: bool = False
    lora: bool = False
    note: str = ""


VARIANTS = (
    Variant("float32", "float32", 1, forward="transformers", note="plain transformers: the reference"),
    Variant(
        "float16-packed",
        "float16-packed",
        1,
        forward="transformers",
        note="the previous default: fbgemm float16 weights, transformers forward",
    ),
    Variant(
        "float16-packed-lean",
        "float16-packed",
        1,
        note="fbgemm float16 weights, lean forward + C decode kernels",
    ),
    Variant(
        "int8-transformers", "int8", 1, forward="transformers", note="int8 weights, transformers forward"
    ),
    Variant(
        "int8-lean", "int8", 1, lora=True, note="the default: int8 weights, lean forward + C decode kernels"
    ),
    Variant("int8-lean-2-threads", "int8", 2, note="the default on two threads"),
    Variant(
        "int8-dynamic",
        "float32",
        1,
        forward="transformers",
        int8_dynamic=True,
        note="torch.ao quantize_dynamic (fbgemm, activations quantized per tensor); base only",
    ),
    Variant(
        "bfloat16", "bfloat16", 1, forward="transformers", note="whole model in bfloat16 (slow here; --only)"
    ),
)
DEFAULT_SKIP = {"bfloat16"}  # no native bfloat16 on this CPU: 30 s TTFT at batch 8, run it with --only


@dataclass
class Sample:
    ttft_s: float
    tokens: int
    decode_s: float  # first token to last
    text: str
    first_at: float = 0.0  # perf_counter of the first and last chunk
    last_at: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the engine's prefix cache supplied


@dataclass
class Phase:
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0


def machine() -> dict[str, Any]:
    import torch

    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": next(
            (ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), ""
        ),
        "cpu_flags": sorted(
            {f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "f16c") if f" {f}" in flags}
        ),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "packages": {name: version(name) for name in PACKAGES},
    }


def percentiles(values: list[float], unit: str, scale: float = 1.0) -> dict[str, float]:
    ordered = sorted(v * scale for v in values)
    if len(ordered) == 1:
        ordered = ordered * 2
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        f"p50_{unit}": round(cuts[49], 2),
        f"p95_{unit}": round(cuts[94], 2),
        f"mean_{unit}": round(statistics.fmean(ordered), 2),
        "n": len(values),
    }


def build_adapters(model_dir: Path, root: Path) -> list[str]:
    """Two real PEFT LoRA adapters (r=8, q/v) with random weights, published into ``root``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finserve.contracts import AdapterManifest, AdapterRegistry
    from finserve.serving.inference import BASE_MODEL_ID

    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    registry = AdapterRegistry(root / "registry")
    refs = []
    for seed in (1, 2):
        model = get_peft_model(
            copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
        )
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.copy_(
                        torch.randn(param.shape, generator=gen) * (0.15 if "lora_B" in name else 0.03)
                    )
        folder = root / f"bench-{seed}"
        model.save_pretrained(str(folder))
        registry.publish(
            folder,
            AdapterManifest(name="bench", version=f"{seed}.0.0", base_model=BASE_MODEL_ID, checksum=""),
        )
        refs.append(f"bench@{seed}.0.0")
    return refs


async def one(engine: Any, prompt: str, adapter: str, max_tokens: int) -> Sample:
    from finserve.contracts import AdapterRef
    from finserve.serving.inference import ChatMessage, GenerationRequest

    req = GenerationRequest(
        messages=[ChatMessage(role="user", content=prompt)],
        adapter=AdapterRef.parse(adapter),
        max_tokens=max_tokens,
    )
    t0 = time.perf_counter()
    first = last = None
    parts: list[str] = []
    tokens = prompt_tokens = cached = 0
    async for chunk in engine.stream(req):
        now = time.perf_counter()
        first = first or now
        last = now
        parts.append(chunk.delta)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
            prompt_tokens, cached = chunk.usage.prompt_tokens, chunk.usage.cached_tokens
    assert first is not None and last is not None
    return Sample(
        ttft_s=first - t0,
        tokens=tokens,
        decode_s=last - first,
        text="".join(parts),
        first_at=first,
        last_at=last,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached,
    )


async def run_phase(
    engine: Any, prompts: list[str], adapters: list[str], max_tokens: int, concurrent: bool
) -> Phase:
    phase = Phase()
    w0, c0 = time.perf_counter(), time.process_time()
    if concurrent:
        phase.samples = list(
            await asyncio.gather(
                *(one(engine, p, a, max_tokens) for p, a in zip(prompts, adapters, strict=True))
            )
        )
    else:
        phase.samples = [await one(engine, p, a, max_tokens) for p, a in zip(prompts, adapters, strict=True)]
    phase.wall_s, phase.cpu_s = time.perf_counter() - w0, time.process_time() - c0
    return phase


def summarise(single: list[Phase], batched: list[Phase]) -> dict[str, Any]:
    singles = [s for ph in single for s in ph.samples]
    b8 = [s for ph in batched for s in ph.samples]
    b8_tokens = [sum(s.tokens for s in ph.samples) for ph in batched]
    # Decode only: tokens after each row's first, over the span from the first row's first token
    # to the last row's last (prefill excluded, the tail where rows have finished included).
    b8_decode = [
        sum(s.tokens - 1 for s in ph.samples)
        / (max(s.last_at for s in ph.samples) - min(s.first_at for s in ph.samples))
        for ph in batched
    ]
    return {
        "batch1_decode_tokens_per_s": percentiles(
            [(s.tokens - 1) / s.decode_s for s in singles if s.tokens > 1], "tok_s"
        ),
        "batch1_ttft": percentiles([s.ttft_s for s in singles], "ms", 1000),
        "batch1_tokens_per_cpu_s": round(sum(s.tokens for s in singles) / sum(ph.cpu_s for ph in single), 2),
        "batch8_aggregate_tokens_per_s": percentiles(
            [t / ph.wall_s for t, ph in zip(b8_tokens, batched, strict=True)], "tok_s"
        ),
        "batch8_decode_tokens_per_s": percentiles(b8_decode, "tok_s"),
        "batch8_ttft": percentiles([s.ttft_s for s in b8], "ms", 1000),
        "batch8_tokens_per_cpu_s": round(sum(b8_tokens) / sum(ph.cpu_s for ph in batched), 2),
        "mean_completion_tokens": round(statistics.fmean(s.tokens for s in singles + b8), 1),
    }


def agreement(texts: list[str], reference: list[str]) -> dict[str, float]:
    """Exact matches and mean shared prefix (fraction of the reference) of greedy outputs."""
    prefix = []
    for text, ref in zip(texts, reference, strict=True):
        n = next(
            (i for i, (a, b) in enumerate(zip(text, ref, strict=False)) if a != b), min(len(text), len(ref))
        )
        prefix.append(n / max(1, len(ref)))
    return {
        "exact": sum(t == r for t, r in zip(texts, reference, strict=False)),
        "of": len(reference),
        "mean_shared_prefix": round(statistics.fmean(prefix), 3),
    }


async def bench_variant(
    v: Variant, args: argparse.Namespace, registry: str, adapters: list[str]
) -> dict[str, Any]:
    import torch

    from finserve.contracts import AdapterRef
    from finserve.serving.inference import CPUOptions, GeneratorConfig
    from finserve.serving.inference.transformers_engine import TransformersEngine

    config = GeneratorConfig(
        registry=registry,
        max_new_tokens=args.tokens,
        max_batch_size=8,
        batch_wait_ms=20,
        # The same prompts repeat across rounds: a prefix cache would skip their
        # prefill. bench_prefix_cache measures it on distinct RAG prompts.
        cpu=CPUOptions(weights=v.weights, forward=v.forward, num_threads=v.threads, prefix_cache_mb=0),
    )
    engine = TransformersEngine(config)
    t0 = time.perf_counter()
    await engine.start()
    load_s = time.perf_counter() - t0
    assert engine.runner is not None
    if (engine.runner.weights, engine.runner.forward_path) != (v.weights, v.forward):
        raise RuntimeError(
            f"{v.name}: the engine fell back to {engine.runner.weights}/{engine.runner.forward_path}"
        )
    if v.int8_dynamic:
        from torch.ao.quantization import quantize_dynamic

        assert engine.runner is not None
        engine.runner._model = quantize_dynamic(engine.runner._model, {torch.nn.Linear}, dtype=torch.qint8)  # noqa: SLF001
    base = ["base@0.0.0"] * len(PROMPTS)
    await run_phase(engine, list(PROMPTS[:1]), base[:1], 4, concurrent=False)  # warm-up
    single = [await run_phase(engine, list(PROMPTS[: args.single]), base[: args.single], args.tokens, False)]
    batched = [await run_phase(engine, list(PROMPTS), base, args.tokens, True) for _ in range(args.rounds)]
    out: dict[str, Any] = {
        "note": v.note,
        "weights": v.weights,
        "forward": v.forward,
        "threads": v.threads,
        "load_s": round(load_s, 2),
        **summarise(single, batched),
        "_texts": [s.text for s in batched[0].samples],
    }
    if v.lora:
        for ref in adapters:
            await engine.ensure_adapter(AdapterRef.parse(ref))
        one_adapter = [adapters[0]] * len(PROMPTS)
        mixed = [("base@0.0.0", adapters[0], adapters[1])[i % 3] for i in range(len(PROMPTS))]
        single = [await run_phase(engine, list(PROMPTS[: args.single]), one_adapter, args.tokens, False)]
        batched = [
            await run_phase(engine, list(PROMPTS), mixed, args.tokens, True) for _ in range(args.rounds)
        ]
        out["with_lora"] = {
            "batch1_adapter": adapters[0],
            "batch8_mix": "base + 2 adapters, round robin",
            **summarise(single, batched),
        }
    await engine.stop()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from finserve.serving.inference import ensure_base_model

    info = machine()
    model_dir = ensure_base_model()
    work = Path(tempfile.mkdtemp(prefix="bench-generator-"))
    adapters = build_adapters(model_dir, work)
    chosen = [v for v in VARIANTS if (v.name in args.only if args.only else v.name not in DEFAULT_SKIP)]
    results: dict[str, Any] = {}
    for v in chosen:
        print(f"[bench] {v.name} ...", file=sys.stderr, flush=True)
        results[v.name] = await bench_variant(v, args, str(work / "registry"), adapters)
    reference = results.get("float32", {}).get("_texts")
    for res in results.values():
        texts = res.pop("_texts")
        if reference:
            res["greedy_agreement_vs_float32"] = agreement(texts, reference)
    ratios = {}
    if "float32" in results:
        f32 = results["float32"]
        for name, res in results.items():
            ratios[name] = {
                "batch1_decode": round(
                    res["batch1_decode_tokens_per_s"]["p50_tok_s"]
                    / f32["batch1_decode_tokens_per_s"]["p50_tok_s"],
                    2,
                ),
                "batch8_aggregate": round(
                    res["batch8_aggregate_tokens_per_s"]["p50_tok_s"]
                    / f32["batch8_aggregate_tokens_per_s"]["p50_tok_s"],
                    2,
                ),
                "batch8_decode": round(
                    res["batch8_decode_tokens_per_s"]["p50_tok_s"]
                    / f32["batch8_decode_tokens_per_s"]["p50_tok_s"],
                    2,
                ),
                "batch1_tokens_per_cpu_s": round(
                    res["batch1_tokens_per_cpu_s"] / f32["batch1_tokens_per_cpu_s"], 2
                ),
            }
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    return {
        "benchmark": "generator",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {
            "max_tokens": args.tokens,
            "batch1_requests": args.single,
            "batch8_rounds": args.rounds,
            "prompts": len(PROMPTS),
            "decoding": "greedy",
            "model": "SmolLM2-135M-Instruct",
        },
        "variants": results,
        "ratios_vs_float32": ratios,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=40, help="max_tokens per request")
    parser.add_argument("--single", type=int, default=4, help="batch-1 requests per variant (<= 8)")
    parser.add_argument("--rounds", type=int, default=2, help="batch-8 rounds per variant")
    parser.add_argument(
        "--only", nargs="*", help=f"variant names to run (default: all but {sorted(DEFAULT_SKIP)})"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
