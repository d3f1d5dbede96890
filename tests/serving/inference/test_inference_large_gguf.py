"""The CPU engine on a model larger than the packaged 135M: a ~0.5 B-parameter Llama GGUF named by path.

No GGUF of that size comes in a package here (docs/inference.md), so the test writes one with random weights
(``synthetic_gguf.py``: Q8_0 matrices, SmolLM2's tokenizer metadata). The replica runs in a fresh process so
its resident memory is its own: it must load the file tensor by tensor into int8 (no float32 copy of any
Linear, the embedding kept in its Q8_0 blocks), answer greedy requests deterministically, alone and batched, and stay within 2x the file plus its
KV budget (the issue's bound; a check of the memory layout, not of speed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_gguf import LlamaShape, write_llama_gguf

from finserve.serving.inference.base_model import gguf_path
from finserve.serving.inference.cpu_kernels import load_kernels

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(load_kernels() is None, reason="no AVX2/FMA CPU or no compiled kernels here"),
]

SHAPE = LlamaShape()  # hidden 1024, 28 layers, 16/4 heads, 4096 FFN, 49,152 tokens: about 0.47 B parameters
PREFIX_CACHE_MB = 64
MAX_TOKENS = 12

REPLICA = r"""
import asyncio, json, sys
import torch
from finserve.serving.inference import ChatMessage, GenerationRequest, GeneratorConfig, build_engine
from finserve.serving.inference.fast_linear import Int8Linear

def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

def ask(question):
    return GenerationRequest(messages=[ChatMessage(role="user", content=question)], max_tokens=int(sys.argv[4]))

async def main():
    eng = build_engine(GeneratorConfig(registry=sys.argv[2], batch_wait_ms=100, max_batch_size=2,
                                       cpu={"model_file": sys.argv[1], "num_threads": 1,
                                            "prefix_cache_mb": int(sys.argv[3])}))
    await eng.start()
    loaded = status("VmRSS")
    alone = await eng.generate(ask("How do I reset my card PIN?"))
    again = await eng.generate(ask("How do I reset my card PIN?"))
    pair = await asyncio.gather(eng.generate(ask("How do I reset my card PIN?")), eng.generate(ask("What is an IBAN?")))
    model = eng.runner._model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    report = {
        "weights": eng.runner.weights, "forward": eng.runner.forward_path,
        "int8": sum(isinstance(m, Int8Linear) and m.weight is None for m in linears), "linears": len(linears),
        "float_params": sum(p.numel() for p in model.parameters()),
        "answers": [[r.text, r.completion_tokens] for r in (alone, again, *pair)],
        "batches": eng.batches_run,
        "rss_loaded": loaded, "rss_served": status("VmRSS"), "rss_peak": status("VmHWM"),
        "rss_anon": status("RssAnon"), "rss_file": status("RssFile"),
    }
    await eng.stop()
    return report

print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture(scope="module")
def big_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("large-gguf")
    return write_llama_gguf(folder / "synthetic-0.5b-q8_0.gguf", SHAPE, "Q8_0", tokenizer_from=gguf_path())


def kv_bytes(batch: int, tokens: int) -> int:
    """The lean KV cache of one batch: keys and values of every layer, float32, grown 128 columns at a time."""
    columns = -(-tokens // 128) * 128
    return 2 * SHAPE.layers * batch * SHAPE.kv_heads * columns * SHAPE.head_dim * 4


def test_a_half_billion_parameter_gguf_loads_by_path_and_serves_within_its_memory_bound(
    big_gguf: Path, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            REPLICA,
            str(big_gguf),
            str(tmp_path / "reg"),
            str(PREFIX_CACHE_MB),
            str(MAX_TOKENS),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["weights"], report["forward"]) == ("int8", "lean"), report
    # Every projection and the tied lm_head are int8 only, the embedding stays Q8_0: float32 is left for norms.
    assert report["int8"] == report["linears"] == SHAPE.layers * 7 + 1
    assert report["float_params"] == (2 * SHAPE.layers + 1) * SHAPE.hidden
    # Greedy: the same answer again, and the same inside a batch of two (which really ran as one batch).
    answers = report["answers"]
    assert answers[0] == answers[1] == answers[2] and answers[0][1] > 0, report
    assert report["batches"] == 3, report
    budget = 2 * big_gguf.stat().st_size + (PREFIX_CACHE_MB << 20) + kv_bytes(2, 400)
    assert report["rss_served"] <= budget, report
