"""The tensor-by-tensor GGUF loader on small Llama GGUFs: the same tensors as transformers' own GGUF load, the same
int8 weights as quantising that model afterwards, and clear refusals of files that do not fit the model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_gguf import LlamaShape, write_llama_gguf

from finserve.serving.inference.cpu_kernels import load_kernels, pack, q4_unpack
from finserve.serving.inference.fast_linear import (
    Int8Linear,
    Q4Linear,
    Q4Maker,
    int8_maker,
    pack_in_rows,
    quantize_linears,
)
from finserve.serving.inference.gguf_loader import GGUFEmbedding, load_gguf_model, open_gguf, read_config
from finserve.serving.inference.lean_forward import LeanLlama
from finserve.serving.inference.llama_model import LlamaForCausalLM

needs_kernels = pytest.mark.skipif(
    load_kernels() is None, reason="no AVX2/FMA CPU or no compiled kernels here"
)

TINY = LlamaShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, context=256)


@pytest.fixture(scope="module", params=["Q8_0", "Q4_1", "Q4_0"])
def tiny_gguf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # std 0.2: big enough that a wrong q/k row order or a missed tensor changes the logits visibly
    return write_llama_gguf(
        tmp_path_factory.mktemp("gguf") / f"tiny-{request.param}.gguf", TINY, request.param, std=0.2
    )


def transformers_load(path: Path) -> torch.nn.Module:
    """What transformers makes of the file: every tensor dequantised into one float32 state dict first."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval()


IDS = torch.tensor([[5, 17, 200, 3, 99, 42, 7, 128]])


def logits(model: torch.nn.Module) -> torch.Tensor:
    """The last position's logits through the lean forward (our Llama tree has no forward of its own)."""
    lean = LeanLlama(model)
    mask = torch.ones_like(IDS)
    with torch.inference_mode():
        return lean.forward(IDS, mask, torch.arange(IDS.shape[1]).unsqueeze(0), lean.new_cache())


ROUTES = pytest.mark.parametrize("transformers_modules", [False, True], ids=["our-tree", "transformers-tree"])


@ROUTES
def test_float32_load_equals_transformers_gguf_load(tiny_gguf: Path, transformers_modules: bool) -> None:
    ours = load_gguf_model(tiny_gguf, transformers_modules=transformers_modules)
    reference = transformers_load(tiny_gguf)
    assert (type(ours) is LlamaForCausalLM) is not transformers_modules
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(mine[name], tensor), name  # same dequantisation, same q/k rows: bit for bit
    assert ours.lm_head.weight is ours.model.embed_tokens.weight  # tied, as stored
    assert torch.equal(logits(ours), logits(reference))
    assert not any(p.is_meta for p in ours.parameters())


@needs_kernels
@ROUTES
def test_int8_load_packs_each_linear_as_quantising_the_loaded_model_does(
    tiny_gguf: Path, transformers_modules: bool
) -> None:
    kernel = load_kernels()
    ours = load_gguf_model(
        tiny_gguf, make_linear=int8_maker(kernel), transformers_modules=transformers_modules
    )
    reference = transformers_load(tiny_gguf)
    assert quantize_linears(reference, kernel) == 2 * 7 + 1  # seven projections a layer, and lm_head
    theirs = dict(reference.named_modules())
    packed = [(n, m) for n, m in ours.named_modules() if isinstance(m, Int8Linear)]
    assert len(packed) == 2 * 7 + 1
    for name, module in packed:
        assert module.weight is None  # int8 is the only copy
        assert torch.equal(module.qweight, theirs[name].qweight), name
        assert torch.equal(module._scales, theirs[name]._scales), name
    assert torch.equal(ours.model.embed_tokens.weight, reference.model.embed_tokens.weight)
    assert torch.equal(logits(ours), logits(reference))


@needs_kernels
def test_the_embedding_can_stay_in_its_blocks_and_looks_up_the_same_rows(tiny_gguf: Path) -> None:
    kernel = load_kernels()
    ours = load_gguf_model(tiny_gguf, make_linear=int8_maker(kernel), quantized_embedding=True)
    reference = transformers_load(tiny_gguf)
    quantize_linears(reference, kernel)
    embedding = ours.model.embed_tokens
    assert isinstance(embedding, GGUFEmbedding) and embedding.blocks.dtype == np.uint8
    assert embedding.blocks.size < TINY.vocab * TINY.hidden * 4 / 3  # Q8_0: 34 bytes / 32; Q4_1: 20 / 32
    assert mapped_from_the_file(embedding.blocks)  # not copied: only looked-up rows' pages become resident
    with pytest.raises(IndexError, match="token ids outside"):
        embedding(torch.tensor([[0, TINY.vocab]]))
    every_row = torch.arange(TINY.vocab).view(2, -1)
    assert torch.equal(embedding(every_row).view(TINY.vocab, -1), reference.model.embed_tokens.weight)
    assert torch.equal(ours.lm_head.qweight, reference.lm_head.qweight)  # packed from the same values
    assert [n for n, _ in ours.named_parameters() if "embed" in n] == []  # no float32 copy left
    assert torch.equal(logits(ours), logits(reference))


def greedy_logits(lean: LeanLlama, forced: list[int] | None, steps: int = 6) -> list[torch.Tensor]:
    """The prompt's and ``steps`` decode steps' logits (greedy, or the ``forced`` tokens) through ``lean``."""
    cache, mask, positions, ids, out = lean.new_cache(), torch.ones_like(IDS), torch.arange(8)[None], IDS, []
    with torch.inference_mode():
        for step in range(steps + 1):
            logits = lean.forward(ids, mask, positions, cache)
            out.append(logits)
            token = forced[step] if forced is not None else int(logits.argmax(-1))
            ids, mask = torch.tensor([[token]]), torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1
    return out


@needs_kernels
@ROUTES
def test_q4_load_keeps_the_file_s_4_bit_blocks_and_decodes_as_the_float_model(
    tiny_gguf: Path, transformers_modules: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """weights: q4: each Linear stored in Q4_0/Q4_1 blocks (the tied lm_head too, its embedding being in blocks)
    is a Q4Linear holding the file's values (q/k rows in transformers' order), with no float32 copy; decode
    steps give the logits of the float32 model of the same dequantized values. A Q8_0 file falls back to int8."""
    import gguf

    seen: list[str] = []
    stock = gguf.dequantize

    def spy(data: object, qtype: object) -> object:
        seen.append(qtype.name)  # type: ignore[attr-defined]
        return stock(data, qtype)

    kernel = load_kernels()
    with monkeypatch.context() as patch:
        patch.setattr(gguf, "dequantize", spy)
        ours = load_gguf_model(
            tiny_gguf,
            make_linear=Q4Maker(kernel),
            quantized_embedding=True,
            transformers_modules=transformers_modules,
        )
    assert set(seen) == {"F32"}  # no matrix went through float32 at load (int8 rows are made in C too)
    reference = transformers_load(tiny_gguf)
    theirs = dict(reference.named_modules())
    q4 = tiny_gguf.stem != "tiny-Q8_0"
    linears = [(n, m) for n, m in ours.named_modules() if isinstance(m, Q4Linear | Int8Linear)]
    assert len(linears) == 2 * 7 + 1
    assert not [n for n, _ in ours.named_parameters() if n.endswith("proj.weight") or n.startswith("lm_head")]
    for name, module in linears:
        assert isinstance(module, Q4Linear) is q4, name
        assert module.weight is None
        if q4:  # the same float32 values (q4_unpack: gguf's dequantization arithmetic)
            assert torch.equal(q4_unpack(module.qweight), theirs[name].weight), name
    if not q4:
        return
    expected = greedy_logits(LeanLlama(reference), None)
    forced = [int(logits.argmax(-1)) for logits in expected]
    got = greedy_logits(LeanLlama.with_kernels(ours), forced)
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert torch.allclose(a, b, rtol=0, atol=2e-5 * float(b.abs().max())), (
            step,
            float((a - b).abs().max()),
        )
    assert [int(x.argmax(-1)) for x in got] == forced


def mapped_from_the_file(array: np.ndarray) -> bool:
    """Whether ``array`` is a view of a memory map (following numpy's chain of bases)."""
    import mmap

    base = array
    while base is not None:
        if isinstance(base, mmap.mmap | np.memmap):
            return True
        base = getattr(base, "base", None)
    return False


def same_reader(ours: object, stock: object) -> None:
    """Every field (name, offset, parts' dtypes, shapes and bytes, data indices, types) and tensor alike."""
    import numpy as np

    assert list(ours.fields) == list(stock.fields)  # type: ignore[attr-defined]
    for key, theirs in stock.fields.items():  # type: ignore[attr-defined]
        mine = ours.fields[key]  # type: ignore[attr-defined]
        assert (mine.offset, mine.data, mine.types) == (theirs.offset, theirs.data, theirs.types), key
        assert len(mine.parts) == len(theirs.parts), key
        for a, b in zip(mine.parts, theirs.parts, strict=True):
            assert (a.dtype, a.shape, bytes(a)) == (b.dtype, b.shape, bytes(b)), key
    assert ours.data_offset == stock.data_offset  # type: ignore[attr-defined]
    for a, b in zip(ours.tensors, stock.tensors, strict=True):  # type: ignore[attr-defined]
        assert (a.name, a.tensor_type, a.data_offset, a.n_bytes) == (
            b.name,
            b.tensor_type,
            b.data_offset,
            b.n_bytes,
        )
        assert a.data.shape == b.data.shape and np.array_equal(a.data, b.data), a.name


def test_the_faster_reader_reads_what_the_gguf_package_s_reader_reads(tiny_gguf: Path) -> None:
    from gguf import GGUFReader

    from finserve.serving.inference.base_model import gguf_path

    for path in (tiny_gguf, gguf_path()):  # SmolLM2's: a 49k-token vocabulary, its merges and token types
        same_reader(open_gguf(path), GGUFReader(path))


def test_the_config_read_from_the_parsed_file_is_transformers_own(tiny_gguf: Path) -> None:
    import gguf

    from finserve.serving.inference.base_model import gguf_path

    stock = gguf.GGUFReader, gguf.get_tensor_name_map
    for path in (tiny_gguf, gguf_path()):
        assert read_config(path, open_gguf(path)).to_dict() == read_config(path).to_dict()
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == stock  # put back after use


@needs_kernels
def test_block_linears_go_to_int8_without_a_float32_copy(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With int8-only weights and the embedding kept in blocks, nothing in blocks is dequantized at load
    (only the F32 norms pass through the numpy function), and the layers are what the float32 route packs."""
    import gguf

    seen: list[str] = []
    stock = gguf.dequantize

    def spy(data: object, qtype: object) -> object:
        seen.append(qtype.name)  # type: ignore[attr-defined]
        return stock(data, qtype)

    monkeypatch.setattr(gguf, "dequantize", spy)
    kernel = load_kernels()
    ours = load_gguf_model(tiny_gguf, make_linear=int8_maker(kernel), quantized_embedding=True)
    assert set(seen) == {"F32"} and len(seen) == 2 * TINY.layers + 1
    float_route = load_gguf_model(tiny_gguf, make_linear=int8_maker(kernel, keep_float=True))
    for name, module in float_route.named_modules():
        if isinstance(module, Int8Linear):
            mine = ours.get_submodule(name)
            assert torch.equal(mine.qweight, module.qweight) and torch.equal(mine._scales, module._scales), (
                name
            )


def test_a_file_without_a_tensor_the_model_needs_is_refused_by_name(tiny_gguf: Path) -> None:
    config = read_config(tiny_gguf)
    config.num_hidden_layers = 3
    with pytest.raises(ValueError, match=r"no tensor in the file for model\.layers\.2\."):
        load_gguf_model(tiny_gguf, config=config)


def test_a_tensor_of_the_wrong_shape_is_refused_by_name(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "wide.gguf", dataclasses.replace(TINY, intermediate=192), "Q8_0")
    config = read_config(path)
    config.intermediate_size = 128
    with pytest.raises(ValueError, match=r"mlp\.\w+_proj\.weight has shape"):
        load_gguf_model(path, config=config)


def test_packing_in_row_slices_gives_the_same_bytes_and_scales() -> None:
    weight = (
        torch.randn(72, 48, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.1, 3, 72)[:, None]
    )
    whole = pack(weight)
    for rows in (8, 16, 20, 64, 4096):  # 20 rounds down to whole 8-row blocks
        sliced = pack_in_rows(weight, rows)
        assert torch.equal(sliced[0], whole[0]) and torch.equal(sliced[1], whole[1]), rows


QUESTIONS = [
    "How do I reset my card PIN?",
    "My transfer has not arrived yet. What should I do?",
    "Explain what an IBAN is in one sentence.",
]


@pytest.mark.slow
@needs_kernels
async def test_smollm2_from_its_gguf_serves_what_the_converted_folder_served(
    model_dir: Path, lora_registry: object
) -> None:
    """The engine's default load (the packaged Q4_1 GGUF, tensor by tensor) against the float32 folder converted
    from it (the old default): the same int8 bytes, so the same greedy tokens, with and without a LoRA adapter."""
    from finserve.contracts import AdapterRef
    from finserve.serving.inference import ChatMessage, GenerationRequest, GeneratorConfig, build_engine

    common = dict(registry=lora_registry.root, max_new_tokens=32, batch_wait_ms=0)  # type: ignore[attr-defined]
    from_gguf = build_engine(GeneratorConfig(**common))
    from_folder = build_engine(GeneratorConfig(model_dir=str(model_dir), **common))
    await from_gguf.start()
    await from_folder.start()
    try:
        assert from_gguf.runner.source.suffix == ".gguf" and from_folder.runner.source == model_dir
        new, old = (
            dict(from_gguf.runner._model.named_modules()),
            dict(from_folder.runner._model.named_modules()),
        )
        packed = [name for name, m in old.items() if isinstance(m, Int8Linear)]
        assert len(packed) == 30 * 7 + 1 and all(isinstance(new[n], Int8Linear) for n in packed)
        for name in packed:
            assert torch.equal(new[name].qweight, old[name].qweight) and torch.equal(
                new[name]._scales, old[name]._scales
            )
        new_params = dict(from_gguf.runner._model.named_parameters())
        for name, tensor in from_folder.runner._model.named_parameters():
            if name == "model.embed_tokens.weight":  # kept in its Q8_0 blocks: every row looked up instead
                rows = new["model.embed_tokens"](torch.arange(tensor.shape[0]).unsqueeze(0))[0]
                assert isinstance(new["model.embed_tokens"], GGUFEmbedding) and torch.equal(rows, tensor)
            else:
                assert torch.equal(new_params[name], tensor), name
        assert from_gguf.runner.eos_ids == from_folder.runner.eos_ids
        assert from_gguf.runner.pad_id == from_folder.runner.pad_id
        texts: dict[AdapterRef, list[str]] = {}
        for adapter in (AdapterRef.base(), AdapterRef.parse("tiny@1.0.0")):
            for question in QUESTIONS:
                req = GenerationRequest(
                    messages=[ChatMessage(role="user", content=question)], adapter=adapter
                )
                a, b = await from_gguf.generate(req), await from_folder.generate(req)
                assert (a.text, a.completion_tokens, a.prompt_tokens) == (
                    b.text,
                    b.completion_tokens,
                    b.prompt_tokens,
                )
                assert a.completion_tokens > 5
                texts.setdefault(adapter, []).append(a.text)
        assert texts[AdapterRef.base()] != texts[AdapterRef.parse("tiny@1.0.0")]  # the adapter did apply
    finally:
        await from_gguf.stop()
        await from_folder.stop()


@needs_kernels
def test_the_model_runner_s_q4_smollm2_decodes_as_the_float_model_of_the_file_s_values() -> None:
    """``weights: q4`` on the packaged SmolLM2 GGUF: its 210 Q4_1 matrices kept as Q4Linear, the lm_head (tied to a
    Q8_0 embedding) int8 rows; greedy decode steps through the lean forward with the C kernels give the logits of
    the float32 model of the same dequantized values (with that same int8 lm_head) to float32 rounding."""
    from finserve.serving.inference import CPUOptions
    from finserve.serving.inference.base_model import gguf_path
    from finserve.serving.inference.model_runner import ModelRunner

    runner = ModelRunner(gguf_path(), CPUOptions(weights="q4", prefix_cache_mb=0, num_threads=1))
    runner.load()
    model = runner._model
    assert runner.weights == "q4" and runner._lean is not None
    kinds = [type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert kinds.count("Q4Linear") == 30 * 7 and kinds.count("Int8Linear") == 1
    assert isinstance(model.lm_head, Int8Linear) and isinstance(model.model.embed_tokens, GGUFEmbedding)
    reference = load_gguf_model(gguf_path())  # float32, the same dequantization and q/k rows
    layer = model.model.layers[3].self_attn.q_proj
    assert torch.equal(q4_unpack(layer.qweight), reference.model.layers[3].self_attn.q_proj.weight)
    reference.lm_head = model.lm_head  # the same int8 output rows on both sides
    expected = greedy_logits(LeanLlama(reference), None, steps=4)
    forced = [int(logits.argmax(-1)) for logits in expected]
    got = greedy_logits(runner._lean, forced, steps=4)
    assert [p is not None for p in runner._lean._programs.values()] == [True]  # the one-call C step, kind q4
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert torch.allclose(a, b, rtol=0, atol=2e-5 * float(b.abs().max())), (
            step,
            float((a - b).abs().max()),
        )
    assert [int(x.argmax(-1)) for x in got] == forced


@needs_kernels
def test_a_q4_0_tensor_whose_offset_overflows_float16_is_kept_as_int8_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The q4 layout stores Q4_0's -8 d as a float16: a block scale past 65504 / 8 cannot be held, and that tensor
    (only that one) becomes int8 rows, with a warning naming it; the others stay 4-bit."""
    import logging
    from types import SimpleNamespace

    from gguf import GGMLQuantizationType, dequantize, quantize

    from finserve.serving.inference import gguf_loader

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 64)).astype(np.float32)
    blocks = quantize(weight, GGMLQuantizationType.Q4_0)
    huge = blocks.copy()
    huge[3, :2] = np.array([9000.0], np.float16).view(np.uint8)
    maker = Q4Maker(load_kernels())
    linear = torch.nn.Linear(64, 16, bias=False, device="meta")
    kept = gguf_loader._linear_of(
        linear, SimpleNamespace(data=blocks, tensor_type=2, name="fine"), maker, None
    )
    assert isinstance(kept, Q4Linear)
    assert torch.equal(q4_unpack(kept.qweight), torch.from_numpy(np.array(dequantize(blocks, 2), np.float32)))
    with caplog.at_level(logging.WARNING, logger=gguf_loader.__name__):
        fallback = gguf_loader._linear_of(
            linear, SimpleNamespace(data=huge, tensor_type=2, name="blk.0.huge"), maker, None
        )
    assert isinstance(fallback, Int8Linear) and fallback.weight is None
    assert "blk.0.huge" in caplog.text and "int8 rows" in caplog.text
    order = torch.arange(15, -1, -1)
    moved = gguf_loader._linear_of(
        linear, SimpleNamespace(data=blocks, tensor_type=2, name="fine"), maker, order
    )
    assert torch.equal(q4_unpack(moved.qweight), q4_unpack(kept.qweight)[order])  # whole rows, as ordered
