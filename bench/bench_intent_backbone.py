"""The intent head on the CPU engine's model (``intent.backbone: engine``, int8 weights from the GGUF) against its own
float32 copy of the base (``transformers``): the same questions through both, one at a time as the pipeline asks.

    python -m bench.bench_intent_backbone [--adapter banking77@2.1.0] [--per-intent 4] [--threads 1]
                                          [--out bench/results/intent_backbone.json]

Questions: ``--per-intent`` of each intent from our own validation split of the Banking77 training file (never
the test split). Reported per backbone: the head's accuracy (its probabilities as served, blended with the version's
fine-tuned encoder when it has one; the retrieval vote is not mixed in), latency p50/p95 per question; and the two
backbones' agreement and largest probability difference. Memory is bench_replica_memory's (``--backbones``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, percentiles, write_result

PACKAGES = ("torch", "transformers", "peft", "tokenizers")


def run(adapter: str, per_intent: int, threads: int) -> dict[str, Any]:
    import torch

    from finserve.contracts import AdapterRef, AdapterRegistry
    from finserve.serving.inference.base_model import gguf_path
    from finserve.serving.inference.config import CPUOptions
    from finserve.serving.inference.model_runner import ModelRunner
    from finserve.serving.intent import IntentConfig
    from finserve.serving.intent.backbone import EngineBackbone
    from finserve.serving.paths import banking77_csv, registry_root
    from finserve.serving.wiring import build_intent_classifier
    from finserve.training.data import load_splits

    torch.set_num_threads(threads)
    ref = AdapterRef.parse(adapter)
    registry = AdapterRegistry(registry_root())
    splits = load_splits(banking77_csv(), max_validation_per_intent=per_intent)
    texts = [text for text, _ in splits.validation]
    gold = [intent for _, intent in splits.validation]
    runner = ModelRunner(gguf_path(), CPUOptions(num_threads=threads))
    runner.load()
    engine = build_intent_classifier(IntentConfig(), registry)
    engine.use_backbone(EngineBackbone(lambda: runner))
    classifiers = {"engine": engine, "transformers": build_intent_classifier(IntentConfig(), registry)}
    rows: dict[str, Any] = {}
    probs: dict[str, np.ndarray] = {}
    for name, clf in classifiers.items():
        labels = clf.labels(ref)  # loads the version (and, for transformers, the float32 base)
        clf.probabilities(ref, texts[:4])  # warm-up
        samples, out = [], []
        for text in texts:
            start = time.perf_counter()
            out.append(clf.probabilities(ref, [text])[0])
            samples.append((time.perf_counter() - start) * 1000)
        probs[name] = np.array(out)
        predicted = [labels[i] for i in probs[name].argmax(1)]
        rows[name] = {
            "accuracy": round(float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)])), 4),
            "latency_ms": percentiles(samples),
        }
        print(name, rows[name], flush=True)
    engine_p, float_p = probs["engine"], probs["transformers"]
    comparison = {
        "agreement": round(float(np.mean(engine_p.argmax(1) == float_p.argmax(1))), 4),
        "max_abs_probability_difference": round(float(np.abs(engine_p - float_p).max()), 4),
        "mean_abs_probability_difference": round(float(np.abs(engine_p - float_p).mean()), 6),
        "p50_ratio_engine_over_transformers": round(
            rows["engine"]["latency_ms"]["p50_ms"] / rows["transformers"]["latency_ms"]["p50_ms"], 3
        ),
    }
    print(comparison, flush=True)
    return {
        "adapter": adapter,
        "questions": len(texts),
        "threads": threads,
        "rows": rows,
        "comparison": comparison,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", default="banking77@2.1.0")
    parser.add_argument("--per-intent", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.adapter, args.per_intent, args.threads)
    write_result("intent_backbone", {"machine": machine(PACKAGES), **result}, args.out)


if __name__ == "__main__":
    main()
