"""The one-call decode step (serving/inference/decode_step.py) against the per-operation path it replaces.

A tiny Llama (transformers' class, random weights) with int8 projections: the real C kernels, no model file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_llama

from finserve.serving.inference import decode_step
from finserve.serving.inference.adapter_files import adapter_folder
from finserve.serving.inference.cpu_kernels import load_kernels, pack
from finserve.serving.inference.decode_step import LayerWeights, LoraRun, Projection, Shape, build_program
from finserve.serving.inference.fast_linear import quantize_linears
from finserve.serving.inference.lean_forward import LeanLlama
from finserve.serving.inference.lora import Routing, attach, read_adapter

KERNELS = load_kernels()
pytestmark = pytest.mark.skipif(KERNELS is None, reason="no C kernels on this machine")
SHAPE = Shape(hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=128)


def int8_llama() -> torch.nn.Module:
    model = tiny_llama()
    assert quantize_linears(model, KERNELS) == 15  # 7 per layer and the lm_head
    return model


def with_adapters(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Two PEFT adapters with random non-zero weights (rank 4 on q/v/down, saved by PEFT) attached as ``one``
    and ``two`` to ``model`` (int8 projections kept underneath)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
    peft = get_peft_model(tiny_llama(), config, adapter_name="one")
    peft.add_adapter("two", config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft.save_pretrained(str(folder), selected_adapters=["one", "two"])
    for name in ("one", "two"):
        attach(model, Routing(), name, read_adapter(adapter_folder(folder / name)))
    return model


def steps(
    lean: LeanLlama, rows: list[str | None] | None, batch: int = 3, count: int = 4
) -> list[torch.Tensor]:
    """Logits of a left-padded prompt batch and ``count`` decode steps fed their own argmax."""
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 96, (batch, 6), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # row 0 is two tokens shorter: its padding must stay masked in every step
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache, out = lean.new_cache(), []
    with torch.inference_mode():
        logits = lean.forward(ids, mask, positions, cache, rows=rows)
        for _ in range(count):
            out.append(logits)
            token = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], 1)
            positions = positions[:, -1:] + 1
            logits = lean.forward(token, mask, positions, cache, rows=rows)
        out.append(logits)
    return out


def test_the_base_model_gives_the_per_call_logits_bit_for_bit() -> None:
    model = int8_llama()
    fused, per_call = LeanLlama(model, KERNELS), LeanLlama(model, KERNELS, one_call=False)
    got, want = steps(fused, None), steps(per_call, None)
    assert len(fused._programs) == 1 and next(iter(fused._programs.values())) is not None  # the C step ran
    assert not per_call._programs
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_lora_runs_match_the_per_call_path_and_a_row_is_the_same_in_any_batch(tmp_path: Path) -> None:
    model = with_adapters(int8_llama(), tmp_path)
    fused, per_call = LeanLlama(model, KERNELS), LeanLlama(model, KERNELS, one_call=False)
    base = steps(fused, [None, None, None])
    for rows in (["one", "one", "one"], ["one", None, "two"], ["two", "two", "one"]):
        got, want = steps(fused, rows), steps(per_call, rows)
        for g, w in zip(got, want, strict=True):
            assert torch.allclose(g, w, atol=1e-5, rtol=1e-5), (rows, float((g - w).abs().max()))
        assert not torch.allclose(got[-1][1], base[-1][1], atol=1e-3) or rows[1] is None  # LoRA is applied
    # Decode steps only (prefill is torch's): the same step of row 2 through "two", alone or beside others.
    alone = steps(fused, ["two"] * 3)
    mixed = steps(fused, ["one", None, "two"])
    for a, m in zip(alone[1:], mixed[1:], strict=True):
        assert torch.equal(a[2], m[2])


def test_programs_follow_adapters_attached_after_they_were_built(tmp_path: Path) -> None:
    model = int8_llama()
    lean = LeanLlama(model, KERNELS)
    before = steps(lean, None)
    with_adapters(model, tmp_path)
    lean.adapters_changed()  # what ModelRunner calls after attach / detach
    after = steps(lean, ["one"] * 3)
    assert not torch.allclose(before[-1], after[-1], atol=1e-3)
    assert after[-1].shape == before[-1].shape


def test_a_module_the_step_cannot_run_keeps_the_per_call_path() -> None:
    model = int8_llama()
    seen: list[int] = []
    model.model.layers[1].mlp.up_proj.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    lean = LeanLlama(model, KERNELS)
    want = steps(LeanLlama(model, KERNELS, one_call=False), None)
    seen.clear()
    got = steps(lean, None)
    assert all(p is None for p in lean._programs.values())
    assert len(seen) == 5  # the hook ran at the prefill and every decode step
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    plain = tiny_llama()  # float32 projections: not int8, so no program either
    lean = LeanLlama(plain, KERNELS)
    steps(lean, None, count=1)
    assert list(lean._programs.values()) == [None]


def layer(**changes: object) -> LayerWeights:
    projections = {}
    for name in decode_step.PROJECTIONS:
        out_f, in_f = SHAPE.io(name)
        q, s = pack(torch.randn(out_f, in_f))
        projections[name] = Projection(q, s)
    projections.update(changes)  # type: ignore[arg-type]
    return LayerWeights(torch.ones(64), 1e-5, torch.ones(64), 1e-5, projections)


def test_build_program_refuses_what_the_c_step_would_read_out_of_bounds() -> None:
    q, s = pack(torch.randn(64, 64))
    assert build_program([layer()], SHAPE, 2).count == 1
    with pytest.raises(ValueError, match="layer 0 k weight"):
        build_program([layer(k=Projection(q, s))], SHAPE, 2)  # 64 outputs where k has 2 x 16
    gate_q, gate_s = pack(torch.randn(128, 64))
    with pytest.raises(ValueError, match="gate scales"):
        build_program([layer(gate=Projection(gate_q, gate_s[:64]))], SHAPE, 2)
    lora = LoraRun(0, 3, torch.randn(4, 64), torch.randn(4, 128), 2.0)
    with pytest.raises(ValueError, match="outside a batch of 2"):
        build_program([layer(gate=Projection(gate_q, gate_s, None, (lora,)))], SHAPE, 2)
    wide = LoraRun(0, 1, torch.randn(300, 64), torch.randn(300, 128), 2.0)
    with pytest.raises(ValueError, match="rank 300"):
        build_program([layer(gate=Projection(gate_q, gate_s, None, (wide,)))], SHAPE, 2)
    strided = LoraRun(0, 1, torch.randn(64, 4).t(), torch.randn(4, 128), 2.0)
    with pytest.raises(ValueError, match="non-contiguous"):
        build_program([layer(gate=Projection(gate_q, gate_s, None, (strided,)))], SHAPE, 2)
    with pytest.raises(ValueError, match="lacks projections"):
        build_program([LayerWeights(torch.ones(64), 1e-5, torch.ones(64), 1e-5, {})], SHAPE, 2)
    with pytest.raises(ValueError, match="in_norm"):
        build_program([dataclasses.replace(layer(), in_norm=torch.ones(32))], SHAPE, 2)


def test_run_refuses_a_cache_or_step_of_the_wrong_size() -> None:
    assert KERNELS is not None
    program = build_program([layer()], SHAPE, 2)
    keys = torch.zeros(1, 2, 2, 8, 16)
    cos = torch.ones(32, 16)
    args = dict(
        final_norm=torch.ones(64), final_eps=1e-5, cos=cos, signed_sin=cos, column=3, valid=None, scale=0.25
    )
    hidden, positions = torch.randn(2, 1, 64), torch.tensor([3, 3])
    out = decode_step.run(
        KERNELS, program, hidden, keys=keys, values=keys.clone(), positions=positions, **args
    )
    assert out.shape == (2, 1, 64) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="cache"):
        decode_step.run(
            KERNELS,
            program,
            hidden,
            keys=torch.zeros(1, 3, 2, 8, 16),
            values=keys,
            positions=positions,
            **args,
        )
    with pytest.raises(ValueError, match="column"):
        decode_step.run(
            KERNELS, program, hidden, keys=keys, values=keys, positions=positions, **{**args, "column": 8}
        )
    with pytest.raises(ValueError, match="valid"):
        decode_step.run(
            KERNELS,
            program,
            hidden,
            keys=keys,
            values=keys,
            positions=positions,
            **{**args, "valid": torch.ones(2, 3, dtype=torch.uint8)},
        )
    with pytest.raises(ValueError, match="hidden"):
        decode_step.run(KERNELS, program, hidden[:1], keys=keys, values=keys, positions=positions, **args)


def test_lora_matrices_the_c_step_cannot_read_as_they_are_keep_the_per_call_path(tmp_path: Path) -> None:
    model = with_adapters(int8_llama(), tmp_path)
    want = steps(LeanLlama(model, KERNELS), ["one"] * 3)
    down = model.model.layers[0].mlp.down_proj
    down.lora_B_t["one"] = down.lora_B_t["one"].t().contiguous().t()  # the same values, column-major
    lean = LeanLlama(model, KERNELS)
    got = steps(lean, ["one"] * 3)
    assert list(lean._programs.values()) == [None]
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-5)


def q4_llama() -> torch.nn.Module:
    """The tiny Llama with every projection a Q4Linear of its weights' GGUF Q4_1 blocks (the lm_head int8)."""
    import numpy as np
    from gguf import GGMLQuantizationType, quantize

    from finserve.serving.inference.fast_linear import Q4Maker

    model = tiny_llama()
    maker = Q4Maker(KERNELS)
    for name, module in list(model.named_modules()):
        if type(module) is torch.nn.Linear and name.endswith("proj"):
            blocks = quantize(module.weight.detach().numpy().astype(np.float32), GGMLQuantizationType.Q4_1)
            parent, _, child = name.rpartition(".")
            q4 = maker.from_blocks(module, KERNELS.q4_pack(blocks, 3, module.in_features))
            setattr(model.get_submodule(parent), child, q4)
    assert quantize_linears(model, KERNELS) == 1  # the lm_head
    return model


def test_q4_projections_run_in_the_one_call_step_with_the_per_call_bits(tmp_path: Path) -> None:
    model = q4_llama()
    fused, per_call = LeanLlama(model, KERNELS), LeanLlama(model, KERNELS, one_call=False)
    got, want = steps(fused, None), steps(per_call, None)
    assert next(iter(fused._programs.values())) is not None  # the C step ran, with kind-1 projections
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    with_adapters(model, tmp_path)
    fused.adapters_changed()
    per_call.adapters_changed()
    for g, w in zip(steps(fused, ["one", None, "two"]), steps(per_call, ["one", None, "two"]), strict=True):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-5)


def test_build_program_refuses_q4_blocks_of_the_wrong_size_or_type() -> None:
    gate_q, _ = pack(torch.randn(128, 64))
    blocks = torch.zeros(128 // 8, 64 // 32, 160, dtype=torch.uint8)
    assert build_program([layer(gate=Projection(blocks, None))], SHAPE, 2).layers[0].gate.kind == 1
    with pytest.raises(ValueError, match="gate q4 weight"):
        build_program([layer(gate=Projection(gate_q, None))], SHAPE, 2)  # int8 rows read as blocks
    with pytest.raises(ValueError, match="gate q4 weight"):
        build_program([layer(gate=Projection(blocks[:8], None))], SHAPE, 2)
