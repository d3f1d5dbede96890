"""PEFT LoRA -> GGUF LoRA: the metadata and tensors llama.cpp's adapter loader reads, from the shipped adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from finserve.serving.inference.base_model import gguf_path
from finserve.serving.inference.lora_gguf import (
    BaseShape,
    LoraConversionError,
    base_shape,
    convert_peft_to_gguf,
    permute_rows,
)

SHIPPED = Path(__file__).resolve().parents[3] / "data" / "adapters" / "banking77" / "2.1.0"


def test_base_shape_is_read_from_the_gguf_metadata() -> None:
    assert base_shape(gguf_path()) == BaseShape(
        architecture="llama", block_count=30, head_count=9, head_count_kv=3
    )


def test_permute_rows_interleaves_the_halves_of_each_head() -> None:
    rows = np.arange(16, dtype=np.float32).reshape(16, 1)
    out = permute_rows(rows, n_head=2)[:, 0].tolist()
    # per head of 8 rows: first half [0..3] and second half [4..7] interleaved
    assert out == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


def test_shipped_adapter_converts_to_a_gguf_lora(tmp_path: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    out = tmp_path / "adapter.gguf"
    pairs = convert_peft_to_gguf(SHIPPED, out, base_shape(gguf_path()))
    assert pairs == 12 * 7  # layers 18-29, seven projections each

    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(32.0)
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * pairs
    assert {n.split(".")[1] for n in tensors} == {str(i) for i in range(18, 30)}
    peft = load_file(str(SHIPPED / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.18"
    # numpy shapes: lora_a is (rank, in), lora_b is (out, rank), as llama.cpp's loader checks them
    a = np.asarray(tensors["blk.18.ffn_down.weight.lora_a"].data)
    b = np.asarray(tensors["blk.18.ffn_down.weight.lora_b"].data)
    assert a.shape == (16, 1536) and b.shape == (576, 16)
    np.testing.assert_array_equal(a, peft[f"{prefix}.mlp.down_proj.lora_A.weight"])
    np.testing.assert_array_equal(b, peft[f"{prefix}.mlp.down_proj.lora_B.weight"])
    # v is stored as is; q and k rows follow the base GGUF's rope permutation (9 query heads, 3 key heads)
    np.testing.assert_array_equal(
        np.asarray(tensors["blk.18.attn_v.weight.lora_b"].data),
        peft[f"{prefix}.self_attn.v_proj.lora_B.weight"],
    )
    np.testing.assert_array_equal(
        np.asarray(tensors["blk.18.attn_q.weight.lora_b"].data),
        permute_rows(peft[f"{prefix}.self_attn.q_proj.lora_B.weight"], 9),
    )
    np.testing.assert_array_equal(
        np.asarray(tensors["blk.18.attn_k.weight.lora_b"].data),
        permute_rows(peft[f"{prefix}.self_attn.k_proj.lora_B.weight"], 3),
    )
    assert not (
        np.asarray(tensors["blk.18.attn_q.weight.lora_b"].data)
        == peft[f"{prefix}.self_attn.q_proj.lora_B.weight"]
    ).all()


@pytest.mark.parametrize(
    "change",
    [
        {"use_dora": True},
        {"use_rslora": True},
        {"bias": "all"},
        {"alpha_pattern": {"q_proj": 8}},
        {"peft_type": "IA3"},
    ],
)
def test_adapters_gguf_cannot_express_are_refused(tmp_path: Path, change: dict) -> None:
    folder = tmp_path / "peft"
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("intent_*", "*.md"))
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(LoraConversionError):
        convert_peft_to_gguf(folder, tmp_path / "out.gguf", base_shape(gguf_path()))
    assert not (tmp_path / "out.gguf").exists()
