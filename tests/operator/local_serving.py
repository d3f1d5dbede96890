"""The real serving stack for the operator's end-to-end test (test_e2e_prometheus.py).

Used two ways: the test imports the builders (the INTENTS its small index holds, built with
tests/kbutil.py; a registry of tiny real LoRA adapters; the ServingConfig), and runs this file as
its own processes, so neither the model nor the load competes with the emulated API server and
the operator for the test's event loop:

``serve --config FILE``: ``finserve.serving.local.create_local_app`` under uvicorn on a free
loopback port; prints ``ready PORT`` once the stack has started and the socket listens.
``load --url URL --model M ...``: posts short chat requests for each model, forever.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import socket
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from finserve.contracts import AdapterManifest, AdapterRegistry

if TYPE_CHECKING:  # serving's config pulls in Presidio and torch: import it only where it is used,
    # so collecting the operator tests stays fast.
    from finserve.serving.config import ServingConfig

# A few intents with a few real examples each: the index builds in seconds, and retrieval's
# neighbour vote (the intent-quality signal) still chooses between real competitors.
INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "activate_my_card")
QUESTIONS = (
    "My new card still has not arrived, how long does delivery take?",
    "I think I lost my card, what should I do?",
    "What exchange rate do you use for payments abroad?",
    "How do I activate the card you sent me?",
)


def publish_loras(registry: AdapterRegistry, name: str, versions: list[str], work: Path) -> None:
    """Publish a real PEFT LoRA (q_proj, v_proj, r=8, small random B) per version, on SmolLM2.

    Seconds of CPU: no training, but real adapter files that serving verifies and loads. They
    carry no intent head, so serving classifies with retrieval's vote for them.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finserve.serving.inference.base_model import BASE_MODEL_ID, ensure_base_model

    base = AutoModelForCausalLM.from_pretrained(str(ensure_base_model()))
    for seed, version in enumerate(versions, 1):
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        model = get_peft_model(copy.deepcopy(base), lora)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if "lora_B" in param_name:  # small, so answers stay sane
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.01)
        folder = work / f"{name}-{version}"
        model.save_pretrained(str(folder))
        manifest = AdapterManifest(name=name, version=version, base_model=BASE_MODEL_ID, checksum="")
        registry.publish(folder, manifest)


def serving_config(
    work: Path, index: Path, registry: Path, routes: Path, preload: list[str]
) -> ServingConfig:
    """The embedded defaults, pointed at the test's index, registry and routing-table file.

    Routes come only from the table the operator writes. A one-line system prompt and one
    knowledge chunk keep the prompt near 80 tokens: prefill is most of a request's CPU cost.
    """
    from finserve.serving.config import ServingConfig
    from finserve.serving.routing import RouterConfig

    cfg = ServingConfig()
    cfg.retrieval = cfg.retrieval.model_copy(update={"milvus_uri": str(index), "redis_url": None, "top_k": 1})
    cfg.gateway = cfg.gateway.model_copy(update={"system_prompt": "You are a bank's assistant; be brief."})
    cfg.audit = cfg.audit.model_copy(update={"path": work / "audit.jsonl"})
    cfg.generator = cfg.generator.model_copy(update={"registry": str(registry), "preload_adapters": preload})
    cfg.router = RouterConfig(table_path=str(routes), reload_interval_s=0.5, routes={})
    # Prometheus scrapes /metrics on the serving port here; no fixed-port listener beside other tests' stacks.
    cfg.exposure = cfg.exposure.model_copy(update={"metrics_port": None, "metrics_on_api_port": True})
    # The load generator below is one client sending without pause: rate limits would shape the traffic the
    # canary analysis is meant to see.
    cfg.admission.rate = cfg.admission.rate.model_copy(update={"enabled": False})
    return cfg


def serve(config_path: Path) -> None:
    import uvicorn

    from finserve.serving.config import ServingConfig
    from finserve.serving.local import create_local_app

    # Bound before the app starts, so the port is known and no early connection is refused.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    app = create_local_app(ServingConfig.from_file(config_path))
    stack_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def announced(a):
        async with stack_lifespan(a):
            print(f"ready {port}", flush=True)
            yield

    app.router.lifespan_context = announced
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


async def load(url: str, models: list[str], concurrency: int, max_tokens: int) -> None:
    import aiohttp

    questions = itertools.cycle(QUESTIONS)
    timeout = aiohttp.ClientTimeout(total=600)  # a busy 2-core machine answers slowly, not wrongly

    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def worker(model: str) -> None:
            while True:
                body = {
                    "model": model,
                    "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": next(questions)}],
                }
                try:
                    async with http.post(f"{url}/v1/chat/completions", json=body) as response:
                        await response.read()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.5)  # serving restarting or shutting down: try again

        await asyncio.gather(*(worker(model) for model in models for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve").add_argument("--config", type=Path, required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--model", action="append", required=True)
    ld.add_argument("--concurrency", type=int, default=2)
    ld.add_argument("--max-tokens", type=int, default=2)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.config)
    else:
        asyncio.run(load(args.url, args.model, args.concurrency, args.max_tokens))


if __name__ == "__main__":
    main()
