"""Intent accuracy and throughput of the served path (guard -> retrieval -> intent) on the validation split.

Needs the retrieval index (`finserve ingest`) and the adapter (`make adapters`) under the data dir.
The retrieval caches are off, so every query pays for its embedding and vector search, as a
fresh query would. Writes bench/results/eval.json (accuracy, macro-F1, queries/s, the projected
time for 3,000 queries, the machine and its load).

    python -m bench.bench_eval [--adapter NAME@VERSION] [--limit N] [--concurrency 4]

The adapter defaults to the version training_jobs/configs/default.yaml publishes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine

RESULTS = Path(__file__).resolve().parent / "results" / "eval.json"
PACKAGES = ("torch", "transformers", "peft", "onnxruntime", "pymilvus", "presidio-analyzer")


async def run(adapter: str, limit: int | None, concurrency: int) -> dict[str, Any]:
    from finserve.contracts import AdapterRef
    from finserve.serving.config import load_serving_config
    from finserve.serving.local import build_local_stack
    from finserve.serving.paths import banking77_csv
    from finserve.training.data import load_splits
    from finserve.training.evaluate import evaluate

    rows = load_splits(banking77_csv()).validation
    rows = rows[:limit] if limit else rows
    cfg = load_serving_config(None)
    cfg.retrieval = cfg.retrieval.model_copy(update={"cache_enabled": False})
    cfg.audit = cfg.audit.model_copy(update={"path": Path(tempfile.mkdtemp()) / "audit.jsonl"})
    stack = build_local_stack(cfg, with_generator=False)
    try:
        report = await evaluate(stack.pipeline, rows, AdapterRef.parse(adapter), concurrency=concurrency)
    finally:
        stack.retriever.close()
    return {
        "adapter": adapter,
        "rows": report.n,
        "accuracy": round(report.accuracy, 4),
        "macro_f1": round(report.macro_f1, 4),
        "queries_per_s": round(report.queries_per_s, 2),
        "projected_s_for_3000": round(3000 / report.queries_per_s, 1),
        "concurrency": concurrency,
        "methods": report.methods,
        "errors": report.errors,
        "confused_top5": [p.model_dump() for p in report.confused[:5]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=None, help="NAME@VERSION (default: default.yaml's version)")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N validation rows.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.adapter is None:
        from finserve.training.config import TrainConfig
        from finserve.training.demo import DEFAULT_CONFIG

        args.adapter = str(TrainConfig.from_file(DEFAULT_CONFIG).ref)
    result = {
        "benchmark": "eval",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(PACKAGES),
        **asyncio.run(run(args.adapter, args.limit, args.concurrency)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
