"""The CPU engine on the real SmolLM2 weights with real PEFT LoRA adapters."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from finserve.contracts import AdapterCorrupt, AdapterNotFound, AdapterRef, AdapterRegistry
from finserve.serving.inference import (
    AdapterIncompatible,
    ChatMessage,
    GenerationRequest,
    GeneratorConfig,
    build_engine,
)
from finserve.serving.inference.transformers_engine import TransformersEngine

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

BASE = AdapterRef.base()
V1, V2 = AdapterRef.parse("tiny@1.0.0"), AdapterRef.parse("tiny@2.0.0")
QUESTIONS = [
    "What is the capital of France?",
    "How do I reset my card PIN?",
    "Explain what an IBAN is in one sentence.",
    "My transfer has not arrived yet. What should I do?",
]


def ask(question: str, adapter: AdapterRef = BASE, **kw: object) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content=question)], adapter=adapter, **kw)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine(lora_registry: AdapterRegistry) -> AsyncIterator[TransformersEngine]:
    config = GeneratorConfig(
        registry=lora_registry.root,
        max_new_tokens=16,
        batch_wait_ms=200,
        max_loaded_adapters=3,
        preload_adapters=[str(V1)],
    )
    eng = build_engine(config)
    assert isinstance(eng, TransformersEngine)
    await eng.start()
    yield eng
    await eng.stop()


async def test_start_preloads_and_reports_ready(engine: TransformersEngine) -> None:
    assert engine.ready()
    assert engine.adapters()[:2] == [BASE, V1]
    assert engine.queue_depth() == 0


async def test_stats_count_what_a_request_computed_and_generated(engine: TransformersEngine) -> None:
    """The figures /metrics shows (in-process) and Ray's metrics agent exports (the Generator replica)."""
    before = engine.stats()
    out = await engine.generate(ask("Which documents do I need to open an account?", max_tokens=12))
    for _ in range(100):  # the batch's bookkeeping ends just after its last chunk reached us
        after = engine.stats()
        if after.slots_busy == 0:
            break
        await asyncio.sleep(0.05)
    assert (
        after.slots_total == engine.config.max_batch_size
        and after.slots_busy == 0
        and after.requests_deferred == 0
    )
    assert after.server_starts == 1 and after.adapters_loaded >= 1
    assert after.generated_tokens_total - before.generated_tokens_total == out.completion_tokens > 0
    computed = out.prompt_tokens - out.cached_prompt_tokens
    assert after.prompt_tokens_total - before.prompt_tokens_total == computed > 0
    assert after.prompt_seconds_total > before.prompt_seconds_total
    assert after.generated_seconds_total > before.generated_seconds_total


async def test_greedy_base_generation_is_deterministic(engine: TransformersEngine) -> None:
    engine.runner.prefix_cache.clear()
    first = await engine.generate(ask(QUESTIONS[0]))
    second = await engine.generate(ask(QUESTIONS[0]))
    # The second prefill reuses the first's keys and values (all but the last block) and says so.
    assert first.cached_prompt_tokens == 0 and second.cached_prompt_tokens > first.prompt_tokens - 16
    timing = {"first_token_s", "last_token_s"}  # when the tokens came (TTFT metrics), not what they are
    assert first.model_dump(exclude=timing) == second.model_copy(
        update={"cached_prompt_tokens": 0}
    ).model_dump(exclude=timing)
    assert 0 <= first.first_token_s <= first.last_token_s
    assert "Paris" in first.text
    assert first.finish_reason == "stop" and 0 < first.completion_tokens <= 16
    assert first.prompt_tokens > 10 and first.adapter == BASE


async def test_adapters_change_output_and_two_versions_serve_side_by_side(engine: TransformersEngine) -> None:
    await engine.ensure_adapter(V2)
    assert {V1, V2} <= set(engine.adapters())
    texts = {ref: (await engine.generate(ask(QUESTIONS[2], ref))).text for ref in (BASE, V1, V2)}
    assert len(set(texts.values())) == 3, texts
    again = await engine.generate(ask(QUESTIONS[2], V1))
    assert again.text == texts[V1] and again.adapter == V1


async def test_mixed_adapter_batch_matches_single_runs(engine: TransformersEngine) -> None:
    await engine.ensure_adapter(V2)
    requests = [ask(QUESTIONS[0], BASE), ask(QUESTIONS[1], V1), ask(QUESTIONS[2], V2), ask(QUESTIONS[3], V1)]
    singles = [await engine.generate(r) for r in requests]
    batches_before = engine.batches_run
    batched = await asyncio.gather(*(engine.generate(r) for r in requests))
    assert engine.batches_run == batches_before + 1  # the four really shared one batch
    for one, many in zip(singles, batched, strict=True):
        assert many.text == one.text and many.adapter == one.adapter
        assert many.completion_tokens == one.completion_tokens


async def test_stream_concatenation_equals_generate(engine: TransformersEngine) -> None:
    request = ask(QUESTIONS[2], V1, max_tokens=20)
    whole = await engine.generate(request)
    chunks = [c async for c in engine.stream(request)]
    assert len([c for c in chunks if c.delta]) > 3  # text arrives token by token, not at the end
    assert "".join(c.delta for c in chunks) == whole.text
    assert all(c.finish_reason is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == whole.finish_reason and final.usage is not None
    assert final.usage.completion_tokens == whole.completion_tokens


async def test_max_tokens_ends_with_length(engine: TransformersEngine) -> None:
    result = await engine.generate(ask(QUESTIONS[3], max_tokens=3))
    assert result.finish_reason == "length" and result.completion_tokens == 3
    longer = await engine.generate(ask(QUESTIONS[3], max_tokens=8))
    assert longer.text.startswith(result.text) and len(longer.text) > len(result.text)


async def test_stop_sequence_cuts_the_text_and_ends_with_stop(engine: TransformersEngine) -> None:
    full = await engine.generate(ask(QUESTIONS[1], max_tokens=16))
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop = words[3]
    cut = await engine.generate(ask(QUESTIONS[1], max_tokens=16, stop=[stop]))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert stop not in cut.text and cut.completion_tokens < full.completion_tokens


async def test_seeded_sampling_repeats(engine: TransformersEngine) -> None:
    request = ask(QUESTIONS[3], temperature=1.0, top_p=0.95, seed=11, max_tokens=12)
    first, second = await engine.generate(request), await engine.generate(request)
    assert first.text == second.text and first.completion_tokens >= 1


async def test_missing_adapter_raises_and_never_serves_the_base(engine: TransformersEngine) -> None:
    missing = AdapterRef.parse("tiny@9.9.9")
    with pytest.raises(AdapterNotFound):
        await engine.ensure_adapter(missing)
    with pytest.raises(AdapterNotFound):
        await engine.generate(ask(QUESTIONS[0], missing))
    assert missing not in engine.adapters()
    # The scheduler clears its running batch just after the previous request's result is delivered;
    # the refused request must never have been queued, so the depth drains to zero.
    for _ in range(500):
        if engine.queue_depth() == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.queue_depth() == 0


async def test_tampered_adapter_raises_corrupt(
    engine: TransformersEngine, lora_registry: AdapterRegistry, tmp_path: Path
) -> None:
    registry = AdapterRegistry(tmp_path / "registry")
    src = lora_registry.local_path(V1)
    registry.publish(src, lora_registry.manifest(V1))
    weights = registry.local_path(V1, verify=False) / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    eng = TransformersEngine(engine.config.model_copy(update={"registry": str(tmp_path / "registry")}))
    eng.runner = engine.runner  # share the loaded weights; only the registry differs
    with pytest.raises(AdapterCorrupt):
        await eng.ensure_adapter(V1)
    assert V1 not in eng.adapters()


async def test_adapter_for_another_base_model_is_refused(engine: TransformersEngine) -> None:
    with pytest.raises(AdapterIncompatible):
        await engine.ensure_adapter(AdapterRef.parse("foreign@1.0.0"))


async def test_least_recently_used_adapter_is_unloaded_and_reloads(engine: TransformersEngine) -> None:
    before = await engine.generate(ask(QUESTIONS[0], V1))
    for ref in ("tiny@2.0.0", "spare@1.0.0", "spare@2.0.0"):
        await engine.ensure_adapter(AdapterRef.parse(ref))
    loaded = engine.adapters()[1:]
    assert len(loaded) == 3 and V1 not in loaded  # capacity 3: V1 was the least recently used
    assert len(engine.runner.loaded_adapters()) == 3
    after = await engine.generate(ask(QUESTIONS[0], V1))  # loads it again, evicting another
    assert after.text == before.text


async def test_abandoned_stream_frees_its_slot(engine: TransformersEngine) -> None:
    stream = engine.stream(ask(QUESTIONS[2], max_tokens=64))
    async for chunk in stream:
        if chunk.delta:
            break
    await stream.aclose()
    for _ in range(200):
        if engine.queue_depth() == 0:
            break
        await asyncio.sleep(0.05)
    assert engine.queue_depth() == 0
    assert (await engine.generate(ask(QUESTIONS[0], max_tokens=4))).completion_tokens == 4


async def test_copied_registry_folder_in_subfolder_layout_loads(
    engine: TransformersEngine, lora_registry: AdapterRegistry, tmp_path: Path
) -> None:
    """PEFT saves named adapters into a subfolder; the registry may hold that layout."""
    from finserve.contracts import AdapterManifest

    nested = tmp_path / "nested"
    shutil.copytree(lora_registry.local_path(V2), nested / "tiny")
    (nested / "tiny" / "manifest.json").unlink()
    registry = AdapterRegistry(tmp_path / "registry")
    ref = AdapterRef.parse("nested@1.0.0")
    registry.publish(
        nested,
        AdapterManifest(name="nested", version="1.0.0", base_model=engine.config.base_model_id, checksum=""),
    )
    eng = TransformersEngine(engine.config.model_copy(update={"registry": str(tmp_path / "registry")}))
    eng.runner = engine.runner
    await eng.ensure_adapter(ref)
    assert ref in eng.adapters()
    eng.runner.unload_adapter(eng._slots.name(ref))  # noqa: SLF001 - leave the shared runner as found


async def test_the_heap_is_trimmed_after_a_batch_at_most_once_per_interval(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finserve.serving.inference import transformers_engine

    trims: list[float] = []
    monkeypatch.setattr(transformers_engine, "trim_heap", lambda: trims.append(1.0))
    monkeypatch.setattr(transformers_engine, "HEAP_TRIM_INTERVAL_S", 3600.0)
    engine._trimmed_at = float("-inf")

    async def batch_done() -> None:
        # The trim runs after the batch's last chunk reached us, before its slots are free again.
        for _ in range(200):
            if engine.stats().slots_busy == 0:
                return
            await asyncio.sleep(0.05)

    await engine.generate(ask(QUESTIONS[1], max_tokens=2))
    await batch_done()
    await engine.generate(ask(QUESTIONS[2], max_tokens=2))
    await batch_done()
    assert len(trims) == 1  # the second batch ended within the interval
    monkeypatch.setattr(transformers_engine, "HEAP_TRIM_INTERVAL_S", 0.0)
    await engine.generate(ask(QUESTIONS[3], max_tokens=2))
    await batch_done()
    assert len(trims) == 2
