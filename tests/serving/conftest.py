"""Serving fixtures: a small real index (MiniLM + Milvus Lite) and a whole in-process stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kbutil import banking77_rows, build_index

# A handful of intents keeps the index build to seconds while still making retrieval and intent
# choose between real competitors.
INTENTS = (
    "card_arrival",
    "lost_or_stolen_card",
    "exchange_rate",
    "transfer_not_received_by_recipient",
    "card_payment_fee_charged",
    "activate_my_card",
)


@pytest.fixture(scope="session")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Milvus Lite file holding the 77 answers and a few real examples of six intents."""
    return build_index(tmp_path_factory.mktemp("index") / "milvus.db", banking77_rows(INTENTS, per_intent=12))


@pytest.fixture
def local_client(tmp_path: Path, small_index: Path, redis_server) -> Iterator:
    """FastAPI TestClient over the whole pipeline in this process (no Ray), with a real Redis L2."""
    from fastapi.testclient import TestClient
    from stack_config import stack_config

    from finserve.serving.local import create_local_app

    cfg = stack_config(tmp_path, small_index, redis_server.url)
    with TestClient(create_local_app(cfg)) as client:
        client.config = cfg  # type: ignore[attr-defined]
        yield client


API_KEY = (
    "sk-test-finserve"  # the key the `served` stacks require (an env var of its own, set for the module)
)
KEY_ENV = "FINSERVE_TEST_SERVED_API_KEY"


def _served_config(work: Path, index: Path, redis_url: str | None, **gateway: object):
    """The `served` stacks' config: an API key per client required (the legacy single key beside it), SSNs
    blocked by policy. Returns the config and the client's key."""
    from stack_config import stack_config

    from finserve.serving.access.config import AuthConfig
    from finserve.serving.access.keys import KeysFile, new_key, write_keys
    from finserve.serving.guard.config import GuardConfig

    cfg = stack_config(work, index, redis_url, api_key_env=KEY_ENV, **gateway)
    cfg.guard = GuardConfig.model_validate({**cfg.guard.model_dump(), "policies": {"US_SSN": "block"}})
    # A client's own API key (serving/access): inference and pinning a served version, default tenant.
    client_key, record = new_key("served-tests", ["default"], ["infer", "adapter:override"])
    write_keys(work / "keys.json", KeysFile(keys=[record]))
    cfg.auth = AuthConfig(keys_file=str(work / "keys.json"))
    return cfg, client_key


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, small_index: Path, redis_server) -> Iterator:
    """The whole in-process stack served by uvicorn on a free port (real HTTP, for real client libraries),
    with OIP v2 over gRPC (and grpc.health.v1) beside it; an API key required; SSNs blocked by policy."""
    import os
    import threading
    import time
    from types import SimpleNamespace

    import uvicorn
    from netutil import free_port

    from finserve.serving.local import create_local_app

    cfg, client_key = _served_config(tmp_path_factory.mktemp("served"), small_index, redis_server.url)
    app = create_local_app(cfg, grpc_port=0)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    os.environ[KEY_ENV] = API_KEY  # the legacy single key works beside it (scope infer)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start the app")
            time.sleep(0.2)
        yield SimpleNamespace(
            base=f"http://127.0.0.1:{port}",
            port=port,
            grpc_port=app.state.grpc_port,
            config=cfg,
            key=client_key,
            legacy_key=API_KEY,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=120)
        os.environ.pop(KEY_ENV, None)


@pytest.fixture(scope="module")
def ray_served(tmp_path_factory: pytest.TempPathFactory, small_index: Path, redis_server) -> Iterator:
    """`served`'s config run the way it is deployed: `finserve up` in a subprocess, the Ray Serve graph
    (Gateway, Retriever and Generator deployments) behind Ray's proxy ingress (the one a RayService uses).
    The same attributes as `served`, for the tests that must hold on both."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time
    from types import SimpleNamespace

    import httpx
    import yaml
    from netutil import free_port

    work = tmp_path_factory.mktemp("ray-served")
    index = work / "milvus.db"  # Milvus Lite: one process per file, and `served` may hold the original
    (shutil.copytree if small_index.is_dir() else shutil.copy)(small_index, index)
    # Redis db 1: `served`'s greedy answers cached in db 0 must not answer for the Ray graph.
    port = free_port()
    cfg, client_key = _served_config(
        work, index, redis_server.url.rsplit("/", 1)[0] + "/1", http_port=port, grpc_port=free_port()
    )
    cfg.deployments = cfg.deployments.model_copy(update={"ingress": "proxy"})
    # Ray's metrics agent serves what replicas record (the Generator's engine figures) on a known port.
    cfg.exposure = cfg.exposure.model_copy(update={"ray_metrics_port": free_port()})
    path = work / "serving.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    ray_tmp = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, KEY_ENV: API_KEY}
    log = work / "finserve-up.log"  # a file, not a pipe nobody reads while the stack runs
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finserve.cli", "up", "--config", str(path), "--no-ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 420
        while True:
            if proc.poll() is not None:
                pytest.fail(f"finserve up exited early ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray Serve stack was not ready in time:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield SimpleNamespace(
            base=base,
            port=port,
            grpc_port=cfg.gateway.grpc_port,
            ray_metrics_port=cfg.exposure.ray_metrics_port,
            config=cfg,
            key=client_key,
            legacy_key=API_KEY,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)
