"""The CPU engine's C kernels: AVX-512 against AVX2, and int8-only weights against an int8 + float32 copy.

Three engine set-ups (TransformersEngine, int8 weights, lean forward, prefix cache off) built in one process and
run interleaved, round by round, on bench_engines' workloads (decode at batch 1 and over 8 sequences, cold
prefill of the ~270-token RAG prompt):

- ``before``: the previous default: AVX2 kernel, a float32 copy of every Linear for prefill (MKL);
- ``avx2-int8-only``: the AVX2 kernel, int8 weights the only copy (prefill through the kernel too);
- ``after``: the new default: the variant the CPU's flags choose (AVX-512 where present), int8 only.

Then resident memory after loading, each set-up in a fresh process (``int8_prefill: float32`` vs ``int8``), and
the int8 matrix kernel alone on SmolLM2's Linear shapes (weights/s at 1 and 8 rows, GFLOPS at 271 rows, MKL's
float32 GEMM beside it). Compare as ratios within a run: on a shared machine absolute rates move with load.

    python -m bench.bench_cpu_kernels [--rounds 2] [--tokens 32] [--out bench/results/cpu_kernels.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.bench_engines import decode, prefill
from bench.common import RESULTS_DIR, machine, write_result

SETUPS = {  # name: (FINSERVE_CPU_KERNELS, cpu.int8_prefill)
    "before": ("avx2", "float32"),
    "avx2-int8-only": ("avx2", "int8"),
    "after": ("auto", "int8"),
}
# SmolLM2-135M: per layer q, k, v, o, gate, up, down (30 layers), and the tied lm_head, as (out, in).
LAYER_SHAPES = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]

RSS_SCRIPT = r"""
import ctypes, gc, json, sys
import psutil
from finserve.serving.inference import CPUOptions, ensure_base_model
from finserve.serving.inference.model_runner import ModelRunner
runner = ModelRunner(ensure_base_model(), CPUOptions(weights="int8", forward="lean", int8_prefill=sys.argv[1],
                                                     prefix_cache_mb=0, num_threads=1))
runner.load()
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed float32 weights back to the system, as a long-lived replica's are
info = psutil.Process().memory_full_info()
print(json.dumps({"rss_mb": round(info.rss / 2**20, 1), "uss_mb": round(info.uss / 2**20, 1),
                  "weights": runner.weights, "forward": runner.forward_path}))
"""


async def start_engine(variant: str, int8_prefill: str, tokens: int) -> Any:
    from finserve.serving.inference import CPUOptions, GeneratorConfig, cpu_kernels
    from finserve.serving.inference.transformers_engine import TransformersEngine

    # Each engine's layers keep the kernels they were built with: switch the variant, then build.
    os.environ["FINSERVE_CPU_KERNELS"] = variant
    cpu_kernels.load_kernels.cache_clear()
    config = GeneratorConfig(
        max_new_tokens=tokens,
        max_batch_size=8,
        batch_wait_ms=20,
        cpu=CPUOptions(
            weights="int8", forward="lean", int8_prefill=int8_prefill, prefix_cache_mb=0, num_threads=1
        ),
    )
    engine = TransformersEngine(config)
    await engine.start()
    assert engine.runner is not None and engine.runner.weights == "int8"
    chosen = cpu_kernels.load_kernels()
    assert chosen is not None
    return engine, chosen.variant


async def engines_interleaved(args: argparse.Namespace) -> dict[str, Any]:
    engines, variants = {}, {}
    for name, (variant, int8_prefill) in SETUPS.items():
        engines[name], variants[name] = await start_engine(variant, int8_prefill, args.tokens)
    os.environ.pop("FINSERVE_CPU_KERNELS", None)
    for engine in engines.values():  # warm-up: first-use costs out of the measured rounds
        await decode(engine, 1, 4)
        await prefill(engine, cold=True)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for r in range(args.rounds):
        for name, engine in engines.items():
            print(f"[bench] round {r + 1}: {name}", file=sys.stderr, flush=True)
            rounds[name].append(
                {
                    "decode_b1": await decode(engine, 1, args.tokens),
                    "decode_b8": await decode(engine, 8, args.tokens),
                    "prefill_cold": await prefill(engine, cold=True),
                }
            )
    for engine in engines.values():
        await engine.stop()
    out = {}
    for name, rs in rounds.items():
        out[name] = {
            "kernel_variant": variants[name],
            "int8_prefill": SETUPS[name][1],
            "decode_b1_tok_s": round(statistics.median(x["decode_b1"]["tokens_per_s"] for x in rs), 2),
            "decode_b8_tok_s": round(statistics.median(x["decode_b8"]["tokens_per_s"] for x in rs), 2),
            "prefill_tok_s": round(
                statistics.median(x["prefill_cold"]["prefill_tokens_per_s"] for x in rs), 1
            ),
            "prompt_tokens": rs[0]["prefill_cold"]["prompt_tokens"],
            "rounds": rs,
        }
    base = out["before"]
    for res in out.values():
        res["vs_before"] = {
            k: round(res[k] / base[k], 2) for k in ("decode_b1_tok_s", "decode_b8_tok_s", "prefill_tok_s")
        }
    return out


def resident_memory() -> dict[str, Any]:
    out = {}
    for int8_prefill in ("float32", "int8"):
        proc = subprocess.run(
            [sys.executable, "-P", "-c", RSS_SCRIPT, int8_prefill],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        out[f"int8_prefill={int8_prefill}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def kernel_alone(repeats: int) -> dict[str, Any]:
    import platform

    import torch
    from torch.nn import functional as F

    from finserve.serving.inference.cpu_kernels import cpu_flags, open_kernels, pack, runnable_variants

    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers = []
    for n, k in LAYER_SHAPES * 4:  # 4 layers' worth (~14 M weights, 14 MB int8: past the caches)
        w = torch.randn(n, k)
        q, s = pack(w)
        layers.append((w, q, s))
    count = sum(w.numel() for w, _, _ in layers)
    xs = {rows: {k: torch.randn(rows, k) for k in (576, 1536)} for rows in (1, 8, 271)}
    out: dict[str, Any] = {"weights": count, "threads": 1}

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    for variant in runnable_variants(cpu_flags(), platform.machine()):
        kern = open_kernels(variant)
        kern.threaded = False
        for rows in (1, 8, 271):
            t = best(
                lambda kern=kern, rows=rows: [
                    kern.linear(xs[rows][q.shape[1]], q, s, None) for _, q, s in layers
                ]
            )
            key = f"{variant}_rows{rows}"
            out[key] = {
                "ms": round(t * 1e3, 2),
                "gweights_per_s": round(count / t / 1e9, 2),
                "gflops": round(2 * rows * count / t / 1e9, 1),
            }
    t = best(lambda: [F.linear(xs[271][w.shape[1]], w) for w, _, _ in layers])
    out["mkl_float32_rows271"] = {"ms": round(t * 1e3, 2), "gflops": round(2 * 271 * count / t / 1e9, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="kernel-alone timings (the best is kept)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["engines", "memory", "kernel"])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "cpu_kernels.json")
    args = parser.parse_args()
    from dataclasses import asdict

    from finserve.serving.inference.cpu_kernels import kernel_report

    result: dict[str, Any] = {
        "machine": machine(("torch",)),
        "kernels": asdict(kernel_report("auto")),
        "settings": {"rounds": args.rounds, "tokens": args.tokens, "threads": 1},
    }
    if "kernel" not in args.skip:
        result["kernel_alone"] = kernel_alone(args.repeats)
    if "engines" not in args.skip:
        result["engines"] = asyncio.run(engines_interleaved(args))
    if "memory" not in args.skip:
        result["resident_memory_after_load"] = resident_memory()
    result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(write_result("cpu_kernels", result, args.out))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1)[:6000])


if __name__ == "__main__":
    main()
