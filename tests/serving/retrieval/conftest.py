"""Retrieval fixtures: the real MiniLM embedder, real Milvus Lite indexes in tmp dirs, real redis-servers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakeclock import FakeClock
from kbutil import banking77_rows, build_index
from netutil import free_port, spawn_redis

from finserve.serving.retrieval import Embedder

# Five intents with ten real examples each: seconds to index, yet every query has near competitors
# (card_arrival vs lost_or_stolen_card, activate_my_card vs pin_blocked).
KB_INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "activate_my_card", "pin_blocked")


@dataclass
class RedisProc:
    """A redis-server this test owns: it may kill it and start it again on the same port."""

    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = spawn_redis(self.port, self.workdir)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def keys(self) -> list[str]:
        import redis

        with redis.Redis(port=self.port, decode_responses=True) as client:
            return sorted(client.keys("*"))

    def values(self) -> list[str]:
        import redis

        with redis.Redis(port=self.port, decode_responses=True) as client:
            return [client.get(k) or "" for k in client.keys("*")]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProc]:
    """A fresh redis-server per test (isolated keys; killable)."""
    proc = RedisProc(port=free_port(), workdir=tmp_path)
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The real all-MiniLM-L6-v2 on the ONNX backend (exported once per session into a tmp dir)."""
    return Embedder(threads=1, cache_dir=tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def kb_rows() -> list[tuple[str, str]]:
    return banking77_rows(KB_INTENTS, per_intent=10)


@pytest.fixture(scope="session")
def kb_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, kb_rows) -> str:
    """A Milvus Lite file with all 77 answers and 50 examples, shared read-only by the session."""
    return str(build_index(tmp_path_factory.mktemp("kb") / "milvus.db", kb_rows, embedder))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
