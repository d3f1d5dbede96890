"""Resident memory of a Generator replica (the CPU engine + the intent classifier, as GeneratorDeployment builds
them; ``start`` + answers with their intent heads), each in a fresh process, against
the issue's bound: 2x the quantised model file plus the KV budget (the prefix cache's cap plus the KV cache of the
batch that ran). ``--baseline`` measures another checkout alike (an earlier commit, its kernels built in place) for a
before/after in one call.

    python -m bench.bench_replica_memory [--rounds 2] [--adapter banking77@2.1.0] [--baseline PATH]
                                         [--backbones auto,transformers] [--out bench/results/replica_memory.json]

The replica runs the packaged SmolLM2-135M GGUF with the embedded defaults, one thread, the registry of the
tree measured; it answers one base and one adapter request, and scores the adapter's intent head for the question as
the pipeline asks the replica to (``intent.backbone`` per ``--backbones``: auto reads the engine's model, transformers
loads the heads' own float32 base; a checkout older than that choice ignores it). Memory is read from /proc/self/status: VmRSS when
the engine has started and after the answers, VmHWM (peak), RssAnon / RssFile, and which of transformers / peft
the process imported. The same is read once before the engine is built (Python, torch and finserve's imports).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import machine, write_result

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "peft", "gguf", "tokenizers")

CHILD = """
import asyncio, json, os, sys
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out
from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.inference import ChatMessage, GenerationRequest, GeneratorConfig, build_engine
from finserve.serving.inference.base_model import gguf_path
from finserve.serving.intent import IntentConfig
from finserve.serving.paths import registry_root
from finserve.serving import wiring
imported = status()
QUESTION = "How do I reset my card PIN?"
async def main():
    engine = build_engine(GeneratorConfig(batch_wait_ms=0, max_new_tokens=64, cpu={"num_threads": 1}))
    fields = IntentConfig.model_fields
    intent = wiring.build_intent_classifier(
        IntentConfig(**({"backbone": sys.argv[2]} if "backbone" in fields else {})),
        AdapterRegistry(registry_root()))
    await engine.start()
    if hasattr(wiring, "share_engine_model"):
        wiring.share_engine_model(intent, engine)
    started = status()
    answers = []
    for adapter in (AdapterRef.base(), AdapterRef.parse(sys.argv[1])):
        head = await intent.head_scores(QUESTION, adapter)
        req = GenerationRequest(messages=[ChatMessage(role="user", content=QUESTION)],
                                adapter=adapter, max_tokens=64)
        answers.append((await engine.generate(req)).completion_tokens)
    served = status()
    runner = engine.runner
    config = runner._model.config
    report = {"imported": imported, "started": started, "served": served, "completion_tokens": answers,
              "intent": None if head is None else max(head.probabilities, key=head.probabilities.get),
              "modules": sorted(m for m in ("transformers", "peft", "accelerate", "torch._dynamo", "sympy") if m in sys.modules),
              "model_file_bytes": gguf_path().stat().st_size,
              "prefix_cache_mb": runner.options.prefix_cache_mb,
              "kv_bytes_per_token": 2 * config.num_hidden_layers * config.num_key_value_heads
                                    * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads) * 4}
    await engine.stop()
    return report
print(json.dumps(asyncio.run(main())))
"""


def one(tree: Path, adapter: str, backbone: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "FINSERVE_REGISTRY": str(tree / "data" / "adapters")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, adapter, backbone],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tree} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bound_mb(row: dict[str, Any]) -> float:
    """2x the file + the prefix cache's cap + the KV cache of one request of 512 positions (rounded to the
    cache's 128-column growth: a 300-token RAG prompt and 64 answer tokens, and the cache's spare columns)."""
    return round(
        (2 * row["model_file_bytes"] + row["kv_bytes_per_token"] * 512) / 2**20 + row["prefix_cache_mb"], 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--adapter", default="banking77@2.1.0")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure alike")
    parser.add_argument("--backbones", default="auto,transformers", help="intent.backbone values to measure")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    variants = {
        f"{name}/{backbone}": (tree, backbone)
        for name, tree in trees.items()
        for backbone in args.backbones.split(",")
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (tree, backbone) in variants.items() if r % 2 == 0 else reversed(variants.items()):
            row = one(tree, args.adapter, backbone)
            rows[name].append(row)
            print(name, json.dumps(row), flush=True)
    summary = {}
    for name, runs in rows.items():
        summary[name] = {
            "served_rss_mb_median": round(statistics.median(r["served"]["VmRSS"] for r in runs), 1),
            "started_rss_mb_median": round(statistics.median(r["started"]["VmRSS"] for r in runs), 1),
            "imports_rss_mb_median": round(statistics.median(r["imported"]["VmRSS"] for r in runs), 1),
            "peak_mb_max": max(r["served"]["VmHWM"] for r in runs),
            "modules": runs[0]["modules"],
            "intent": runs[0]["intent"],
            "bound_mb": bound_mb(runs[0]),
            "file_mb": round(runs[0]["model_file_bytes"] / 2**20, 1),
        }
    payload = {"machine": machine(PACKAGES), "adapter": args.adapter, "rounds": rows, "summary": summary}
    print(json.dumps(summary, indent=2))
    write_result("replica_memory", payload, args.out)


if __name__ == "__main__":
    main()
