"""The lean forward on the real SmolLM2 weights (same logits as transformers, LoRA routing, int8 agreement),
and on a tiny random Llama for adapter routing, dtypes and refused inputs."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny_models import tiny_llama

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.inference.adapter_files import adapter_folder
from finserve.serving.inference.config import CPUOptions
from finserve.serving.inference.cpu_kernels import load_kernels
from finserve.serving.inference.layout import left_pad
from finserve.serving.inference.lean_forward import KVCache, LeanLlama, unsupported_reason
from finserve.serving.inference.lora import Routing, attach, read_adapter
from finserve.serving.inference.model_runner import ModelRunner

PROMPTS = [
    "How do I reset my card PIN?",
    "My transfer has not arrived yet. What should I do?",
    "Explain what an IBAN is in one sentence.",
    "Why was my card declined at the shop?",
    "What is the capital of France?",
    "Can I change the currency of my savings account?",
]


@pytest.fixture(scope="module")
def base(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(model_dir))


def encode(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for p in prompts
    ]
    return left_pad(ids, tokenizer.pad_token_id)


def transformers_steps(model, ids, mask, positions, steps: int, forced: list[torch.Tensor] | None = None):
    """Logits of the prompt and of ``steps`` decode steps through model.forward (greedy unless forced)."""
    from transformers import DynamicCache

    cache, out = DynamicCache(), []
    with torch.inference_mode():
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        for i in range(steps):
            out.append(logits)
            token = forced[i] if forced is not None else logits.argmax(-1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            logits = model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
    return out


def lean_steps(
    lean: LeanLlama, ids, mask, positions, forced: list[torch.Tensor], cache: KVCache | None = None, **route
):
    cache = cache or lean.new_cache()
    out = []
    with torch.inference_mode():
        logits = lean.forward(ids, mask, positions, cache, **route)
        for token in forced:
            out.append(logits)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            logits = lean.forward(token[:, None], mask, positions, cache, **route)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kernels", [False, True], ids=["torch-ops", "c-kernels"])
def test_lean_logits_match_transformers_with_left_padding(base, kernels: bool) -> None:
    if kernels and load_kernels() is None:
        pytest.skip("no C kernels on this machine")
    model, tokenizer = base
    ids, mask, positions = encode(tokenizer, PROMPTS[:3])
    assert bool((mask == 0).any())  # the rows really are padded
    want = transformers_steps(model, ids, mask, positions, steps=6)
    forced = [w.argmax(-1) for w in want]
    lean = LeanLlama(model, load_kernels() if kernels else None)
    got = lean_steps(lean, ids, mask, positions, forced)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=2e-4, rtol=1e-4), float((g - w).abs().max())
        assert torch.equal(g.argmax(-1), w.argmax(-1))


@pytest.mark.slow
def test_cache_grows_past_its_capacity_and_drops_finished_rows(base) -> None:
    model, tokenizer = base
    lean = LeanLlama(model, load_kernels())
    ids, mask, positions = encode(tokenizer, PROMPTS[:2])
    forced = [torch.tensor([28, 29])] * 5
    small = KVCache(len(model.model.layers), lean.kv_heads, lean.head_dim, torch.float32, grow=2)
    grown = lean_steps(lean, ids, mask, positions, forced, cache=small)
    roomy = lean_steps(lean, ids, mask, positions, forced)
    assert small.capacity < ids.shape[1] + 8  # it really had to grow, a few columns at a time
    assert all(torch.equal(a, b) for a, b in zip(grown, roomy, strict=True))

    # Row 0 leaves after the prompt; row 1 goes on alone and decodes as it would in the pair.
    cache = lean.new_cache()
    with torch.inference_mode():
        lean.forward(ids, mask, positions, cache)
        cache.batch_select_indices(torch.tensor([1]))
        alone = lean.forward(
            torch.tensor([[29]]),
            torch.cat([mask[1:], torch.ones(1, 1, dtype=mask.dtype)], 1),
            positions[1:, -1:] + 1,
            cache,
        )
    # float32 matmuls here (MKL): one row and two rows may sum in different orders
    assert torch.allclose(alone[0], roomy[1][1], atol=1e-4, rtol=1e-5)


def test_rows_are_put_right_aligned_from_their_pieces_and_the_rest_zeroed() -> None:
    cache = KVCache(1, 1, 2, torch.float32, grow=0)
    cache.begin(2, 4, extra=1)
    assert cache.length == 4 and cache.capacity == 5
    cache.keys.fill_(float("nan"))  # uninitialised memory: what put_row must overwrite or zero
    cache.values.fill_(float("nan"))
    first = torch.full((1, 1, 1, 2), 1.0), torch.full((1, 1, 1, 2), -1.0)
    second = torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), -2.0)
    cache.put_row(0, [first, second])  # a cached prefix of one position, then two computed
    cache.put_row(1, [])
    assert cache.keys[0, 0, 0, :4, 0].tolist() == [0.0, 1.0, 2.0, 2.0]
    assert cache.values[0, 0, 0, :4, 0].tolist() == [0.0, -1.0, -2.0, -2.0]
    assert cache.keys[0, 1, 0, :4, 0].tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="5 positions for 4 columns"):
        cache.put_row(0, [second, second, first])
    with pytest.raises(RuntimeError, match="begun empty"):
        cache.begin(2, 4, extra=0)


def test_unsupported_models_are_named() -> None:
    assert "gpt2" in unsupported_reason(SimpleNamespace(config=SimpleNamespace(model_type="gpt2")))
    dynamic = SimpleNamespace(model_type="llama", rope_parameters={"rope_type": "dynamic"})
    assert "dynamic" in unsupported_reason(SimpleNamespace(config=dynamic))


def with_adapters(model, folders: dict[str, Path]):
    """A copy of ``model`` with each folder's PEFT LoRA attached under its name (our :mod:`lora` modules)."""
    ours = copy.deepcopy(model)
    for name, folder in folders.items():
        attach(ours, Routing(), name, read_adapter(adapter_folder(folder)))
    return ours


@pytest.mark.slow
def test_lora_routes_single_base_and_mixed_batches(base, lora_registry: AdapterRegistry) -> None:
    from peft import PeftModel

    model, tokenizer = base
    folders = [lora_registry.local_path(AdapterRef.parse(r)) for r in ("tiny@1.0.0", "tiny@2.0.0")]
    peft = PeftModel.from_pretrained(
        copy.deepcopy(model), str(folders[0]), adapter_name="one", is_trainable=False
    )
    peft.load_adapter(str(folders[1]), adapter_name="two", is_trainable=False)
    peft.eval()
    lean = LeanLlama(with_adapters(model, {"one": folders[0], "two": folders[1]}), load_kernels())
    ids, mask, positions = encode(tokenizer, PROMPTS[:3])
    forced = [torch.tensor([28, 29, 30])] * 3

    plain = lean_steps(LeanLlama(model, load_kernels()), ids, mask, positions, forced)
    base_only = lean_steps(lean, ids, mask, positions, forced, rows=[None, None, None])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(base_only, plain, strict=True))
    unrouted = lean_steps(lean, ids, mask, positions, forced)  # rows=None: every row on the base model
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(unrouted, plain, strict=True))

    singles = {}
    for name in ("one", "two"):
        singles[name] = lean_steps(lean, ids, mask, positions, forced, rows=[name] * 3)
        peft.set_adapter(name)
        with torch.inference_mode():  # the same logits as PEFT's own forward on the prompt
            want = peft(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        assert torch.allclose(singles[name][0], want, atol=2e-4, rtol=1e-4)
        assert not torch.allclose(singles[name][0], plain[0], atol=1e-2)  # the adapter changes the output

    # Grouped and interleaved rows: each row must get what it gets alone.
    for rows in (["one", "one", "two"], [None, "two", "two"], ["one", None, "two"], ["two", "one", "two"]):
        mixed = lean_steps(lean, ids, mask, positions, forced, rows=rows)
        for step, logits in enumerate(mixed):
            for row, name in enumerate(rows):
                single = plain if name is None else singles[name]
                assert torch.allclose(logits[row], single[step][row], atol=1e-4), (rows, step, row)


def teacher_forced(runner: ModelRunner, prompt: str, continuation: list[int]) -> tuple[int, float]:
    """(positions where the runner's argmax is the continuation's token, summed NLL of the continuation)."""
    ids, mask, positions = encode(runner.tokenizer, [prompt])
    cache = runner.new_cache()
    logits = runner.forward(ids, mask, positions, cache, [None])
    hits, nll = 0, 0.0
    for token in continuation:
        hits += int(logits.argmax(-1)) == token
        nll -= float(logits.log_softmax(-1)[0, token])
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        logits = runner.forward(torch.tensor([[token]]), mask, positions, cache, [None])
    return hits, nll


@pytest.mark.slow
def test_int8_weights_agree_with_float32_on_next_tokens(model_dir: Path) -> None:
    """Greedy text from int8 weights leaves float32's after a few dozen tokens on most prompts (a near-tie
    flips and the rest follows), so agreement is measured token by token on float32's own greedy
    continuation: int8 must pick the same next token almost everywhere and find that text as likely."""
    if load_kernels() is None:
        pytest.skip("no C kernels on this machine")
    reference = ModelRunner(model_dir, CPUOptions(weights="float32", forward="transformers"))
    int8 = ModelRunner(model_dir, CPUOptions(weights="int8", forward="lean"))
    reference.load()
    int8.load()
    assert int8.weights == "int8" and int8.forward_path == "lean"
    total = hits = 0
    nll_ref = nll_int8 = 0.0
    for prompt in PROMPTS:
        ids, mask, positions = encode(reference.tokenizer, [prompt])
        steps = transformers_steps(reference._model, ids, mask, positions, steps=24)  # noqa: SLF001
        continuation = [int(s.argmax(-1)) for s in steps]
        h, n = teacher_forced(int8, prompt, continuation)
        _, r = teacher_forced(reference, prompt, continuation)
        total, hits, nll_int8, nll_ref = total + len(continuation), hits + h, nll_int8 + n, nll_ref + r
    assert hits / total >= 0.95, f"{hits}/{total}"
    assert nll_int8 / total <= nll_ref / total * 1.05 + 0.01, (nll_int8 / total, nll_ref / total)


# ---- a tiny Llama: the real transformers and PEFT classes with random weights, because what these
# tests check (routing, dtypes, refusals) does not depend on trained weights and loads in milliseconds ----


def with_two_adapters(model, targets: list[str], folder: Path):
    """PEFT adapters ``one`` and ``two`` with random non-zero weights on ``targets`` (PEFT wraps ``model``),
    and a copy of the unwrapped model carrying the same two adapters as ours, read from PEFT's saved files."""
    from peft import LoraConfig, get_peft_model

    unwrapped = copy.deepcopy(model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0)
    peft = get_peft_model(model, config, adapter_name="one")
    peft.add_adapter("two", config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    # The embedding's own weights are the base model's: saved, they would replace it for every adapter.
    peft.save_pretrained(str(folder), selected_adapters=["one", "two"], save_embedding_layers=False)
    return peft.eval(), with_adapters(unwrapped, {n: folder / n for n in ("one", "two")})


def peft_and_lean(peft, lean: LeanLlama, rows: list[str], steps: int = 2):
    """Logits of a prompt and ``steps`` forced decode steps: PEFT's per-row forward vs the lean one."""
    ids = torch.randint(0, 96, (len(rows), 5), generator=torch.Generator().manual_seed(2))
    mask, positions = torch.ones_like(ids), torch.arange(5).expand(len(rows), 5)
    cache, want, got = lean.new_cache(), [], []
    with torch.inference_mode():
        for step in range(steps + 1):
            want.append(
                peft(input_ids=ids, attention_mask=mask, position_ids=positions, adapter_names=rows).logits[
                    :, -1
                ]
            )
            got.append(
                lean.forward(
                    ids if step == 0 else ids[:, -1:],
                    mask,
                    positions if step == 0 else positions[:, -1:],
                    cache,
                    rows=rows,
                )
            )
            token = want[-1].argmax(-1, keepdim=True)
            ids, mask = torch.cat([ids, token], 1), torch.cat([mask, torch.ones_like(token)], 1)
            positions = torch.cat([positions, positions[:, -1:] + 1], 1)
    return want, got


@pytest.mark.parametrize("kernels", [False, True], ids=["torch-ops", "c-kernels"])
def test_an_adapter_on_the_embedding_applies_per_row(kernels: bool, tmp_path: Path) -> None:
    if kernels and load_kernels() is None:
        pytest.skip("no C kernels on this machine")
    peft, ours = with_two_adapters(tiny_llama(), ["embed_tokens", "q_proj"], tmp_path)
    lean = LeanLlama(ours, load_kernels() if kernels else None)
    for rows in (["one", "two"], ["two", "two"]):
        want, got = peft_and_lean(peft, lean, rows)
        for w, g in zip(want, got, strict=True):
            assert torch.allclose(g, w, atol=1e-4, rtol=1e-4), (rows, float((g - w).abs().max()))


def test_states_stop_at_a_layer_as_transformers_hidden_states_do(tmp_path: Path) -> None:
    """What the intent head reads: hidden states after ``layers`` decoder layers through the final norm, each
    row through its adapter, right padding never reaching a real token. The reference is what training and the
    float32 intent backbone run: serving/intent/encoder.py on transformers' LlamaModel with PEFT."""
    from finserve.serving.intent import encoder

    peft, ours = with_two_adapters(tiny_llama(), ["q_proj", "v_proj", "down_proj"], tmp_path)
    scale = (
        torch.rand(64, generator=torch.Generator().manual_seed(5)) + 0.5
    )  # a norm that is not the identity
    with torch.no_grad():
        for model in (peft, ours):
            encoder.decoder(model).norm.weight.copy_(scale)
    lean = LeanLlama(ours)
    ids = torch.randint(1, 96, (3, 6), generator=torch.Generator().manual_seed(4))
    lengths = [6, 4, 2]
    for layers in (1, 2):
        for name in ("one", "two"):
            padded = ids.clone()
            for row, n in enumerate(lengths):
                padded[row, n:] = 0
            with torch.inference_mode():
                got = lean.states(padded, layers, rows=[name] * 3)
                peft.set_adapter(name)
                for row, n in enumerate(lengths):
                    hidden = encoder.run_layers(peft, encoder.embed(peft, ids[row : row + 1, :n]), 0, layers)
                    want = encoder.decoder(peft).norm(hidden)[0]
                    assert torch.allclose(got[row, :n], want, atol=1e-5), (layers, name, row)
    with pytest.raises(ValueError, match="layers must be"):
        lean.states(ids, 0)


def test_routing_plans_follow_an_adapter_reloaded_under_its_name(tmp_path: Path) -> None:
    """A batch composition's routing is planned once (with the adapter's weight tensors); after an adapter is
    attached again under the same name, adapters_changed() makes the next step use the new weights."""
    from peft import LoraConfig

    peft, ours = with_two_adapters(tiny_llama(), ["q_proj", "down_proj"], tmp_path / "first")
    lean = LeanLlama(ours, load_kernels())
    rows = ["one", "two"]
    first, _ = peft_and_lean(peft, lean, rows)  # plans for this composition now hold "two"'s tensors
    peft.delete_adapter("two")
    peft.add_adapter("two", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if ".two." in name:
                param.fill_(0.05)
    peft.eval()
    peft.save_pretrained(str(tmp_path / "second"), selected_adapters=["two"])
    attach(ours, Routing(), "two", read_adapter(tmp_path / "second" / "two"))  # down_proj loses the old "two"
    lean.adapters_changed()
    want, got = peft_and_lean(peft, lean, rows)
    assert not torch.allclose(first[0][1], want[0][1])  # the reloaded adapter changes that row
    for w, g in zip(want, got, strict=True):
        assert torch.allclose(g, w, atol=1e-4, rtol=1e-4), float((g - w).abs().max())


def test_float32_adapters_on_a_bfloat16_base_compute_as_peft_does(tmp_path: Path) -> None:
    """PEFT keeps adapter weights in float32 on a bfloat16 base (autocast_adapter_dtype) and adds each row's
    update in bfloat16: ours gives the same bits."""
    peft, ours = with_two_adapters(tiny_llama(torch.bfloat16), ["q_proj", "v_proj"], tmp_path)
    assert peft.base_model.model.model.layers[0].self_attn.q_proj.lora_A["one"].weight.dtype == torch.float32
    assert ours.model.layers[0].self_attn.q_proj.lora_A["one"].dtype == torch.float32
    lean = LeanLlama(ours)
    for rows in (["one", "one"], ["one", "two"]):
        want, got = peft_and_lean(peft, lean, rows)
        for w, g in zip(want, got, strict=True):
            assert g.dtype == torch.bfloat16 and torch.equal(g, w), rows


def test_c_decode_step_refuses_what_it_would_read_out_of_bounds() -> None:
    kernels = load_kernels()
    if kernels is None:
        pytest.skip("no C kernels on this machine")
    lean = LeanLlama(tiny_llama(), kernels)
    ids, mask, positions = (
        torch.tensor([[5, 6, 7], [8, 9, 10]]),
        torch.ones(2, 3, dtype=torch.long),
        torch.arange(3),
    )
    cache = lean.new_cache()
    with torch.inference_mode():
        lean.forward(ids, mask, positions.expand(2, 3), cache)
        step = torch.tensor([[11], [12]])
        with pytest.raises(ValueError, match="positions"):
            lean.forward(step, torch.ones(2, 4, dtype=torch.long), torch.tensor([[3], [-1]]), cache)
        with pytest.raises(ValueError, match="positions"):
            lean.forward(step, torch.ones(2, 4, dtype=torch.long), torch.tensor([[3], [32]]), cache)
        with pytest.raises(ValueError, match="valid"):  # a mask of 3 columns for 4 cached ones
            lean.forward(
                step,
                torch.ones(2, 3, dtype=torch.long).index_fill(1, torch.tensor([0]), 0),
                torch.tensor([[3], [3]]),
                cache,
            )
        with pytest.raises(ValueError):  # one row of input against a cache holding two
            lean.forward(step[:1], torch.ones(1, 4, dtype=torch.long), torch.tensor([[3]]), cache)
        assert cache.length == 3  # nothing was written by the refused steps
        logits = lean.forward(step, torch.ones(2, 4, dtype=torch.long), torch.tensor([[3], [3]]), cache)
    assert logits.shape == (2, 96) and bool(torch.isfinite(logits).all())


@pytest.mark.slow
def test_the_transformers_forward_routes_adapters_per_row_as_the_lean_one_does(
    lora_registry: AdapterRegistry,
) -> None:
    """``cpu.forward: transformers`` runs transformers' model (built from the same GGUF) with our LoRA modules,
    which read each row's adapter from the runner's routing: a mixed batch gives what the lean forward gives."""
    from finserve.serving.inference.base_model import gguf_path

    folder = lora_registry.local_path(AdapterRef.parse("tiny@1.0.0"))
    runners = {}
    for forward in ("lean", "transformers"):
        runner = ModelRunner(gguf_path(), CPUOptions(forward=forward, prefix_cache_mb=0))
        runner.load()
        runner.load_adapter("tiny", folder)
        runners[forward] = runner
    assert type(runners["transformers"]._model).__module__.startswith("transformers.")  # noqa: SLF001
    prompts = [runners["lean"].tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS[:3]]
    rows: list[str | None] = ["tiny", None, "tiny"]
    steps = {}
    for forward, runner in runners.items():
        prefill = runner.prefill(prompts, rows)
        token = prefill.logits.argmax(-1, keepdim=True)
        mask = torch.cat([prefill.attention_mask, torch.ones_like(token)], dim=1)
        after = runner.forward(token, mask, prefill.position_ids[:, -1:] + 1, prefill.cache, rows)
        steps[forward] = (prefill.logits, after)
    for lean, theirs in zip(steps["lean"], steps["transformers"], strict=True):
        assert torch.allclose(lean, theirs, atol=2e-3, rtol=1e-3), float((lean - theirs).abs().max())
    base = runners["lean"].prefill(prompts[:2], [None, None]).logits
    assert not torch.allclose(steps["lean"][0][0], base[0], atol=1e-2)  # the adapter changes row 0's output
    assert torch.allclose(steps["lean"][0][1], base[1], atol=1e-4)  # and leaves the base row alone
    with pytest.raises(RuntimeError, match="not loaded"):
        runners["lean"].prefill(prompts[:1], ["other"])
