"""Our Llama module tree from a GGUF's metadata: the shape transformers reads from the same file, the rows
transformers' tensor processor gives, what it declines (to transformers' loader), and a replica's load
that imports neither transformers nor PEFT."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_gguf import LlamaShape, write_llama_gguf

from finserve.serving.inference import llama_model
from finserve.serving.inference.base_model import gguf_path
from finserve.serving.inference.gguf_loader import load_gguf_model, open_gguf, read_config
from finserve.serving.inference.lean_forward import LeanLlama

TINY = LlamaShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, context=256)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", TINY, "Q8_0", std=0.2)


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_the_config_is_the_shape_transformers_reads(which: str, tiny: Path) -> None:
    path = tiny if which == "tiny" else gguf_path()
    ours, theirs = llama_model.config_from_gguf(open_gguf(path)), read_config(path)
    for attribute in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "tie_word_embeddings",
    ):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.rms_norm_eps == pytest.approx(theirs.rms_norm_eps)
    assert ours.rope_theta == theirs.rope_parameters["rope_theta"]
    if which == "smollm2":
        assert (ours.eos_token_id, ours.bos_token_id, ours.pad_token_id) == (2, 1, 2)


def test_query_and_key_rows_go_back_where_transformers_puts_them() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    config = llama_model.LlamaConfig(
        vocab_size=8,
        hidden_size=96,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-5,
        max_position_embeddings=8,
        tie_word_embeddings=True,
    )
    processor = LlamaTensorProcessor(config={"num_attention_heads": 6, "num_key_value_heads": 2})
    for name, rows in (("blk.0.attn_q.weight", 96), ("blk.0.attn_k.weight", 32)):
        numbers = np.arange(rows).reshape(rows, 1)
        want = processor.process(weights=numbers, name=name, tensor_key_mapping={}, parsed_parameters={})
        assert np.array_equal(numbers[llama_model.rope_row_order(name, rows, config)], want.weights), name
    assert llama_model.rope_row_order("blk.0.attn_v.weight", 32, config) is None


def test_linear_rope_scaling_stretches_positions(tmp_path: Path) -> None:
    scaled = write_llama_gguf(tmp_path / "linear.gguf", TINY, "Q8_0", std=0.2, rope_scaling=("linear", 4.0))
    model = load_gguf_model(scaled)
    assert type(model) is llama_model.LlamaForCausalLM
    plain = llama_model.RotaryEmbedding(dataclasses.replace(model.config, rope_linear_factor=1.0))
    probe = torch.zeros(1)
    cos4, _ = model.model.rotary_emb(probe, torch.tensor([[8]]))
    cos1, _ = plain(probe, torch.tensor([[2]]))
    assert torch.allclose(cos4, cos1)  # position 8 at factor 4 is position 2 unscaled


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"rope_scaling": ("yarn", 4.0)}, "rope scaling 'yarn'"),
        ({"extra_tensors": ("rope_freqs.weight",)}, "rope_freqs.weight"),
    ],
)
def test_what_the_tree_does_not_describe_goes_to_transformers(
    tmp_path: Path, kwargs: dict, reason: str
) -> None:
    path = write_llama_gguf(tmp_path / "other.gguf", TINY, "Q8_0", **kwargs)
    assert reason in (llama_model.unbuildable_reason(open_gguf(path)) or "")
    if "rope_scaling" in kwargs:  # transformers builds it (its config ignores llama's rope scaling metadata)
        assert type(load_gguf_model(path)).__module__.startswith("transformers.")


def test_the_tree_runs_the_same_logits_as_transformers_modules(tiny: Path) -> None:
    ours, theirs = load_gguf_model(tiny), load_gguf_model(tiny, transformers_modules=True)
    ids = torch.tensor([[5, 17, 200, 3], [9, 9, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        a = LeanLlama(ours).forward(ids, mask, positions, LeanLlama(ours).new_cache())
        b = LeanLlama(theirs).forward(ids, mask, positions, LeanLlama(theirs).new_cache())
    assert torch.equal(a, b)


REPLICA = r"""
import json, sys
from pathlib import Path
import torch
from finserve.serving.inference.base_model import gguf_path
from finserve.serving.inference.config import CPUOptions
from finserve.serving.inference.model_runner import ModelRunner

runner = ModelRunner(gguf_path(), CPUOptions(num_threads=1))
runner.load()
runner.load_adapter("banking77", Path(sys.argv[1]))
prefill = runner.prefill([[1, 2, 3, 4]], ["banking77"])
print(json.dumps({"model": type(runner._model).__module__, "forward": runner.forward_path, "adapters": runner.loaded_adapters(),
                  "logits": list(prefill.logits.shape),
                  "imported": sorted(m for m in ("transformers", "peft", "accelerate", "torch._dynamo", "sympy") if m in sys.modules)}))
"""


def test_the_replica_loads_smollm2_and_an_adapter_without_transformers_peft_or_dynamo() -> None:
    """The CPU engine's replica in a fresh interpreter: the packaged GGUF into our tree, the shipped banking77
    adapter attached, one prefill. Importing transformers' modeling, PEFT or torch._dynamo would cost ~150 MB."""
    adapter = Path(__file__).resolve().parents[3] / "data" / "adapters" / "banking77" / "2.1.0"
    proc = subprocess.run(
        [sys.executable, "-P", "-c", REPLICA, str(adapter)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "model": "finserve.serving.inference.llama_model",
        "forward": "lean",
        "adapters": ["banking77"],
        "logits": [1, 49152],
        "imported": [],
    }
