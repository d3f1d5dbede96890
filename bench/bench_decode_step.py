"""A decode step as one C call (serving/inference/decode_step.py) against a C call per operation, same model.

The CPU engine's own ModelRunner (the shipped SmolLM2 GGUF, int8 weights) is loaded once and driven through two
LeanLlama views of the same modules, ``one_call`` on and off, interleaved round by round: decode steps at batch 1
and 8 on the base model, batch 8 on one adapter, and batch 8 mixing two adapter versions and the base model (what a
canary looks like). Per set-up: step time p50/p95 over ``--steps`` steps per round (the first step of a round
builds the program and is left out), tokens/s, and the ratio per-call / one-call. Logits are compared too: the base
model's must be equal bit for bit; with adapters, within float32 rounding.

    python -m bench.bench_decode_step [--rounds 3] [--steps 48] [--threads 2] [--out bench/results/decode_step.json]

Adapters: banking77@2.1.0 and a second version of it (its LoRA B halved, published into a temporary registry as
banking77@1.6.0, since the shipped registry holds one version).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import RESULTS_DIR, machine, percentiles, write_result

STABLE, CANARY = "banking77@2.1.0", "banking77@1.6.0"
WORKLOADS: dict[str, list[str | None]] = {
    "base_b1": [None],
    "base_b8": [None] * 8,
    "one_adapter_b8": [STABLE] * 8,
    "mixed_adapters_b8": [STABLE, CANARY, None, STABLE, CANARY, None, STABLE, CANARY],
}


def canary_folder(work: Path) -> Path:
    """banking77@2.1.0's PEFT files with lora_B halved: a second version that answers differently."""
    from safetensors.torch import load_file, save_file

    from finserve.contracts import AdapterRegistry
    from finserve.serving.paths import registry_root

    source = AdapterRegistry(registry_root()).local_path(STABLE)
    target = work / "canary"
    shutil.copytree(source, target)
    weights = target / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: v * 0.5 if "lora_B" in k else v for k, v in tensors.items()}, str(weights))
    return target


def run_steps(
    lean: Any, runner: Any, rows: list[str | None], steps: int
) -> tuple[list[float], list[torch.Tensor]]:
    """A fixed prompt batch, then ``steps`` decode steps fed their own argmax: each step's seconds and logits."""
    prompt = runner.tokenizer.encode("How do I block my card and order a new one?")
    batch = len(rows)
    ids = torch.tensor([prompt] * batch)
    mask = torch.ones_like(ids)
    positions = torch.arange(len(prompt)).expand(batch, -1)
    cache = lean.new_cache()
    adapters = runner._rows(rows)
    times, logits_seen = [], []
    with torch.inference_mode():
        logits = lean.forward(ids, mask, positions, cache, rows=adapters)
        for _ in range(steps + 1):
            token = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], 1)
            positions = positions[:, -1:] + 1
            t0 = time.perf_counter()
            logits = lean.forward(token, mask, positions, cache, rows=adapters)
            times.append(time.perf_counter() - t0)
            logits_seen.append(logits)
    return times[1:], logits_seen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "decode_step.json")
    args = parser.parse_args()

    from finserve.contracts import AdapterRegistry
    from finserve.serving.inference.base_model import gguf_path
    from finserve.serving.inference.config import CPUOptions
    from finserve.serving.inference.lean_forward import LeanLlama
    from finserve.serving.inference.model_runner import ModelRunner
    from finserve.serving.paths import registry_root

    runner = ModelRunner(gguf_path(), CPUOptions(num_threads=args.threads, prefix_cache_mb=0))
    runner.load()
    work = Path(tempfile.mkdtemp(prefix="bench-decode-step-"))
    try:
        runner.load_adapter(STABLE, AdapterRegistry(registry_root()).local_path(STABLE))
        runner.load_adapter(CANARY, canary_folder(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert runner._lean is not None
    model, kernels = runner._lean.model, runner._lean._kernels
    views = {"one_call": LeanLlama(model, kernels), "per_call": LeanLlama(model, kernels, one_call=False)}
    samples: dict[str, dict[str, list[float]]] = {w: {v: [] for v in views} for w in WORKLOADS}
    agreement: dict[str, float] = {}
    for r in range(args.rounds):
        for workload, rows in WORKLOADS.items():
            logits = {}
            for name in views if r % 2 == 0 else reversed(list(views)):
                times, logits[name] = run_steps(views[name], runner, rows, args.steps)
                samples[workload][name] += [t * 1e3 for t in times]
            diff = max(
                float((a - b).abs().max())
                for a, b in zip(logits["one_call"], logits["per_call"], strict=True)
            )
            agreement[workload] = max(agreement.get(workload, 0.0), diff)
            print(
                r,
                workload,
                {n: round(statistics.median(s[-args.steps :]), 2) for n, s in samples[workload].items()},
            )
    results: dict[str, Any] = {}
    for workload, rows in WORKLOADS.items():
        entry: dict[str, Any] = {}
        for name, ms in samples[workload].items():
            stats = percentiles(ms)
            entry[name] = {**stats, "tokens_per_s": round(len(rows) * 1e3 / stats["p50_ms"], 1)}
        entry["per_call_over_one_call_p50"] = round(
            entry["per_call"]["p50_ms"] / entry["one_call"]["p50_ms"], 2
        )
        entry["max_abs_logit_diff"] = agreement[workload]
        results[workload] = entry
    write_result(
        "decode_step",
        {
            "machine": machine(("torch",)),
            "settings": vars(args) | {"out": str(args.out)},
            "workloads": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
