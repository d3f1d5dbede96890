"""Serving fixtures: a small real index (MiniLM + Milvus Lite) and a whole in-process stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kbutil import banking77_rows, build_index

# A handful of intents keeps the index build to seconds while still making retrieval and intent
# choose between real competitors.
INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "transfer_not_received_by_recipient",
           "card_payment_fee_charged", "activate_my_card")


@pytest.fixture(scope="session")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Milvus Lite file holding the 77 answers and a few real examples of six intents."""
    return build_index(tmp_path_factory.mktemp("index") / "milvus.db", banking77_rows(INTENTS, per_intent=12))


@pytest.fixture
def local_client(tmp_path: Path, small_index: Path, redis_server) -> Iterator:
    """FastAPI TestClient over the whole pipeline in this process (no Ray), with a real Redis L2."""
    from fastapi.testclient import TestClient

    from finserve.serving.local import create_local_app
    from stack_config import stack_config

    cfg = stack_config(tmp_path, small_index, redis_server.url)
    with TestClient(create_local_app(cfg)) as client:
        client.config = cfg  # type: ignore[attr-defined]
        yield client


API_KEY = "sk-test-finserve"  # the key the `served` stack requires (an env var of its own, set for the module)


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

    from finserve.serving.guard.config import GuardConfig
    from finserve.serving.local import create_local_app
    from stack_config import stack_config

    from finserve.serving.access.config import AuthConfig
    from finserve.serving.access.keys import KeysFile, new_key, write_keys

    key_env = "FINSERVE_TEST_SERVED_API_KEY"
    work = tmp_path_factory.mktemp("served")
    cfg = stack_config(work, small_index, redis_server.url, api_key_env=key_env)
    cfg.guard = GuardConfig.model_validate({**cfg.guard.model_dump(), "policies": {"US_SSN": "block"}})
    # A client's own API key (serving/access): inference and pinning a served version, default tenant.
    client_key, record = new_key("served-tests", ["default"], ["infer", "adapter:override"])
    write_keys(work / "keys.json", KeysFile(keys=[record]))
    cfg.auth = AuthConfig(keys_file=str(work / "keys.json"))
    app = create_local_app(cfg, grpc_port=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    os.environ[key_env] = API_KEY  # the legacy single key works beside it (scope infer)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start the app")
            time.sleep(0.2)
        yield SimpleNamespace(base=f"http://127.0.0.1:{port}", port=port, grpc_port=app.state.grpc_port,
                              config=cfg, key=client_key, legacy_key=API_KEY)
    finally:
        server.should_exit = True
        thread.join(timeout=120)
        os.environ.pop(key_env, None)
