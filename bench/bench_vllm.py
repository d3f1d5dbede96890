"""The GPU engine (vLLM with LoRA) through VLLMEngine: tokens/s, time to first token, prefix caching.

Runs on a CUDA machine with the ``gpu`` extra. Every variant runs in its own process (vLLM keeps
the GPU until its process ends) and goes through finserve's engine interface, as the Generator
deployment calls it: batch 1 (one request at a time), then N concurrent requests for each
``--concurrency`` (vLLM batches them continuously), then the same with LoRA adapters (one
adapter at batch 1; base + adapters round robin when concurrent). Concurrent requests are
distinct and new to the engine (a fresh customer number after the question), so the prefix cache
reuses only the shared beginning, as real traffic shares the system prompt. Greedy decoding.
Writes bench/results/vllm.json.

    python -m bench.bench_vllm [--tokens 128] [--concurrency 8 32 128] [--variants cuda-graphs eager]
                               [--registry PATH --adapter NAME@VERSION] [--out ...]

Without ``--registry`` two random r=8 LoRA adapters are built (as bench_generator does).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_generator import PROMPTS, Phase, build_adapters, percentiles, run_phase
from bench.common import machine, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "vllm.json"
PACKAGES = ("vllm", "torch", "transformers")
VARIANTS = {"cuda-graphs": False, "eager": True}  # name -> enforce_eager


def gpu() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
    }
    try:
        info["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


_CUSTOMERS = itertools.count(1000)


def prompts(n: int) -> list[str]:
    """n prompts never sent before: the eight long-answer questions, each with a new customer number."""
    return [f"{PROMPTS[i % len(PROMPTS)]} (customer {next(_CUSTOMERS)})" for i in range(n)]


def phase_summary(phase: Phase) -> dict[str, Any]:
    tokens = sum(s.tokens for s in phase.samples)
    decode = [(s.tokens - 1) / s.decode_s for s in phase.samples if s.tokens > 1 and s.decode_s > 0]
    return {
        "requests": len(phase.samples),
        "aggregate_tokens_per_s": round(tokens / phase.wall_s, 1),
        "requests_per_s": round(len(phase.samples) / phase.wall_s, 2),
        "per_request_decode": percentiles(decode, "tok_s"),
        "ttft": percentiles([s.ttft_s for s in phase.samples], "ms", 1000),
        "mean_completion_tokens": round(tokens / len(phase.samples), 1),
        "prompt_tokens_cached_share": round(
            sum(s.cached_tokens for s in phase.samples) / max(1, sum(s.prompt_tokens for s in phase.samples)),
            3,
        ),
        "wall_s": round(phase.wall_s, 3),
    }


async def bench_one(
    name: str, args: argparse.Namespace, registry: str, adapters: list[str]
) -> dict[str, Any]:
    from finserve.contracts import AdapterRef
    from finserve.serving.inference import GeneratorConfig, VLLMOptions, build_engine

    top = max(args.concurrency)
    config = GeneratorConfig(
        engine="vllm",
        registry=registry,
        max_new_tokens=args.tokens,
        vllm=VLLMOptions(
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=2048,
            max_num_seqs=max(top, 8),
            enforce_eager=VARIANTS[name],
            dtype=args.dtype,
            max_loras=max(1, len(adapters)),
            max_lora_rank=16,
        ),
    )
    engine = build_engine(config)
    t0 = time.perf_counter()
    await engine.start()
    load_s = time.perf_counter() - t0
    base = "base@0.0.0"
    mix = [([base, *adapters])[i % (len(adapters) + 1)] for i in range(top)]
    for ref in adapters:
        await engine.ensure_adapter(AdapterRef.parse(ref))
    # Warm-up, unmeasured: Triton compiles the LoRA kernels for a batch shape on first use (about
    # a second each on a fresh machine), which would otherwise land in one phase's figures.
    await run_phase(engine, prompts(2), [base, adapters[0]], 8, concurrent=False)
    await run_phase(engine, prompts(top), [base] * top, 8, concurrent=True)
    await run_phase(engine, prompts(top), mix, 8, concurrent=True)
    out: dict[str, Any] = {"enforce_eager": VARIANTS[name], "load_s": round(load_s, 1)}
    single = await run_phase(engine, list(PROMPTS), [base] * len(PROMPTS), args.tokens, concurrent=False)
    out["batch1"] = phase_summary(single)
    out["batch1_texts"] = [s.text for s in single.samples]
    out["concurrent"] = {}
    for n in args.concurrency:
        phase = await run_phase(engine, prompts(n), [base] * n, args.tokens, concurrent=True)
        out["concurrent"][str(n)] = phase_summary(phase)
    lora_single = await run_phase(engine, list(PROMPTS), [adapters[0]] * len(PROMPTS), args.tokens, False)
    lora_mixed = await run_phase(engine, prompts(top), mix, args.tokens, concurrent=True)
    out["lora"] = {
        "adapters": adapters,
        "batch1_adapter": adapters[0],
        "batch1": phase_summary(lora_single),
        f"concurrent_{top}_mix": {"mix": "base + adapters, round robin", **phase_summary(lora_mixed)},
        "batch1_texts": [s.text for s in lora_single.samples],
    }
    await engine.stop()
    return out


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One variant in a child process; its JSON comes back through a file."""
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "variant.json"
        flags = ["-P"] if sys.flags.safe_path else []  # the child finds modules as this process did
        cmd = [
            sys.executable,
            *flags,
            "-m",
            "bench.bench_vllm",
            "--one",
            name,
            "--one-out",
            str(dest),
            "--tokens",
            str(args.tokens),
            "--dtype",
            args.dtype,
            "--gpu-memory-utilization",
            str(args.gpu_memory_utilization),
            "--concurrency",
            *map(str, args.concurrency),
        ]
        if args.registry:
            cmd += ["--registry", args.registry, "--adapter", *args.adapter]
        subprocess.run(cmd, check=True)
        return json.loads(dest.read_text())


def child(args: argparse.Namespace) -> None:
    from finserve.serving.inference import ensure_base_model

    if args.registry:
        registry, adapters = args.registry, list(args.adapter)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
        adapters = build_adapters(ensure_base_model(), work)
        registry = str(work / "registry")
    result = asyncio.run(bench_one(args.one, args, registry, adapters))
    Path(args.one_out).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--registry", help="adapter registry to serve from (default: two random adapters)")
    parser.add_argument("--adapter", nargs="+", default=["banking77@1.3.0"], help="adapters in --registry")
    parser.add_argument("--one", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--one-out", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        child(args)
        return None
    info = {**machine(PACKAGES), "gpu": gpu()}
    variants = {}
    for name in args.variants:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        variants[name] = run_variant(name, args)
    top = str(max(args.concurrency))
    ratios = {}
    if {"cuda-graphs", "eager"} <= variants.keys():
        g, e = variants["cuda-graphs"], variants["eager"]
        ratios["cuda_graphs_vs_eager"] = {
            "batch1_decode": round(
                g["batch1"]["per_request_decode"]["p50_tok_s"]
                / e["batch1"]["per_request_decode"]["p50_tok_s"],
                2,
            ),
            f"concurrent_{top}_aggregate": round(
                g["concurrent"][top]["aggregate_tokens_per_s"]
                / e["concurrent"][top]["aggregate_tokens_per_s"],
                2,
            ),
        }
    for name, res in variants.items():
        ratios[f"{name}_lora_vs_base"] = {
            "batch1_decode": round(
                res["lora"]["batch1"]["per_request_decode"]["p50_tok_s"]
                / res["batch1"]["per_request_decode"]["p50_tok_s"],
                2,
            ),
            f"concurrent_{top}_aggregate": round(
                res["lora"][f"concurrent_{top}_mix"]["aggregate_tokens_per_s"]
                / res["concurrent"][top]["aggregate_tokens_per_s"],
                2,
            ),
        }
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result = {
        "machine": info,
        "settings": {
            "max_tokens": args.tokens,
            "concurrency": args.concurrency,
            "dtype": args.dtype,
            "decoding": "greedy",
            "model": "SmolLM2-135M-Instruct",
            "adapters": args.adapter if args.registry else "two random r=8 q/v adapters",
        },
        "variants": variants,
        "ratios": ratios,
    }
    path = write_result("vllm", result, args.out)
    print(path.read_text())
    return result


if __name__ == "__main__":
    main()
