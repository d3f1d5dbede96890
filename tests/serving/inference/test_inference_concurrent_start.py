"""A fresh generator replica receives its queued requests and the readiness probes at once (Ray Serve's
replacement for a killed replica, bench/fault_rows.py replica_kill): the model is loaded once and every
caller is served by that one runner. Before, each concurrent first call loaded a model of its own and
swapped the engine's runner under a running decode, whose int8 kernel then read freed weights (SIGSEGV).

Real parts: the SmolLM2 weights, the CPU engine, the Ray Serve deployment class called directly (no Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from finserve.serving.app import GeneratorDeployment
from finserve.serving.inference import ChatMessage, GenerationRequest, GeneratorConfig
from finserve.serving.inference.model_runner import ModelRunner
from finserve.serving.intent import IntentConfig

pytestmark = pytest.mark.slow


async def test_concurrent_first_calls_load_the_model_once(
    model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    loads: list[ModelRunner] = []
    real_load = ModelRunner.load

    def counted(self: ModelRunner) -> None:  # a spy: the real load runs
        loads.append(self)
        real_load(self)

    monkeypatch.setattr(ModelRunner, "load", counted)
    config = GeneratorConfig(model_dir=str(model_dir), registry=str(tmp_path / "registry"), max_new_tokens=8)
    replica = GeneratorDeployment(config.model_dump(mode="json"), IntentConfig().model_dump(mode="json"))
    ask = GenerationRequest(messages=[ChatMessage(role="user", content="How do I activate my card?")])
    try:
        ready, first, second, again = await asyncio.gather(
            replica.ready(), replica.generate(ask), replica.generate(ask), replica.ready()
        )
        assert len(loads) == 1 and replica.engine.runner is loads[0]
        assert ready and again
        assert first.text and first.text == second.text  # greedy, one model
    finally:
        await replica.engine.stop()


async def test_a_caller_cancelled_while_the_model_loads_does_not_start_a_second_load(
    model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """A readiness probe whose client gave up is cancelled mid-load; the next caller must join that load, not
    start another beside it (on a busy machine the loads then slowed each other until none finished)."""
    loads: list[ModelRunner] = []
    real_load = ModelRunner.load

    def counted(self: ModelRunner) -> None:
        loads.append(self)
        real_load(self)

    monkeypatch.setattr(ModelRunner, "load", counted)
    config = GeneratorConfig(model_dir=str(model_dir), registry=str(tmp_path / "registry"), max_new_tokens=8)
    replica = GeneratorDeployment(config.model_dump(mode="json"), IntentConfig().model_dump(mode="json"))
    try:
        probe = asyncio.ensure_future(replica.ready())
        while not loads:  # the load has begun in its thread
            await asyncio.sleep(0.01)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert await replica.ready()
        assert len(loads) == 1 and replica.engine.runner is loads[0]
    finally:
        await replica.engine.stop()
