"""What every benchmark reports the same way (the machine, latency percentiles), and the real services
a benchmark starts for itself."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# The instruction-set extensions the CPU paths choose between (machines differ: one had AVX-512 VNNI/BF16).
CPU_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and which of CPU_FLAGS it has (/proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu_model": "", "cpu_flags": []}
    lines = text.splitlines()
    have = {f for ln in lines if ln.startswith("flags") for f in ln.split(":", 1)[1].split()}
    return {
        "cpu_model": next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), ""),
        "cpu_flags": [f for f in CPU_FLAGS if f in have],
    }


def machine(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    def _v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **cpu_info(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "packages": {name: _v(name) for name in packages},
    }


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    if len(ordered) < 2:
        only = ordered[0] if ordered else float("nan")
        return {"p50_ms": only, "p95_ms": only, "mean_ms": only, "max_ms": only, "n": len(ordered)}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 3),
        "p95_ms": round(cuts[94], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "max_ms": round(ordered[-1], 3),
        "n": len(ordered),
    }


def write_result(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A real redis-server (no persistence) on a free loopback port: the process and its URL, once it
    accepts connections. The caller kills it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make system-deps`")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")
