"""A stand-in for the serving stack, and a load generator, as separate processes for the
end-to-end test (test_e2e_prometheus.py): out of the test's process, neither competes with the
emulated API server and the operator for the event loop.

``serve``: reads the routing table from a file (as serving reads its mounted ConfigMap), picks
stable or canary by weight, answers 500 for half the requests of a ``--broken`` adapter version,
reports a PII finding in one output in ten of a ``--leaky`` one, and exposes the contract metrics
(finserve.contracts.metrics) on /metrics. ``load``: posts chat requests for each model, forever.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path

import aiohttp
import aiohttp.web
from finserve.contracts import RoutingTable
from finserve.contracts import metrics as m
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class StandInServing:
    def __init__(self, routes_file: Path, broken: set[str], leaky: set[str]) -> None:
        self.routes_file, self.broken, self.leaky = routes_file, broken, leaky
        self.random = random.Random(7)
        self.registry = CollectorRegistry()
        labels = list(m.MODEL_LABELS)
        self.requests = Counter(m.REQUESTS_TOTAL, "requests", [*labels, "code"], registry=self.registry)
        self.latency = Histogram(m.REQUEST_DURATION, "latency", labels, registry=self.registry)
        self.pii = Counter(m.PII_FINDINGS_TOTAL, "pii", [*labels, "stage", "entity"], registry=self.registry)
        self.intent = Counter(m.INTENT_AGREEMENT_TOTAL, "intent", [*labels, "agree"], registry=self.registry)

    async def chat(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        model = (await request.json())["model"]
        route = RoutingTable.load(self.routes_file).routes.get(model) if self.routes_file.exists() else None
        if route is None:
            return aiohttp.web.json_response({"error": f"unknown model {model}"}, status=404)
        use_canary = route.canary is not None and self.random.random() * 100 < route.canary_weight
        adapter = route.canary if use_canary and route.canary is not None else route.stable
        labels = {"model": model, "adapter": adapter.name, "version": adapter.version}
        failed = str(adapter) in self.broken and self.random.random() < 0.5
        self.latency.labels(**labels).observe(0.05 + self.random.random() * 0.05)
        self.requests.labels(**labels, code="500" if failed else "200").inc()
        if not failed:
            self.intent.labels(**labels, agree="true").inc()
        if str(adapter) in self.leaky and self.random.random() < 0.1:
            self.pii.labels(**labels, stage="output", entity="IBAN_CODE").inc()
        return aiohttp.web.json_response({"adapter": str(adapter)}, status=500 if failed else 200)

    async def metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(self.registry), content_type="text/plain")


def serve(port: int, routes_file: Path, broken: set[str], leaky: set[str]) -> None:
    state = StandInServing(routes_file, broken, leaky)
    app = aiohttp.web.Application()
    app.router.add_post("/v1/chat/completions", state.chat)
    app.router.add_get("/metrics", state.metrics)
    aiohttp.web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: print("ready", flush=True)
    )


async def load(url: str, models: list[str], concurrency: int) -> None:
    async with aiohttp.ClientSession() as http:

        async def worker(model: str) -> None:
            while True:
                async with http.post(f"{url}/v1/chat/completions", json={"model": model}) as response:
                    await response.read()
                await asyncio.sleep(0.01)  # pacing the load

        await asyncio.gather(*(worker(model) for model in models for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--routes", type=Path, required=True)
    s.add_argument("--broken", action="append", default=[])
    s.add_argument("--leaky", action="append", default=[])
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--model", action="append", required=True)
    ld.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.port, args.routes, set(args.broken), set(args.leaky))
    else:
        asyncio.run(load(args.url, args.model, args.concurrency))


if __name__ == "__main__":
    main()
