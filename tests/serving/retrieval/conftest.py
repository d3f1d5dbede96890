"""Retrieval fixtures: the real MiniLM embedder, real Milvus Lite indexes in tmp dirs, real redis-servers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from finserve.serving.paths import banking77_csv
from finserve.serving.retrieval import Embedder, RetrievalConfig, ingest, read_banking77
from netutil import free_port, wait_for_port

# Five intents with ten real examples each: seconds to index, yet every query has near competitors
# (card_arrival vs lost_or_stolen_card, activate_my_card vs pin_blocked).
KB_INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "activate_my_card", "pin_blocked")


def kb_subset(per_intent: int = 10) -> list[tuple[str, str]]:
    counts = dict.fromkeys(KB_INTENTS, 0)
    rows = []
    for text, intent in read_banking77(banking77_csv()):
        if intent in counts and counts[intent] < per_intent:
            rows.append((text, intent))
            counts[intent] += 1
    return rows


class FakeClock:
    """A monotonic clock the test moves by hand (TTL, breaker and refresh windows without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make system-deps`")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

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
    return kb_subset()


@pytest.fixture(scope="session")
def kb_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, kb_rows) -> str:
    """A Milvus Lite file with all 77 answers and 50 examples, shared read-only by the session."""
    uri = str(tmp_path_factory.mktemp("kb") / "milvus.db")
    ingest(RetrievalConfig(milvus_uri=uri, redis_url=None), rows=kb_rows, progress=False, embedder=embedder)
    return uri


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
