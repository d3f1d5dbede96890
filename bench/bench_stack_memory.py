"""Resident memory of every Ray Serve replica of the stack a platform team starts (``make up``: ``finserve up`` on the
embedded defaults serving the shipped adapter version, so its intent head runs too), after two answered questions; ``--baseline`` runs the same from another checkout (an earlier commit,
its kernels copied or built in place) for a before/after in one call.

    python -m bench.bench_stack_memory [--baseline PATH] [--adapter banking77@2.1.0] [--port 19411]
                                       [--out bench/results/stack_memory.json]

Each tree gets its own data dir (a copy of this checkout's ``var/``: index, models, adapters) and Ray temp dir,
and is stopped (SIGINT, then SIGKILL of what is left) before the next starts. Memory is each Ray actor's VmRSS
from /proc, by the process title Ray gives it (``ray::ServeReplica:finserve:Generator`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import machine, write_result

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("How do I reset my card PIN?", "What is an IBAN?")


def _get(url: str, body: dict[str, Any] | None = None, timeout: float = 120) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def replicas() -> dict[str, int]:
    """Ray actor title -> VmRSS in MB, for the Serve processes on this machine."""
    out: dict[str, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith(("ray::ServeReplica", "ray::ProxyActor", "ray::ServeController")):
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        out[title.split(".")[0].split()[0]] = round(rss / 1024)
    return out


def one(tree: Path, port: int, adapter: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="stack-memory-"))
    data, ray_tmp = work / "data", work / "ray"
    shutil.copytree(ROOT / "var", data, symlinks=True)
    ray_tmp.mkdir()
    env = {
        **os.environ,
        "FINSERVE_DATA_DIR": str(data),
        "RAY_TMPDIR": str(ray_tmp),
        "PYTHONPATH": str(tree),
        # What `make up` serves (the Makefile's DEFAULT_ADAPTER): its intent head runs in the Generator replica.
        "FINSERVE_DEFAULT_ADAPTER": adapter,
    }
    log = open(work / "up.log", "w")  # noqa: SIM115  (closed below, after the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "finserve.cli", "up", "--port", str(port), "--grpc-port", str(port + 1)],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if _get(f"{base}/readyz", timeout=5).get("ready"):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - started > 400:
                raise SystemExit(f"{tree}: the stack did not become ready (log: {work / 'up.log'})")
            time.sleep(2)
        ready_s = round(time.monotonic() - started, 1)
        tokens, intents = [], []
        for question in QUESTIONS:
            answer = _get(
                f"{base}/v1/chat/completions",
                {
                    "model": "finserve-banking",
                    "messages": [{"role": "user", "content": question}],
                    "max_tokens": 48,
                },
            )
            tokens.append(answer["usage"]["completion_tokens"])
            served = answer.get("finserve", {})
            intents.append(f"{served.get('adapter')}: {served.get('intent')}")
        time.sleep(2)
        return {
            "tree": str(tree),
            "ready_s": ready_s,
            "completion_tokens": tokens,
            "intents": intents,
            "rss_mb": replicas(),
        }
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited (a failed start)
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        # Ray's own processes leave with the driver; a straggler would inflate the next tree's figures.
        subprocess.run(["pkill", "-9", "-f", str(ray_tmp)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure alike")
    parser.add_argument("--port", type=int, default=19411)
    parser.add_argument(
        "--adapter", default="banking77@2.1.0", help="FINSERVE_DEFAULT_ADAPTER, as `make up` sets it"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    rows = {}
    for name, tree in trees.items():
        rows[name] = one(tree, args.port, args.adapter)
        print(name, json.dumps(rows[name]), flush=True)
    write_result(
        "stack_memory", {"machine": machine(("ray", "torch", "transformers", "peft")), "rows": rows}, args.out
    )


if __name__ == "__main__":
    main()
