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
