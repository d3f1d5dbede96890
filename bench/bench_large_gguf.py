"""Both CPU engines on a GGUF larger than the packaged 135M, each in a fresh process: load time, resident memory
against the file's size, decode at batch 1 and over 8 sequences, and a cold prefill of the ~270-token RAG prompt
(bench_engines' workloads, same prompts and token ids).

Our engine (``cpu.model_file``: the GGUF read tensor by tensor into int8, lean forward, C kernels) and llama.cpp
(``engine: llamacpp``, xllamacpp, the file as it is) take the same path; ``transformers-folder`` (SmolLM2
only) is our engine on the float32 folder converted from the packaged GGUF, the load this one replaced. Each engine runs in its own process so
its memory is its own, one after the other (``--rounds 2`` alternates the order); on a shared machine compare
them as ratios within a run.

    python -m bench.bench_large_gguf [--gguf PATH] [--tokens 32] [--reps 2] [--rounds 1] [--threads 1]
                                     [--load-only] [--out bench/results/large_gguf.json]

``--load-only``: load time and memory only (no decode or prefill runs; the median columns are then absent).

Without ``--gguf`` it writes the synthetic 0.47 B-parameter Llama of the engine's slow test once, under
data_dir()/cache/ (``tests/serving/inference/synthetic_gguf.py``: random weights, Q8_0, SmolLM2's tokenizer:
no GGUF of 0.5-1.5 B comes in a package here). Random weights make the text noise, not the speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_engines import cpu_flags, decode, prefill
from bench.common import machine, write_result

PACKAGES = ("torch", "transformers", "gguf", "xllamacpp")
SYNTHETIC = "synthetic-llama-0.47b-q8_0.gguf"
ROOT = Path(__file__).resolve().parent.parent


def memory() -> dict[str, int]:
    """This process's resident memory now (and its peak), in MB, from /proc/self/status."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024)
    return fields


def gguf_facts(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    kinds: dict[str, int] = {}
    for t in reader.tensors:
        kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + int(t.n_elements)
    return {
        "file": path.name,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "parameters_m": round(sum(kinds.values()) / 1e6, 1),
        "parameters_by_type_m": {k: round(v / 1e6, 1) for k, v in kinds.items()},
    }


async def one_engine(
    engine: str, gguf: Path, tokens: int, reps: int, threads: int, load_only: bool = False
) -> dict[str, Any]:
    from finserve.serving.inference import GeneratorConfig, build_engine

    common: dict[str, Any] = {"max_batch_size": 8, "max_new_tokens": tokens}
    if engine == "llamacpp":
        config = GeneratorConfig(
            engine="llamacpp",
            llamacpp={"model_file": str(gguf), "threads": threads, "adapter_cache_dir": tempfile.mkdtemp()},
            **common,
        )
    elif engine == "transformers-folder":  # the old load: SmolLM2's float32 folder converted from its GGUF
        from finserve.serving.inference import ensure_base_model

        config = GeneratorConfig(model_dir=str(ensure_base_model()), cpu={"num_threads": threads}, **common)
    else:
        config = GeneratorConfig(cpu={"model_file": str(gguf), "num_threads": threads}, **common)
    eng = build_engine(config)
    load_avg = round(os.getloadavg()[0], 2)  # the machine's, as this engine's process starts
    before = memory()
    t0 = time.perf_counter()
    await eng.start()
    load_s = time.perf_counter() - t0
    loaded = memory()
    runs: dict[str, list[dict[str, Any]]] = {}
    median: dict[str, float] = {}
    if not load_only:
        await decode(eng, 1, 4)  # warm-up, outside the timings
        runs = {"decode_b1": [], "decode_b8": [], "prefill_rag_cold": []}
        for _ in range(reps):
            runs["decode_b1"].append(await decode(eng, 1, tokens))
            runs["decode_b8"].append(await decode(eng, 8, tokens))
            runs["prefill_rag_cold"].append(await prefill(eng, cold=True))
        median = {
            "decode_b1_tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs["decode_b1"]),
            "decode_b8_tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs["decode_b8"]),
            "prefill_rag_tokens_per_s": statistics.median(
                r["prefill_tokens_per_s"] for r in runs["prefill_rag_cold"]
            ),
        }
    served = memory()
    await eng.stop()
    return {
        "engine": engine,
        "load_s": round(load_s, 2),
        "load_avg_1m": load_avg,
        "memory_mb": {"before_load": before, "after_load": loaded, "after_runs": served},
        "median": median,
        "runs": runs,
    }


def synthetic_gguf() -> Path:
    from finserve.serving.paths import data_dir

    path = data_dir() / "cache" / SYNTHETIC
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        script = ROOT / "tests" / "serving" / "inference" / "synthetic_gguf.py"
        subprocess.run([sys.executable, "-P", str(script), str(tmp)], check=True)
        tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2, help="measurements per engine process (median)")
    parser.add_argument("--rounds", type=int, default=1, help="processes per engine, order alternating")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--engines", nargs="+", default=["transformers", "llamacpp"])
    parser.add_argument("--load-only", action="store_true", help="load time and memory only")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process: one engine
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    gguf = args.gguf or synthetic_gguf()
    if args.one:
        row = asyncio.run(one_engine(args.one, gguf, args.tokens, args.reps, args.threads, args.load_only))
        print(json.dumps(row))
        return
    info = machine(PACKAGES)
    results: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for engine in args.engines if r % 2 == 0 else list(reversed(args.engines)):
            cmd = [sys.executable, "-m", "bench.bench_large_gguf", "--one", engine, "--gguf", str(gguf)]
            cmd += ["--tokens", str(args.tokens), "--reps", str(args.reps), "--threads", str(args.threads)]
            cmd += ["--load-only"] if args.load_only else []
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{engine} failed:\n{proc.stderr[-4000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(engine, row["load_s"], row["memory_mb"]["after_load"], row["median"], flush=True)
            results.setdefault(engine, []).append(row)
    facts = gguf_facts(gguf)
    payload = {
        "command": " ".join(["python -m bench.bench_large_gguf", *sys.argv[1:]]),
        "machine": {**info, "cpu_flags": cpu_flags()},
        "model": facts,
        "settings": {
            "tokens": args.tokens,
            "reps": args.reps,
            "threads": args.threads,
            "load_only": args.load_only,
        },
        "engines": results,
        "summary": summary(results, facts),
    }
    print(json.dumps(payload["summary"], indent=2))
    print(write_result("large_gguf", payload, args.out))


def summary(results: dict[str, list[dict[str, Any]]], facts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine, rows in results.items():
        med = {
            k: statistics.median(r["median"][k] for r in rows) for k in rows[0]["median"]
        }  # none: --load-only
        rss = statistics.median(r["memory_mb"]["after_runs"]["VmRSS"] for r in rows)
        out[engine] = {
            **med,
            "load_s": statistics.median(r["load_s"] for r in rows),
            "rss_mb": rss,
            "peak_rss_mb": max(r["memory_mb"]["after_runs"]["VmHWM"] for r in rows),
            "rss_over_file": round(rss / facts["file_mb"], 2),
        }
    if "transformers" in out and "llamacpp" in out:
        own, ref = out["transformers"], out["llamacpp"]
        out["ratio_own_over_llamacpp"] = {
            k: round(own[k] / ref[k], 2) for k in own if k.endswith("per_s") and ref.get(k)
        }
    return out


if __name__ == "__main__":
    main()
