"""The Generator replica's peak resident memory against issue 21's bound (at most 2x the quantised model file plus
the KV budget), measured where it runs: a Ray Serve replica of ``GeneratorDeployment``, deployed with the resources
and concurrency cap ``finserve up`` gives it, after its KV has been filled to the budget.

    python -m bench.bench_replica_bound [--variants floor,135m-int8,135m-q4,0.47b_q8_0-int8,1.2b_q4_1-q4,...]
                                        [--adapter banking77@2.1.0] [--staggered] [--out bench/results/replica_bound.json]

Each variant is its own Serve application on one local Ray node, deployed, measured and deleted in turn (a fresh
replica process each). ``floor`` is a replica that loads nothing but finserve's app module (every finserve
replica imports it): Ray's worker and Serve's replica wrapper, the part no engine in a replica goes under. A model
variant ``<model>-<weights>`` starts the CPU engine on the embedded defaults (one thread, ``cpu.weights`` int8 or
q4) on the packaged SmolLM2-135M (``135m``: Q4_1 matrices, Q8_0 embedding) or a synthetic Llama written by
tests/serving/inference/synthetic_gguf.py (``0.47b_q8_0``, ``0.47b_q4_1``, ``1.2b_q4_1``: random weights, SmolLM2's
tokenizer; no GGUF of those sizes comes in a package here); answers once with the adapter and scores its intent
head (135M only: the shipped heads are SmolLM2's); fills the prefix cache to its cap with distinct RAG prompts (bench_engines' prompt under a
per-request session line, so no two share a block); then decodes ``max_batch_size`` such prompts at once (64
tokens each, or with ``--staggered`` 8, 16, ... 64, so rows leave the batch one by one as in real traffic).
``<model>-llamacpp`` runs ``generator.engine: llamacpp`` instead, with the same budget (512 positions per slot, a
256 MiB prompt cache); llama.cpp does not report how full its prompt cache is, so it gets 1.25x the prompts the cap
holds, and its keys and values are float16.

The KV budget is the prefix cache's cap plus ``max_batch_size`` requests of 512 positions (a ~300-token RAG
prompt, 64 answer tokens and the cache's 128-column growth). Memory is the replica's own /proc/self/status
(VmRSS after start, after the fill, after the batch, and VmHWM, its peak) and glibc's heap (mallinfo2: in use,
free but kept), and once more after ``malloc_trim`` (what the allocator kept of freed temporaries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import machine, write_result

PACKAGES = ("ray", "torch", "gguf", "tokenizers")
# <model>-<weights>: the packaged SmolLM2-135M (Q4_1 matrices, Q8_0 embedding), or a synthetic Llama (<size>_<qtype>:
# 0.47 B or 1.2 B parameters, Q8_0 or Q4_1 matrices); cpu.weights int8 or q4.
VARIANTS = (
    "floor",
    "135m-int8",
    "135m-q4",
    "0.47b_q8_0-int8",
    "0.47b_q4_1-int8",
    "0.47b_q4_1-q4",
    "1.2b_q4_1-q4",
    "135m-llamacpp",
    "0.47b_q8_0-llamacpp",
)
POSITIONS_PER_REQUEST = 512
ANSWER_TOKENS = 64


# The synthetic Llamas' shapes (synthetic_gguf.py's options; SmolLM2's vocabulary, 16 query / 4 key-value heads).
SHAPES = {"0.47b": [], "1.2b": ["--hidden", "2048", "--layers", "24", "--intermediate", "5632"]}


def synthetic(size: str, qtype: str) -> Path:
    """A synthetic Llama of ``size`` with ``qtype`` matrices, written once under data_dir()/cache/."""
    from bench.bench_large_gguf import ROOT, synthetic_gguf
    from finserve.serving.paths import data_dir

    if (size, qtype) == ("0.47b", "q8_0"):
        return synthetic_gguf()  # bench_large_gguf's file: the same bytes, written once
    path = data_dir() / "cache" / f"synthetic-llama-{size}-{qtype}.gguf"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.tmp")
        script = ROOT / "tests" / "serving" / "inference" / "synthetic_gguf.py"
        args = [str(tmp), "--qtype", qtype.upper(), *SHAPES[size]]
        subprocess.run([sys.executable, "-P", str(script), *args], check=True)
        tmp.replace(path)
    return path


def generator_config(variant: str) -> dict[str, Any]:
    model, weights = variant.split("-")
    model_file = None
    if model != "135m":
        size, qtype = model.split("_", 1)
        model_file = str(synthetic(size, qtype))
    config: dict[str, Any] = {"batch_wait_ms": 5, "max_new_tokens": ANSWER_TOKENS}
    if weights == "llamacpp":
        # The same KV budget as our engine's: 512 positions per slot, a 256 MiB prompt cache in host memory.
        llamacpp = {"threads": 1, "context_per_slot": POSITIONS_PER_REQUEST, "prompt_cache_mb": 256}
        if model_file:
            llamacpp["model_file"] = model_file
        return {**config, "engine": "llamacpp", "llamacpp": llamacpp}
    cpu: dict[str, Any] = {"num_threads": 1, "weights": weights}
    if model_file:
        cpu["model_file"] = model_file
    return {**config, "cpu": cpu}


def gguf_kv_bytes_per_token(path: Path, element_bytes: int) -> int:
    """Keys and values of one position over all layers, read from the GGUF's metadata."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")

    def field(name: str) -> int:
        return int(reader.fields[f"{arch}.{name}"].parts[-1][0])

    head_dim = field("embedding_length") // field("attention.head_count")
    return 2 * field("block_count") * field("attention.head_count_kv") * head_dim * element_bytes


def allocator() -> dict[str, float]:
    """glibc's heap in MiB: in use, free but kept (what a trim could return), and mmapped chunks."""
    import ctypes  # here, and the structure too: Ray pickles this by value into the replica

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
            + ("fordblks", "keepcost")
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    info = libc.mallinfo2()
    return {
        "heap_in_use_mib": round(info.uordblks / 2**20, 1),
        "heap_free_mib": round(info.fordblks / 2**20, 1),
        "mmapped_mib": round(info.hblkhd / 2**20, 1),
    }


def process_memory() -> dict[str, Any]:
    """This process's resident memory (/proc/self/status) and glibc's heap, in MiB."""
    out: dict[str, Any] = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return {**out, **allocator()}


def measured_class() -> type:
    """GeneratorDeployment with one more method; defined in a function so Ray pickles it by value."""
    from finserve.serving.app import GeneratorDeployment

    class MeasuredGenerator(GeneratorDeployment):
        async def memory(self) -> dict[str, Any]:
            out = process_memory()
            runner = getattr(self.engine, "runner", None)
            if runner is not None:
                await self.start()
                config = runner._model.config
                head_dim = (
                    getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
                )
                cache = runner.prefix_cache
                out["prefix_cache_bytes"] = 0 if cache is None else cache.nbytes
                out["prefix_cache_cap_bytes"] = runner.options.prefix_cache_mb << 20
                out["kv_bytes_per_token"] = (
                    2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 4
                )
                out["model_file_bytes"] = runner.source.stat().st_size if runner.source.is_file() else None
            gguf_file = getattr(self.engine, "_gguf", None)
            if gguf_file is not None:  # llama.cpp: its prompt cache's cap, float16 keys and values
                await self.start()
                out["prefix_cache_cap_bytes"] = self.engine.options.prompt_cache_mb << 20
                out["kv_bytes_per_token"] = gguf_kv_bytes_per_token(gguf_file, 2)
                out["model_file_bytes"] = gguf_file.stat().st_size
            return out

        async def trimmed(self) -> dict[str, Any]:
            from finserve.serving.inference.heap import trim_heap

            trim_heap()
            return await self.memory()

    return MeasuredGenerator


def floor_class() -> type:
    class Floor:
        """A replica that loads nothing: Ray's worker, Serve's replica wrapper, finserve's app module."""

        def __init__(self) -> None:
            import finserve.serving.app  # noqa: F401  (every finserve replica imports it: Ray finds classes there)

        async def memory(self) -> dict[str, Any]:
            return process_memory()

    return Floor


async def fill(handle: Any, adapter: Any, start: int) -> tuple[int, int]:
    """Distinct RAG prompts one after another until the prefix cache holds its cap; (requests, next nonce).
    llama.cpp does not say how full its prompt cache is: it gets 1.25x the prompts its cap holds."""
    from bench.bench_engines import rag_messages
    from finserve.serving.inference import GenerationRequest

    n = start
    needed = 400
    while True:
        req = GenerationRequest(messages=rag_messages(f"fill-{n}"), adapter=adapter, max_tokens=4)
        result = await handle.generate.remote(req)
        n += 1
        mem = await handle.memory.remote()
        cap = mem["prefix_cache_cap_bytes"]
        if "prefix_cache_bytes" not in mem:
            needed = min(needed, int(1.25 * cap / (result.prompt_tokens * mem["kv_bytes_per_token"])) + 1)
        elif mem["prefix_cache_bytes"] >= 0.97 * cap:
            return n - start, n
        if n - start >= needed:
            return n - start, n


async def one(variant: str, adapter_name: str, staggered: bool) -> dict[str, Any]:
    from ray import serve

    from finserve.contracts import AdapterRef
    from finserve.serving.inference import GenerationRequest

    if variant == "floor":
        app = serve.deployment(name="Generator", ray_actor_options={"num_cpus": 0})(floor_class()).bind()
        handle = serve.run(app, name=variant, route_prefix=None)
        return {"started": await handle.memory.remote()}
    config = generator_config(variant)
    from finserve.serving.config import DeploymentsConfig

    stage = (
        DeploymentsConfig().generator
    )  # the Generator's resources and concurrency cap as `finserve up` sets them
    deployment = serve.deployment(
        name="Generator",
        ray_actor_options={"num_cpus": stage.num_cpus},
        max_ongoing_requests=stage.max_ongoing_requests,
    )(measured_class())
    app = deployment.bind(config, {})
    handle = serve.run(app, name=variant, route_prefix=None)
    await handle.ready.remote()
    from finserve.serving.inference import GeneratorConfig

    row: dict[str, Any] = {
        "config": config,
        "max_batch_size": GeneratorConfig.model_validate(config).max_batch_size,
        "started": await handle.memory.remote(),
    }
    adapter = AdapterRef.base()
    if variant.startswith("135m"):
        adapter = AdapterRef.parse(adapter_name)
        from bench.bench_engines import rag_messages

        row["intent"] = str(
            await handle.head_scores.remote("How do I reset my card PIN?", adapter) is not None
        )
        req = GenerationRequest(messages=rag_messages(None), adapter=adapter, max_tokens=ANSWER_TOKENS)
        row["answer_tokens"] = (await handle.generate.remote(req)).completion_tokens
    row["fill_requests"], nonce = await fill(handle, adapter, 0)
    row["filled"] = await handle.memory.remote()
    from bench.bench_engines import rag_messages

    size = row["max_batch_size"]
    # Staggered: row i stops after (i + 1) / size of the answer tokens, so rows leave the batch one by one.
    lengths = [ANSWER_TOKENS * (i + 1) // size if staggered else ANSWER_TOKENS for i in range(size)]
    batch = [
        handle.generate.remote(
            GenerationRequest(messages=rag_messages(f"batch-{nonce + i}"), adapter=adapter, max_tokens=n)
        )
        for i, n in enumerate(lengths)
    ]
    row["batch_tokens"] = [r.completion_tokens for r in await asyncio.gather(*batch)]
    row["after_batch"] = await handle.memory.remote()
    row["trimmed"] = await handle.trimmed.remote()
    return row


def verdict(row: dict[str, Any]) -> dict[str, Any]:
    """The bound and the replica's peak against it, in MiB."""
    mem = row["after_batch"]
    kv_budget = (
        mem["prefix_cache_cap_bytes"]
        + row["max_batch_size"] * POSITIONS_PER_REQUEST * mem["kv_bytes_per_token"]
    )
    file_mib = mem["model_file_bytes"] / 2**20
    bound = 2 * file_mib + kv_budget / 2**20
    return {
        "file_mib": round(file_mib, 1),
        "kv_budget_mib": round(kv_budget / 2**20, 1),
        "bound_mib": round(bound, 1),
        "peak_mib": mem["VmHWM"],
        "peak_over_bound": round(mem["VmHWM"] / bound, 2),
        "prefix_cache_mib": round(mem["prefix_cache_bytes"] / 2**20, 1)
        if "prefix_cache_bytes" in mem
        else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray import serve

    from finserve.serving.ray_hardening import single_node_env

    os.environ.update(single_node_env())
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=tempfile.mkdtemp(prefix="fsray-bound-", dir="/tmp"),
    )
    rows: dict[str, Any] = {}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        for variant in args.variants.split(","):
            rows[variant] = await one(variant, args.adapter, args.staggered)
            serve.delete(variant)
            print(variant, json.dumps(rows[variant]), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--adapter", default="banking77@2.1.0")
    parser.add_argument("--port", type=int, default=19431)
    parser.add_argument(
        "--staggered",
        action="store_true",
        help="the batch's rows ask 8, 16, ... 64 tokens (they leave one by one)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    floor = rows.get("floor", {}).get("started", {}).get("VmRSS")
    summary = {name: {**verdict(row), "floor_mib": floor} for name, row in rows.items() if name != "floor"}
    payload = {
        "machine": machine(PACKAGES),
        "adapter": args.adapter,
        "staggered": args.staggered,
        "rows": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    write_result("replica_bound", payload, args.out)


if __name__ == "__main__":
    main()
