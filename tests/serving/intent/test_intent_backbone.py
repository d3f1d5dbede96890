"""The intent heads on the CPU engine's own model (EngineBackbone) against the float32 copy (TransformersBackbone):
the real SmolLM2 GGUF in the engine's runner (int8 weights, the lean forward), the real tiny intent versions of
conftest.py, and the wiring that picks one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.inference import GeneratorConfig, build_engine
from finserve.serving.inference.base_model import gguf_path
from finserve.serving.inference.config import CPUOptions
from finserve.serving.inference.model_runner import ModelRunner
from finserve.serving.intent import IntentConfig
from finserve.serving.intent.backbone import EngineBackbone, TransformersBackbone
from finserve.serving.intent.classifier import IntentClassifier
from finserve.serving.wiring import build_intent_classifier, share_engine_model

# The versions conftest.py trains: a plain head, one reading the query embedding, one with a fine-tuned encoder.
V1, V2, V3 = (AdapterRef(name="tiny-intent", version=v) for v in ("1.0.0", "2.0.0", "3.0.0"))

TEXTS = [
    "Why has my top-up not gone through yet?",
    "Can I get a physical card sent to Spain?",
    "Someone took money from my account without asking",
    "What fee do I pay to withdraw cash abroad?",
    "I forgot my passcode, how do I get back in?",
    "The refund for my order still is not showing",
    "",  # an empty query is one EOS token on both
    "please " * 80 + "why is my top up still pending",  # longer than the heads' max_length: truncated alike
]


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    runner = ModelRunner(gguf_path(), CPUOptions(num_threads=1))
    runner.load()
    assert runner.runs_states
    return runner


def classifier(registry: AdapterRegistry, base: Path, **kw: object) -> IntentClassifier:
    return build_intent_classifier(IntentConfig(base_model_path=str(base), device="cpu", **kw), registry)


def test_the_engine_model_gives_the_float32_heads_answers(
    runner: ModelRunner, intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    """int8 weights move the pooled vector by a rounding error: every version (a plain head, one reading the
    query embedding, one blended with a fine-tuned encoder) picks the same intents with nearly equal
    probabilities, and the base model is not loaded a second time."""
    engine = classifier(intent_registry, base_model_dir)
    engine.use_backbone(EngineBackbone(lambda: runner))
    reference = classifier(intent_registry, base_model_dir)
    for version in (V1, V2, V3):
        got = np.array(engine.probabilities(version, TEXTS))
        want = np.array(reference.probabilities(version, TEXTS))
        assert engine.labels(version) == reference.labels(version)
        gap = float(np.abs(got - want).max())
        assert gap < 0.02, (version, gap)
        # The tiny heads are trained for seconds: some rows are near-ties, where a rounding error may pick the
        # other intent. Every row whose top two float32 probabilities are further apart than 2 gaps agrees.
        top2 = np.sort(want, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * gap
        assert clear.sum() >= len(TEXTS) // 2, version
        assert (got.argmax(1) == want.argmax(1))[clear].all(), version
    assert isinstance(reference.backbone, TransformersBackbone)
    assert engine.backbone.__dict__.get("_model") is None  # no float32 copy on the engine's side
    names = set(runner.loaded_adapters())
    assert {"intent:tiny-intent@1_0_0", "intent:tiny-intent@2_0_0", "intent:tiny-intent@3_0_0"} <= names


def test_versions_leave_the_engine_model_when_unloaded(
    runner: ModelRunner, intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    clf = classifier(intent_registry, base_model_dir, max_loaded_adapters=1)
    clf.use_backbone(EngineBackbone(lambda: runner))
    for name in [n for n in runner.loaded_adapters() if n.startswith("intent:")]:
        runner.unload_adapter(name)  # what the previous test left
    clf.probabilities(V1, TEXTS[:1])
    clf.probabilities(V2, TEXTS[:1])
    assert [n for n in runner.loaded_adapters() if n.startswith("intent:")] == ["intent:tiny-intent@2_0_0"]
    with pytest.raises(RuntimeError, match="loaded already"):
        clf.use_backbone(EngineBackbone(lambda: runner))


async def test_wiring_shares_the_cpu_engines_model_unless_told_not_to(
    intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    engine = build_engine(GeneratorConfig(cpu={"num_threads": 1}))
    await engine.start()
    try:
        auto = classifier(intent_registry, base_model_dir)
        share_engine_model(auto, engine)
        assert isinstance(auto.backbone, EngineBackbone)
        share_engine_model(auto, engine)  # a second start keeps it
        own = classifier(intent_registry, base_model_dir, backbone="transformers")
        share_engine_model(own, engine)
        assert isinstance(own.backbone, TransformersBackbone)
    finally:
        await engine.stop()


def test_an_engine_without_a_model_in_reach_keeps_the_float32_backbone(
    intent_registry: AdapterRegistry, base_model_dir: Path
) -> None:
    """A remote engine (the real OpenAI-compatible client engine, never started: it holds no model at all)."""
    remote = build_engine(
        GeneratorConfig(
            engine="openai", openai={"base_url": "http://127.0.0.1:9/v1", "models": {"base": "m"}}
        )
    )
    auto = classifier(intent_registry, base_model_dir)
    share_engine_model(auto, remote)
    assert isinstance(auto.backbone, TransformersBackbone)
    strict = classifier(intent_registry, base_model_dir, backbone="engine")
    with pytest.raises(ValueError, match="intent.backbone is engine"):
        share_engine_model(strict, remote)


GENERATOR_PROBE = r"""
import asyncio, json, sys
from finserve.contracts import AdapterRef, AdapterRegistry
from finserve.serving.inference import GeneratorConfig, build_engine
from finserve.serving.intent import IntentConfig
from finserve.serving.wiring import build_intent_classifier, share_engine_model
async def main():
    engine = build_engine(GeneratorConfig(cpu={"num_threads": 1}))
    intent = build_intent_classifier(IntentConfig(), AdapterRegistry(sys.argv[1]))
    await engine.start()
    share_engine_model(intent, engine)  # what GeneratorDeployment.start does
    head = await intent.head_scores("I lost my card yesterday", AdapterRef.parse("banking77@2.1.0"))
    await engine.stop()
    return {"intent": max(head.probabilities, key=head.probabilities.get), "encoder": head.encoder,
            "heavy": sorted(m for m in ("transformers", "peft", "accelerate", "torch._dynamo", "sympy") if m in sys.modules)}
print(json.dumps(asyncio.run(main())))
"""


def test_a_generator_replica_scores_the_shipped_head_without_transformers_or_peft() -> None:
    """The shipped version (LLM head + fine-tuned encoder) scored as the Generator replica does, in a fresh
    interpreter: none of transformers, PEFT, accelerate, torch._dynamo, sympy is imported (each was, at ~30-160 MB
    resident: docs/benchmarks.md, "The intent head on the engine's model")."""
    import json
    import subprocess
    import sys

    registry = Path(__file__).resolve().parents[3] / "data" / "adapters"
    proc = subprocess.run(
        [sys.executable, "-P", "-c", GENERATOR_PROBE, str(registry)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"intent": "lost_or_stolen_card", "encoder": True, "heavy": []}
