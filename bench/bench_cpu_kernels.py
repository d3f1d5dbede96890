"""The CPU engine's C kernels: AVX-512 against AVX2, and int8-only weights against an int8 + float32 copy.

Three engine set-ups (TransformersEngine, int8 weights, lean forward, prefix cache off) built in one process and
run interleaved, round by round, on bench_engines' workloads (decode at batch 1 and over 8 sequences, cold
prefill of the ~270-token RAG prompt):

- ``before``: the previous default: AVX2 kernel, a float32 copy of every Linear for prefill (MKL);
- ``avx2-int8-only``: the AVX2 kernel, int8 weights the only copy (prefill through the kernel too);
- ``after``: the new default: the variant the CPU's flags choose (AVX-512 where present), int8 only.

Then resident memory after loading, each set-up in a fresh process (``int8_prefill: float32`` vs ``int8``), and
the int8 matrix kernel alone on SmolLM2's Linear shapes (weights/s at 1 and 8 rows, GFLOPS at 271 rows, MKL's
float32 GEMM beside it; the q4 kernel on the same matrices' Q4_1 blocks beside the int8 one). Compare as ratios
within a run: on a shared machine absolute rates move with load.

    python -m bench.bench_cpu_kernels [--rounds 2] [--tokens 32] [--out bench/results/cpu_kernels.json]

``--q4``: ``weights: int8`` against ``weights: q4`` instead (the GGUF's Q4_1 blocks kept as they are): the two
engine set-ups interleaved on the same workloads, resident memory after loading each, and the kernels alone,
at ``--threads`` threads (default out bench/results/cpu_kernels_q4.json):

    python -m bench.bench_cpu_kernels --q4 --threads 2 [--rounds 3]
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

# weights: int8 against q4 (--q4): name -> cpu.weights
Q4_SETUPS = {"int8": "int8", "q4": "q4"}

RSS_SCRIPT = r"""
import ctypes, gc, json, sys
import psutil
from finserve.serving.inference import CPUOptions, ensure_base_model
from finserve.serving.inference.base_model import gguf_path
from finserve.serving.inference.model_runner import ModelRunner
source = gguf_path() if sys.argv[3] == "gguf" else ensure_base_model()  # the GGUF, or the converted folder
runner = ModelRunner(source, CPUOptions(weights=sys.argv[2], forward="lean", int8_prefill=sys.argv[1],
                                                     prefix_cache_mb=0, num_threads=1))
runner.load()
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed float32 weights back to the system, as a long-lived replica's are
info = psutil.Process().memory_full_info()
print(json.dumps({"rss_mb": round(info.rss / 2**20, 1), "uss_mb": round(info.uss / 2**20, 1),
                  "weights": runner.weights, "forward": runner.forward_path, "source": source.name}))
"""


async def start_engine(
    variant: str, int8_prefill: str, tokens: int, weights: str = "int8", threads: int = 1
) -> Any:
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
            weights=weights,  # type: ignore[arg-type]
            forward="lean",
            int8_prefill=int8_prefill,
            prefix_cache_mb=0,
            num_threads=threads,
        ),
    )
    engine = TransformersEngine(config)
    await engine.start()
    assert engine.runner is not None and engine.runner.weights == weights
    chosen = cpu_kernels.load_kernels()
    assert chosen is not None
    return engine, chosen.variant


async def engines_interleaved(args: argparse.Namespace) -> dict[str, Any]:
    engines, variants = {}, {}
    for name, (variant, int8_prefill) in SETUPS.items():
        engines[name], variants[name] = await start_engine(variant, int8_prefill, args.tokens)
    out = await interleaved(engines, args, "before")
    for name, res in out.items():
        res.update(kernel_variant=variants[name], int8_prefill=SETUPS[name][1])
    return out


async def interleaved(engines: dict[str, Any], args: argparse.Namespace, baseline: str) -> dict[str, Any]:
    """Started engines, warmed up, then ``args.rounds`` rounds of decode (batch 1 and 8) and a cold prefill each,
    interleaved; medians per engine and their ratios to ``baseline``'s (``vs_<baseline>``). Stops the engines."""
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
    out: dict[str, Any] = {}
    for name, rs in rounds.items():
        out[name] = {
            "decode_b1_tok_s": round(statistics.median(x["decode_b1"]["tokens_per_s"] for x in rs), 2),
            "decode_b8_tok_s": round(statistics.median(x["decode_b8"]["tokens_per_s"] for x in rs), 2),
            "prefill_tok_s": round(
                statistics.median(x["prefill_cold"]["prefill_tokens_per_s"] for x in rs), 1
            ),
            "prompt_tokens": rs[0]["prefill_cold"]["prompt_tokens"],
            "rounds": rs,
        }
    base = out[baseline]
    for res in out.values():
        res[f"vs_{baseline}"] = {
            k: round(res[k] / base[k], 2) for k in ("decode_b1_tok_s", "decode_b8_tok_s", "prefill_tok_s")
        }
    return out


async def engines_q4(args: argparse.Namespace) -> dict[str, Any]:
    """weights: int8 against q4, interleaved round by round (the CPU's own variant, prefill through the kernels)."""
    engines = {}
    for name, weights in Q4_SETUPS.items():
        engines[name], _ = await start_engine("auto", "int8", args.tokens, weights, args.threads)
    out = await interleaved(engines, args, "int8")
    for name, res in out.items():
        res["weights"] = Q4_SETUPS[name]
    return out


def lean_steps_q4(threads: int, rounds: int) -> dict[str, Any]:
    """Decode steps through the lean forward alone (no engine, no scheduler), int8 against q4 in one process,
    interleaved: ms per step at batch 1 and 8 (20-token prompts), and the step's matrix calls alone (every
    Linear module once, as a step calls them) at batch 1 and 8. The best of ``rounds``."""
    import torch

    from finserve.serving.inference import CPUOptions
    from finserve.serving.inference.base_model import gguf_path
    from finserve.serving.inference.model_runner import ModelRunner

    runners = {}
    for name, weights in Q4_SETUPS.items():
        runner = ModelRunner(gguf_path(), CPUOptions(weights=weights, prefix_cache_mb=0, num_threads=threads))  # type: ignore[arg-type]
        runner.load()
        runners[name] = runner
    torch.set_num_threads(threads)

    def steps(lean: Any, count: int, batch: int) -> float:
        cache, ids = (
            lean.new_cache(),
            torch.randint(0, 49152, (batch, 20), generator=torch.Generator().manual_seed(0)),
        )
        mask, positions = torch.ones_like(ids), torch.arange(20).repeat(batch, 1)
        token = torch.zeros(batch, 1, dtype=torch.long)
        with torch.inference_mode():
            lean.forward(ids, mask, positions, cache)
            t0 = time.perf_counter()
            for _ in range(count):
                mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype)], 1)
                positions = positions[:, -1:] + 1
                lean.forward(token, mask, positions, cache)
            return (time.perf_counter() - t0) / count * 1e3

    def matrices(model: Any, batch: int) -> float:
        linears = [m for m in model.modules() if type(m).__name__ in ("Int8Linear", "Q4Linear")]
        xs = {k: torch.randn(batch, k) for k in {m.in_features for m in linears}}
        with torch.inference_mode():
            for m in linears:
                m(xs[m.in_features])
            t0 = time.perf_counter()
            for _ in range(20):
                for m in linears:
                    m(xs[m.in_features])
            return (time.perf_counter() - t0) / 20 * 1e3

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            runs[name].append(
                {
                    "step_b1_ms": steps(runner._lean, 64, 1),
                    "step_b8_ms": steps(runner._lean, 32, 8),
                    "matrices_b1_ms": matrices(runner._model, 1),
                    "matrices_b8_ms": matrices(runner._model, 8),
                }
            )
    out: dict[str, Any] = {"threads": threads}
    for name, rs in runs.items():
        out[name] = {key: round(min(r[key] for r in rs), 2) for key in rs[0]}
    out["q4_over_int8_time"] = {key: round(out["q4"][key] / out["int8"][key], 3) for key in out["int8"]}
    return out


def resident_memory(setups: dict[str, tuple[str, str]], source: str = "folder") -> dict[str, Any]:
    """RSS/USS after loading, each set-up (label: (int8_prefill, weights)) in a fresh process, from the converted
    folder or (``gguf``, what q4 needs) the packaged GGUF."""
    out = {}
    for label, (int8_prefill, weights) in setups.items():
        proc = subprocess.run(
            [sys.executable, "-P", "-c", RSS_SCRIPT, int8_prefill, weights, source],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def kernel_alone(repeats: int, threads: int = 1, layer_count: int = 4) -> dict[str, Any]:
    import platform

    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, quantize
    from torch.nn import functional as F

    from finserve.serving.inference.cpu_kernels import cpu_flags, open_kernels, pack, runnable_variants

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    q4_layers = []
    # 4 layers' worth: ~14 M weights, 14 MB int8, 9 MB q4 (about an L3's size); --q4: SmolLM2's 30 layers (106 M)
    for n, k in LAYER_SHAPES * layer_count:
        w = torch.randn(n, k)
        q, s = pack(w)
        layers.append((w, q, s))
        q4_layers.append(quantize(w.numpy().astype(np.float32), GGMLQuantizationType.Q4_1))
    count = sum(w.numel() for w, _, _ in layers)
    xs = {rows: {k: torch.randn(rows, k) for k in (576, 1536)} for rows in (1, 8, 271)}
    out: dict[str, Any] = {"weights": count, "layers": layer_count, "threads": threads}

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
        kern.threaded = threads > 1
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
    # The q4 kernel (AVX2 in every variant) on the same matrices' Q4_1 blocks, in the same calls.
    kern = open_kernels(runnable_variants(cpu_flags(), platform.machine())[0])
    kern.threaded = threads > 1
    packed = [
        kern.q4_pack(b, GGMLQuantizationType.Q4_1.value, w.shape[1])
        for b, (w, _, _) in zip(q4_layers, layers, strict=True)
    ]
    for rows in (1, 8, 271):
        t = best(lambda rows=rows: [kern.linear_q4(xs[rows][p.shape[1] * 32], p, None) for p in packed])
        out[f"q4_rows{rows}"] = {
            "ms": round(t * 1e3, 2),
            "gweights_per_s": round(count / t / 1e9, 2),
            "gflops": round(2 * rows * count / t / 1e9, 1),
        }
    out["bytes_per_weight"] = {
        "int8": round(sum(q.numel() + 4 * s.numel() for _, q, s in layers) / count, 3),
        "q4": round(sum(p.numel() for p in packed) / count, 3),
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
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/cpu_kernels[_q4].json")
    parser.add_argument("--q4", action="store_true", help="weights: int8 against weights: q4")
    parser.add_argument("--threads", type=int, default=1, help="engine and kernel threads (--q4)")
    args = parser.parse_args()
    if not args.q4:
        args.threads = 1  # the variant comparison's set-ups are single-threaded
    args.out = args.out or RESULTS_DIR / ("cpu_kernels_q4.json" if args.q4 else "cpu_kernels.json")
    from dataclasses import asdict

    from finserve.serving.inference.cpu_kernels import kernel_report

    result: dict[str, Any] = {
        "machine": machine(("torch",)),
        "kernels": asdict(kernel_report("auto")),
        "settings": {"rounds": args.rounds, "tokens": args.tokens, "threads": args.threads, "q4": args.q4},
    }
    if "kernel" not in args.skip:
        result["kernel_alone"] = kernel_alone(args.repeats, args.threads, 30 if args.q4 else 4)
    if "engines" not in args.skip:
        if args.q4:
            result["lean_steps"] = lean_steps_q4(args.threads, args.rounds)
        result["engines"] = asyncio.run(engines_q4(args) if args.q4 else engines_interleaved(args))
    if "memory" not in args.skip:
        setups = (
            {"weights=int8": ("int8", "int8"), "weights=q4": ("int8", "q4")}
            if args.q4
            else {"int8_prefill=float32": ("float32", "int8"), "int8_prefill=int8": ("int8", "int8")}
        )
        result["resident_memory_after_load"] = resident_memory(setups, "gguf" if args.q4 else "folder")
    result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(write_result("cpu_kernels_q4" if args.q4 else "cpu_kernels", result, args.out))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1)[:6000])


if __name__ == "__main__":
    main()
