"""The vLLM engine on a real GPU: base and LoRA generation, streaming, missing adapters.

Opt-in: ``pytest -m gpu tests/gpu`` on a machine with CUDA and ``pip install -e '.[gpu]'``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from finserve.contracts import AdapterManifest, AdapterNotFound, AdapterRef, AdapterRegistry  # noqa: E402
from finserve.serving.inference import (  # noqa: E402
    BASE_MODEL_ID,
    ChatMessage,
    GenerationRequest,
    GeneratorConfig,
    VLLMOptions,
    build_engine,
    ensure_base_model,
)

REF = AdapterRef.parse("gpu-tiny@1.0.0")
REF2 = AdapterRef.parse("gpu-tiny@2.0.0")


def publish_lora(registry: AdapterRegistry, work: Path, ref: AdapterRef = REF, seed: int = 1) -> None:
    """A real PEFT LoRA with random non-zero B weights, published as ``ref``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(ensure_base_model()))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * (0.15 if "lora_B" in name else 0.03))
    model.save_pretrained(str(work))
    manifest = AdapterManifest(name=ref.name, version=ref.version, base_model=BASE_MODEL_ID, checksum="")
    registry.publish(work, manifest)


def shared_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def test_vllm_engine_serves_base_and_lora(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "registry")
    publish_lora(registry, tmp_path / "adapter")
    publish_lora(registry, tmp_path / "adapter2", REF2, seed=2)
    config = GeneratorConfig(
        engine="vllm",
        registry=registry.root,
        max_new_tokens=24,
        vllm=VLLMOptions(gpu_memory_utilization=0.3, max_model_len=2048, enforce_eager=True),
    )

    async def scenario() -> None:
        engine = build_engine(config)
        await engine.start()
        try:
            ask = lambda ref: GenerationRequest(  # noqa: E731
                messages=[ChatMessage(role="user", content="Explain what an IBAN is in one sentence.")],
                adapter=ref,
            )
            base = await engine.generate(ask(AdapterRef.base()))
            await engine.ensure_adapter(REF)
            tuned = await engine.generate(ask(REF))
            assert base.text and tuned.text and base.text != tuned.text
            again = await engine.generate(ask(REF))
            assert again.text == tuned.text  # greedy
            chunks = [c async for c in engine.stream(ask(REF))]
            assert "".join(c.delta for c in chunks) == tuned.text
            assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].usage is not None
            # Two versions side by side in one continuous batch: each request gets its own weights.
            await engine.ensure_adapter(REF2)
            other = await engine.generate(ask(REF2))
            assert other.text not in (tuned.text, base.text)
            refs = {REF: tuned.text, AdapterRef.base(): base.text, REF2: other.text}
            order = (REF, AdapterRef.base(), REF2, REF)
            mixed = await asyncio.gather(*(engine.generate(ask(r)) for r in order))
            for ref, out in zip(order, mixed, strict=True):
                # bf16 kernels differ with the batch's shape, so greedy text may drift late; each
                # row must still follow its own version's text further than any other's.
                own = shared_prefix(out.text, refs[ref])
                others = max(shared_prefix(out.text, t) for r, t in refs.items() if r != ref)
                assert own > others, (ref, out.text)
            with pytest.raises(AdapterNotFound):
                await engine.ensure_adapter(AdapterRef.parse("gpu-tiny@9.0.0"))
            assert {REF, REF2} <= set(engine.adapters())
        finally:
            await engine.stop()

    asyncio.run(scenario())
