"""Degradation fixtures: generator upstreams that are down or hang, on real sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from netutil import free_port


@pytest.fixture
def refused_url() -> str:
    """An OpenAI-compatible base URL where nothing listens: every call is refused (a generator that is down)."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A base URL whose TCP listener takes connections into its backlog and never answers (a generator that
    hangs): only a deadline ends a call to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()
