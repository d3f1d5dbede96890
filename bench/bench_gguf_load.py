"""How long the CPU engine's model load takes (``ModelRunner.load``: tokenizer, model, int8 packing, lean forward),
from the packaged SmolLM2 GGUF (the default) and from the float32 folder converted from it, each in a fresh
process, alternating; ``--baseline`` adds the same loads from another checkout (an earlier commit, its kernels
built in place: ``python setup.py build_ext --inplace``), for a before/after on the same machine in one call.

    python -m bench.bench_gguf_load [--rounds 3] [--threads 1] [--routes gguf folder] [--baseline PATH]
                                    [--out bench/results/gguf_load.json]

Each row records the machine's 1-minute load average when its process started: on a shared machine compare
rows of one run, not runs.
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
PACKAGES = ("torch", "transformers", "gguf")

# Run in the child, from the tree being measured (its finserve is the one imported).
CHILD = """
import json, os, sys, time
load_avg = os.getloadavg()[0]
t0 = time.perf_counter()
from finserve.serving.inference.base_model import ensure_base_model, gguf_path
from finserve.serving.inference.config import CPUOptions
from finserve.serving.inference.model_runner import ModelRunner
import torch, transformers  # noqa: F401  (imported by the load anyway: timed apart)
t1 = time.perf_counter()
source = gguf_path() if sys.argv[1] == "gguf" else ensure_base_model()
runner = ModelRunner(source, CPUOptions(num_threads=int(sys.argv[2])))
t2 = time.perf_counter()
runner.load()
t3 = time.perf_counter()
mem = {}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    if key in ("VmRSS", "VmHWM"):
        mem[key] = round(int(value.split()[0]) / 1024)
print(json.dumps({"import_s": round(t1 - t0, 2), "load_s": round(t3 - t2, 2), "memory_mb": mem,
                  "load_avg_1m": round(load_avg, 2)}))
"""


def one(tree: Path, route: str, threads: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, route, str(threads)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tree} {route} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--routes", nargs="+", default=["gguf", "folder"], choices=["gguf", "folder"])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure alike")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            for route in args.routes:
                row = one(tree, route, args.threads)
                rows.setdefault(f"{name}/{route}", []).append(row)
                print(name, route, row, flush=True)
    summary = {
        key: {
            "load_s_median": statistics.median(r["load_s"] for r in runs),
            "load_s": [r["load_s"] for r in runs],
            "rss_mb_median": statistics.median(r["memory_mb"]["VmRSS"] for r in runs),
            "peak_rss_mb_max": max(r["memory_mb"]["VmHWM"] for r in runs),
            "load_avg_1m": [r["load_avg_1m"] for r in runs],
        }
        for key, runs in rows.items()
    }
    payload = {
        "command": " ".join(["python -m bench.bench_gguf_load", *sys.argv[1:]]),
        "machine": machine(PACKAGES),
        "settings": {"rounds": args.rounds, "threads": args.threads, "baseline": str(args.baseline or "")},
        "runs": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    print(write_result("gguf_load", payload, args.out))


if __name__ == "__main__":
    main()
