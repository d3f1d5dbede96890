"""Milvus dying after the answers were loaded: retrieval keeps answering from the answers held in memory
(no examples, never cached), and returns to the full search once Milvus is back, without a restart. The log
says so once at each end (no traceback), and pymilvus's own traceback per failed call is dropped.

Real parts: MiniLM (ONNX), a Milvus Lite gRPC server in a child process (`python -m milvus_lite server`)
that the test kills and starts again on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from netutil import free_port, wait_for_port
from prometheus_client import CollectorRegistry

from finserve.serving.retrieval import RetrievalConfig, Retriever, VectorStoreUnavailable
from finserve.serving.retrieval.pymilvus_logs import FILTER

OUTAGE_LOGGER = "finserve.serving.retrieval.outage"

RECONNECT_TRIES = 60  # bounds a hang only: one second apart


def milvus_server(data_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, timeout=60)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


class Kept(logging.Handler):
    """What pymilvus's own "pymilvus" logger would print (it has its own stderr handler and no propagation)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_milvus_down_answers_from_memory_then_recovers(
    kb_index, embedder, clock, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger=OUTAGE_LOGGER)
    pymilvus_out = Kept()
    logging.getLogger("pymilvus").addHandler(pymilvus_out)
    data = tmp_path / "milvus.db"
    (shutil.copytree if Path(kb_index).is_dir() else shutil.copy)(
        kb_index, data
    )  # the shared index stays closed
    port = free_port()
    proc = milvus_server(data, port)
    config = RetrievalConfig(
        milvus_uri=f"http://127.0.0.1:{port}",
        redis_url=None,
        milvus_retry_s=3.0,
        milvus_timeout_s=5.0,
        outage_log_every_s=3600,  # no reminder within this test: one line at each end of the outage
    )
    retriever = Retriever(config, embedder=embedder, clock=clock, registry=CollectorRegistry())
    try:
        full = await retriever.search("My PIN is blocked")
        assert full.cache == "miss" and full.examples and full.hits[0].intent == "pin_blocked"
        dropped_before = FILTER.dropped
        stop(proc)
        down = await retriever.search("Someone stole my card, what should I do?")
        fast = await retriever.search(
            "It has been two weeks and my card still hasn't arrived"
        )  # breaker open
        # Answers only: without the examples' vote the nearest answer may be a neighbour (compromised_card),
        # but the question's own answer is among the knowledge the prompt gets.
        assert (down.cache, down.examples) == ("answers", []) and "lost_or_stolen_card" in [
            h.intent for h in down.hits
        ]
        assert fast.cache == "answers" and "card_arrival" in [h.intent for h in fast.hits]
        assert (
            await retriever.search("Someone stole my card, what should I do?")
        ).cache == "answers"  # not cached
        cold = Retriever(config, embedder=embedder, clock=clock, registry=CollectorRegistry())
        try:  # one that never loaded the index holds no answers: 503 as before
            with pytest.raises(VectorStoreUnavailable):
                await cold.search("Someone stole my card")
        finally:
            await cold.aclose()
        proc = milvus_server(data, port)
        # The breaker lets one search probe Milvus per window (the fake clock moves it); the client's gRPC
        # channel reconnects with its own backoff in real time, so the probes repeat until one gets through.
        back = None
        for _ in range(RECONNECT_TRIES):
            clock.advance(3.0)
            back = await retriever.search("What exchange rate do you use?")
            if back.cache == "miss":
                break
            await asyncio.sleep(1.0)
        assert back.cache == "miss" and back.examples and back.hits[0].intent == "exchange_rate"
    finally:
        await retriever.aclose()
        stop(proc)
        logging.getLogger("pymilvus").removeHandler(pymilvus_out)
    # One warning when the outage began (per retriever: the cold one has its own), naming the error's class;
    # one line when it ended (the cold one was closed before); no traceback anywhere.
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == OUTAGE_LOGGER]
    starts = [m for level, m in lines if level == logging.WARNING]
    ends = [m for level, m in lines if level == logging.INFO]
    assert len(starts) == 2 and len(ends) == 1 and len(lines) == 3, lines
    assert all(re.match(r"Milvus unavailable \(\w+: ", m) for m in starts), starts  # e.g. MilvusException
    assert ends[0].startswith("Milvus available again after ")
    assert not any(r.exc_info or "Traceback" in r.getMessage() for r in caplog.records)
    # pymilvus did try to log its per-call tracebacks (the noise), and none of them got out.
    assert FILTER.dropped > dropped_before
    assert [r for r in pymilvus_out.records if r.levelno >= logging.WARNING] == []
