"""Fault campaign, the rows bench/fault_campaign.py does not run: what clients see, and what the audit log
holds, while a stage dies, a disk fills or the process is stopped.

Every request carries its own x-request-id, so each row can check that nothing was lost: every request
that reached finserve has exactly one audit line, and every 200 has a line with status 200.

In-process rows (the whole pipeline in this process under uvicorn, as fault_campaign.py; the real guard,
MiniLM + Milvus Lite retrieval, SmolLM2 on the CPU engine, the audit log):

  audit_full     the audit log's file system (a small tmpfs) fills up, then space returns: requests are
                 refused 503 and /readyz says not ready while it is full, nothing is answered without its
                 line, and answers resume (time measured) once space is back
  milvus_down    a Milvus Lite server (child process) is killed, then restarted on the same port:
                 answers keep coming (answers searched in memory), then full search returns (time measured)

Rows against `finserve up` (a child process: local Ray, HAProxy ingress, Ray Serve replicas), sharing
one data dir in the order given, so `replica_kill,sigkill_restart,sigterm` starts Ray twice:

  replica_kill     the Generator replica's process is SIGKILLed under load; Ray Serve starts another
  sigkill_restart  SIGTERM then SIGKILL 3 s later under load (as a supervisor does); what is left
                   running; `finserve up` again on the same data dir and ports; the audit chain verified
  sigterm          SIGTERM under load: when /readyz says 503 and when the listener closes (the clients stop
                   sending at the first probe that is not 200), in-flight requests, exit time, processes left
  soak             --soak-s seconds at --concurrency 8 with the stack's RSS sampled (slope reported)

    python -m bench.fault_rows audit_full,milvus_down [--port 18800]
    python -m bench.fault_rows replica_kill,sigkill_restart,sigterm
    python -m bench.fault_rows soak --soak-s 600

Results: bench/results/fault_<row>.json (one per row).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import machine, percentiles, write_result

QUESTIONS = [
    "How do I activate my card?",
    "My card has not arrived yet",
    "What exchange rate do you use?",
    "I lost my card, what should I do?",
    "Why was I charged a fee for a card payment?",
    "My transfer has not reached the recipient",
    "How do I change my PIN?",
    "Can I get a refund for this purchase?",
]
REPO = Path(__file__).resolve().parents[1]
VAR = REPO / "var"
MAX_TOKENS = 16


# ---- the client side: load with one id per request ----


class Load:
    """Client threads sending chat requests until ``stop`` (or ``limit`` requests); one row per request."""

    def __init__(
        self,
        base: str,
        prefix: str,
        concurrency: int,
        unique: bool = False,
        limit: int | None = None,
        max_tokens: int = MAX_TOKENS,
        pace_s: float = 0.0,
    ) -> None:
        self.base, self.prefix, self.unique, self.limit, self.max_tokens = (
            base,
            prefix,
            unique,
            limit,
            max_tokens,
        )
        self.pace_s = pace_s  # each thread starts a request at most this often (0: as soon as one ends)
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._n = 0
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(concurrency)]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 600) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        return self.rows

    def in_flight(self) -> int:
        with self._lock:
            return self._n - len(self.rows)

    def _next(self) -> int | None:
        with self._lock:
            if self.stop.is_set() or (self.limit is not None and self._n >= self.limit):
                return None
            self._n += 1
            return self._n - 1

    def _worker(self) -> None:
        with httpx.Client(timeout=300) as client:
            while (i := self._next()) is not None:
                row = ask(
                    client, self.base, f"{self.prefix}-{i:05d}", question(i, self.unique), self.max_tokens
                )
                with self._lock:
                    self.rows.append(row)
                wait = self.pace_s - (row["done"] - row["started"])
                if wait > 0:
                    self.stop.wait(wait)


def question(i: int, unique: bool) -> str:
    q = QUESTIONS[i % len(QUESTIONS)]
    return f"{q} (question {i})" if unique else q


def ask(client: httpx.Client, base: str, rid: str, text: str, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    t0 = time.monotonic()
    row: dict[str, Any] = {"id": rid, "started": t0}
    try:
        r = client.post(
            f"{base}/v1/chat/completions",
            headers={"x-request-id": rid},
            json={
                "model": "finserve-banking",
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": text}],
            },
        )
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        info = body.get("finserve") or {}
        row.update(
            status=r.status_code,
            degraded=info.get("degraded"),
            cache=info.get("cache"),
            code=(body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None,
            retry_after=r.headers.get("retry-after"),
        )
    except httpx.HTTPError as exc:
        row.update(status=type(exc).__name__, degraded=None, cache=None, code=None, retry_after=None)
    row["done"] = time.monotonic()
    return row


def summary(rows: list[dict[str, Any]], at: float | None = None) -> dict[str, Any]:
    """Counts by outcome and latency percentiles; with ``at`` (an event's time), what happened to the
    requests in flight at that moment."""
    out: dict[str, Any] = {
        "requests": len(rows),
        "outcomes": dict(Counter(outcome(r) for r in rows)),
        "failed": sum(r["status"] != 200 for r in rows),
        "latency_ms": percentiles([(r["done"] - r["started"]) * 1000 for r in rows]),
    }
    if at is not None:
        hit = [r for r in rows if r["started"] < at < r["done"]]
        out["in_flight_at_event"] = {"requests": len(hit), "outcomes": dict(Counter(outcome(r) for r in hit))}
    return out


def outcome(row: dict[str, Any]) -> str:
    if row["status"] == 200:
        return f"200:{row['degraded']}" if row["degraded"] else "200"
    return f"{row['status']}:{row['code']}" if row.get("code") else str(row["status"])


def first_after(rows: list[dict[str, Any]], at: float, pred: Any) -> float | None:
    """Seconds from ``at`` until the first request started after it and satisfying ``pred`` completed."""
    done = [r["done"] for r in rows if r["started"] >= at and pred(r)]
    return round(min(done) - at, 2) if done else None


def audit_check(path: Path, rows: list[dict[str, Any]], key_path: Path | None = None) -> dict[str, Any]:
    """Each request's audit lines: how many requests have none or several, whether every 200 has a 200
    line, and the chain's verification."""
    from finserve.serving.audit import read_records, verify_chain

    ids = {r["id"] for r in rows}
    lines: dict[str, list[dict[str, Any]]] = {}
    for rec in read_records(path):
        if rec.get("request_id") in ids:
            lines.setdefault(rec["request_id"], []).append(rec)
    reached = [r for r in rows if isinstance(r["status"], int)]  # an HTTP answer came back
    from finserve.serving.audit.checkpoint import read_key

    report = verify_chain(path, read_key(key_path) if key_path and key_path.exists() else None)
    return {
        "requests": len(rows),
        "answered_over_http": len(reached),
        "audit_lines": sum(len(v) for v in lines.values()),
        "without_line": _few(sorted(r["id"] for r in rows if r["id"] not in lines)),
        "with_several_lines": sorted(k for k, v in lines.items() if len(v) > 1),
        "answered_200_without_200_line": sorted(
            r["id"]
            for r in rows
            if r["status"] == 200 and not any(x["status"] == 200 for x in lines.get(r["id"], []))
        ),
        "line_statuses": dict(
            Counter(
                str(x["status"]) + (f":{x['degraded']}" if x.get("degraded") else "")
                for v in lines.values()
                for x in v
            )
        ),
        "chain": {
            "ok": report.ok,
            "lines": report.lines,
            "first_bad_line": report.first_bad_line,
            "bad_file": report.bad_file,
            "reason": report.reason,
            "checkpoints_verified": report.checkpoints_verified,
        },
    }


def _few(ids: list[str], n: int = 20) -> dict[str, Any]:
    return {"count": len(ids), "first": ids[:n]}


def ready(base: str, timeout: float = 5) -> int | str:
    try:
        return httpx.get(f"{base}/readyz", timeout=timeout).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


# ---- in-process rows ----


def _config(audit: Path, milvus_uri: str | None = None):
    from finserve.serving.config import ServingConfig

    cfg = ServingConfig()
    cfg.audit = cfg.audit.model_copy(update={"path": audit})
    cfg.generator = cfg.generator.model_copy(update={"max_new_tokens": MAX_TOKENS})
    cfg.exposure = cfg.exposure.model_copy(update={"metrics_port": None, "metrics_on_api_port": True})
    if milvus_uri:
        cfg.retrieval = cfg.retrieval.model_copy(
            update={"milvus_uri": milvus_uri, "milvus_retry_s": 3.0, "milvus_timeout_s": 2.0}
        )
    return cfg


def _serve(cfg, port: int):
    from bench.fault_campaign import serve

    return serve(cfg, port)


def row_audit_full(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The audit log on a 24 MiB tmpfs (readiness wants 8 MiB free); filled by a file, then emptied."""
    mount = work / "auditfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)], check=True)
    filler = mount / "filler"
    try:
        cfg = _config(mount / "audit.jsonl")
        cfg.audit = cfg.audit.model_copy(update={"min_free_bytes": 8 * 1024 * 1024})
        server = _serve(cfg, args.port)
        base = f"http://127.0.0.1:{args.port}"
        phases: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        try:
            before = Load(base, "full-before", 2, limit=args.per_phase).start().join()
            phases["before"] = {**summary(before), "readyz": ready(base)}
            # Full: a file takes all the space but a few KiB (appends fail with ENOSPC).
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], stderr=subprocess.DEVNULL, check=False
            )
            full_ready = ready(base)
            full = Load(base, "full-during", 2, limit=args.per_phase).start().join()
            phases["full"] = {
                **summary(full),
                "readyz": full_ready,
                "readyz_body": httpx.get(f"{base}/readyz", timeout=5).json(),
                "free_bytes": shutil.disk_usage(mount).free,
            }
            filler.unlink()
            at = time.monotonic()
            back = None
            while back is None and time.monotonic() - at < 60:
                if ready(base) == 200:
                    back = time.monotonic() - at
                else:
                    time.sleep(0.1)
            after = Load(base, "full-after", 2, limit=args.per_phase).start().join()
            phases["space_back"] = {
                **summary(after),
                "readyz": ready(base),
                "first_200_s": first_after(after, at, lambda r: r["status"] == 200),
                "ready_again_s": round(back, 2) if back is not None else None,
            }
            rows = before + full + after
        finally:
            server.should_exit = True
            time.sleep(2)
        audit = audit_check(mount / "audit.jsonl", rows, cfg.audit.key_path())
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    return {
        "setup": {
            "audit_fs": "tmpfs 24 MiB",
            "min_free_bytes": 8 * 1024 * 1024,
            "refuse_below_free_bytes": cfg.audit.refuse_below_free_bytes,
            "status_ttl_s": cfg.audit.status_ttl_s,
            "client_threads": 2,
            "per_phase": args.per_phase,
            "max_tokens": MAX_TOKENS,
        },
        "phases": phases,
        "audit": audit,
    }


def row_milvus_down(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A Milvus Lite gRPC server on a copy of the index; killed under load, restarted on the same port."""
    data = work / "milvus.db"
    shutil.copytree(VAR / "index" / "milvus.db", data)
    port = args.port + 5

    def milvus() -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "milvus_lite",
                "server",
                "--data-dir",
                str(data),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(port, 120)
        return proc

    proc = milvus()
    cfg = _config(work / "audit" / "audit.jsonl", f"http://127.0.0.1:{port}")
    server = _serve(cfg, args.port)
    base = f"http://127.0.0.1:{args.port}"
    phases: dict[str, Any] = {}
    try:
        before = Load(base, "milvus-before", 2, unique=True, limit=args.per_phase).start().join()
        phases["before"] = summary(before)
        load = Load(base, "milvus-down", 2, unique=True).start()
        time.sleep(3)
        killed_at = time.monotonic()
        proc.kill()
        proc.wait()
        time.sleep(args.down_s)
        restarted_at = time.monotonic()
        proc = milvus()
        port_back_s = round(time.monotonic() - restarted_at, 2)
        full_search = None
        while full_search is None and time.monotonic() - restarted_at < 180:
            time.sleep(1)
            full_search = first_after(
                load.rows[:], restarted_at, lambda r: r["status"] == 200 and r["cache"] == "miss"
            )
        time.sleep(3)
        load.stop.set()
        rows = load.join()
        down = [r for r in rows if r["started"] < restarted_at]
        up = [r for r in rows if r["started"] >= restarted_at]
        phases["down"] = {
            **summary(down, killed_at),
            "by_retrieval": dict(Counter(str(r["cache"]) for r in down)),
        }
        phases["restarted"] = {
            **summary(up),
            "by_retrieval": dict(Counter(str(r["cache"]) for r in up)),
            "milvus_port_open_s": port_back_s,
            "first_full_search_answer_s": full_search,
        }
        all_rows = before + rows
    finally:
        server.should_exit = True
        time.sleep(2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {
        "setup": {
            "milvus": "Milvus Lite server (child process), full Banking77 index",
            "milvus_retry_s": 3.0,
            "milvus_timeout_s": 2.0,
            "down_s": args.down_s,
            "client_threads": 2,
            "questions": "each one unique (no retrieval cache hit)",
            "max_tokens": MAX_TOKENS,
        },
        "phases": phases,
        "audit": audit_check(cfg.audit.path, all_rows, cfg.audit.key_path()),
    }


def _wait_port(port: int, timeout: float) -> None:
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


# ---- `finserve up` rows ----


class Stack:
    """`finserve up` as a child process on a data dir of its own (index copied, model and adapters linked)."""

    def __init__(self, work: Path, port: int, generator_breaker: bool = True) -> None:
        self.work, self.http, self.grpc = work, port + 1, port + 2
        self.data = work / "data"
        self.base = f"http://127.0.0.1:{self.http}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        if not self.data.exists():
            self.data.mkdir()
            shutil.copytree(VAR / "index", self.data / "index")
            for name in ("models", "adapters"):
                (self.data / name).symlink_to(VAR / name)
        self.config = work / "serving.yaml"
        self.config.write_text(
            f"generator: {{max_new_tokens: {MAX_TOKENS}}}\n"
            "exposure: {metrics_port: null, metrics_on_api_port: true}\n"
            f"degrade: {{generator_breaker: {{enabled: {str(generator_breaker).lower()}}}}}\n"
        )
        self.audit = self.data / "audit" / "audit.jsonl"
        self.generator_breaker = generator_breaker
        self.seen: dict[int, str] = {}  # every pid of the stack's tree seen, with its name
        self.ray_tmp = f"/tmp/fr{os.getpid()}"  # short: Ray's socket paths must fit 107 bytes

    def start(self, timeout: float = 900) -> dict[str, Any]:
        self.starts += 1
        env = {**os.environ, "FINSERVE_DATA_DIR": str(self.data), "RAY_TMPDIR": self.ray_tmp}
        env.pop("FINSERVE_DEFAULT_ADAPTER", None)
        log = open(self.work / f"up-{self.starts}.log", "wb")  # noqa: SIM115 - the child writes it
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [
                str(REPO / ".venv/bin/finserve"),
                "up",
                "-c",
                str(self.config),
                "--port",
                str(self.http),
                "--grpc-port",
                str(self.grpc),
                "--no-ingest",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                return {"ready": False, "exit_code": self.proc.returncode, "log_tail": self.log_tail()}
            if ready(self.base) == 200:
                self.note_tree()
                return {"ready": True, "ready_s": round(time.monotonic() - t0, 1)}
            time.sleep(1)
        return {"ready": False, "timeout_s": timeout, "log_tail": self.log_tail()}

    def log_tail(self, n: int = 25) -> list[str]:
        text = (self.work / f"up-{self.starts}.log").read_text(errors="replace")
        return text.splitlines()[-n:]

    def tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def note_tree(self) -> list[psutil.Process]:
        procs = self.tree()
        for p in procs:
            try:
                self.seen[p.pid] = _name(p)
            except psutil.NoSuchProcess:
                pass
        return procs

    def replicas(self, deployment: str) -> list[psutil.Process]:
        return [
            p for p in self.note_tree() if _name(p).startswith(f"ray::ServeReplica:finserve:{deployment}")
        ]

    def rss_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.note_tree():
            try:
                name = _name(p).split(" ")[0][:60]
                out[name] = out.get(name, 0.0) + p.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
        return out

    def alive_seen(self) -> dict[int, str]:
        """Processes this stack ran that still run (zombies count as gone)."""
        out = {}
        for pid, name in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE and p.create_time() <= time.time():
                    out[pid] = name
            except psutil.NoSuchProcess:
                continue
        return out

    def wait_exit(self, timeout: float) -> float | None:
        t0 = time.monotonic()
        try:
            self.proc.wait(timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            return None
        return round(time.monotonic() - t0, 2)

    def kill_leftovers(self) -> list[int]:
        """Ends what this stack left running: only pids it was seen to own."""
        left = list(self.alive_seen())
        for pid in left:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        return left

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.note_tree()
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(90) is None:
                self.proc.kill()
                self.proc.wait()
        time.sleep(3)
        self.kill_leftovers()
        self.proc = None


def _name(p: psutil.Process) -> str:
    try:
        cmd = p.cmdline()
        return " ".join(cmd[:3]) if cmd else p.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return p.name() if p.is_running() else "?"


def _ensure(stack: Stack, out: dict[str, Any]) -> bool:
    if stack.proc is not None and stack.proc.poll() is None:
        return True
    started = stack.start()
    out["stack_start"] = started
    return started["ready"]


def row_replica_kill(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = {
        "setup": {"client_threads": args.concurrency_kill, "max_tokens": MAX_TOKENS, "pace_s": args.pace_s}
    }
    if not _ensure(stack, out):
        return out
    [victim] = stack.replicas("Generator")
    # Paced: answers that come back in milliseconds (the fallback) must not turn the clients into a flood
    # (4 closed-loop threads then sent 400 requests/s, rate-limited 429, and slowed the replacement's start).
    load = Load(stack.base, "replica", args.concurrency_kill, pace_s=args.pace_s).start()
    time.sleep(args.warm_s)
    while load.in_flight() == 0:
        time.sleep(0.1)
    at = time.monotonic()
    in_flight = load.in_flight()
    victim.kill()
    back = None
    while back is None and time.monotonic() - at < 300:
        fresh = [p for p in stack.replicas("Generator") if p.pid != victim.pid]
        back = round(time.monotonic() - at, 2) if fresh else None
        time.sleep(0.2)
    time.sleep(args.after_s)
    while (
        first_after(load.rows[:], at, lambda r: r["status"] == 200 and not r["degraded"]) is None
        and time.monotonic() - at < 300
    ):
        time.sleep(1)
    load.stop.set()
    rows = load.join()
    first_generated = first_after(rows, at, lambda r: r["status"] == 200 and not r["degraded"])
    # The window without a generator: requests sent after the kill until the first generated answer came back.
    window = [r for r in rows if at <= r["started"] < at + (first_generated or 0.0)]
    out.update(
        {
            "generator_breaker": stack.generator_breaker,
            "no_replica_window": summary(window),
            "killed": {
                "pid": victim.pid,
                "name": _name(victim) if victim.is_running() else "ServeReplica:finserve:Generator",
                "in_flight_at_kill": in_flight,
            },
            "replica_process_back_s": back,
            "first_generated_answer_after_kill_s": first_generated,
            "before": summary([r for r in rows if r["done"] <= at]),
            "after": summary([r for r in rows if r["done"] > at], at),
            "audit": audit_check(stack.audit, rows, stack.audit.with_name("checkpoint.key")),
        }
    )
    return out


def row_sigterm(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = {
        "setup": {
            "client_threads": args.concurrency_kill,
            "max_tokens": MAX_TOKENS,
            "grace_s": args.grace_s,
            "clients": "stop sending at the first /readyz that is not 200, as a load balancer would",
        }
    }
    if not _ensure(stack, out):
        return out
    load = Load(stack.base, "sigterm", args.concurrency_kill).start()
    time.sleep(args.warm_s)
    while load.in_flight() == 0:
        time.sleep(0.1)
    probes: list[tuple[float, int | str]] = []
    stop_probe = threading.Event()

    def probe() -> None:
        while not stop_probe.is_set():
            status = ready(stack.base, timeout=2)
            probes.append((time.monotonic(), status))
            if status != 200:
                load.stop.set()  # the load balancer saw it: nothing new is sent; what is in flight goes on
            time.sleep(0.2)

    stack.note_tree()
    at = time.monotonic()
    in_flight = load.in_flight()
    stack.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    exited = stack.wait_exit(args.grace_s)
    if exited is None:
        stack.proc.kill()  # type: ignore[union-attr]
        stack.proc.wait()  # type: ignore[union-attr]
    exit_code = stack.proc.returncode  # type: ignore[union-attr]
    stop_probe.set()
    load.stop.set()
    rows = load.join()
    time.sleep(5)
    left = stack.alive_seen()
    stack.kill_leftovers()
    stack.proc = None
    after = [(t - at, s) for t, s in probes if t >= at]
    first_503 = next((round(dt, 2) for dt, s in after if s == 503), None)
    closed = next((round(dt, 2) for dt, s in after if not isinstance(s, int)), None)
    last_answer = max((r["done"] for r in rows if r["started"] < at and r["status"] == 200), default=None)
    drain_log = [
        line.strip()
        for line in stack.log_tail(200)
        if "drain" in line or "SIGTERM" in line or "stopping" in line
    ]
    out.update(
        {
            "in_flight_at_sigterm": in_flight,
            "readyz_503_after_s": first_503,
            "listener_closed_after_s": closed,
            "readyz_after_sigterm": dict(Counter(str(s) for _, s in after)),
            "last_in_flight_answer_after_s": round(last_answer - at, 2)
            if last_answer and last_answer > at
            else None,
            "exit_after_s": exited,
            "exit_code": exit_code,
            "left_running_5s_after_exit": left,
            "console": drain_log,
            "before": summary([r for r in rows if r["done"] <= at]),
            "in_flight": summary([r for r in rows if r["started"] < at < r["done"]], at),
            "sent_after_sigterm": summary([r for r in rows if r["started"] >= at]),
            "audit": audit_check(stack.audit, rows, stack.audit.with_name("checkpoint.key")),
        }
    )
    return out


def row_sigkill_restart(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = {
        "setup": {
            "client_threads": args.concurrency_kill,
            "max_tokens": MAX_TOKENS,
            "sigkill_after_sigterm_s": 3,
        }
    }
    if not _ensure(stack, out):
        return out
    load = Load(stack.base, "sigkill", args.concurrency_kill).start()
    time.sleep(args.warm_s)
    while load.in_flight() == 0:
        time.sleep(0.1)
    stack.note_tree()
    at = time.monotonic()
    in_flight = load.in_flight()
    stack.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    load.stop.set()  # the clients send nothing new (refused connections would only count the retries)
    time.sleep(3)
    stack.note_tree()
    stack.proc.kill()  # type: ignore[union-attr]
    stack.proc.wait()  # type: ignore[union-attr]
    rows = load.join(120)
    time.sleep(10)
    left = stack.alive_seen()
    out.update(
        {
            "in_flight_at_sigterm": in_flight,
            "left_running_10s_after_sigkill": left,
            "requests": summary(rows, at),
            "audit_after_kill": audit_check(stack.audit, rows, stack.audit.with_name("checkpoint.key")),
        }
    )
    stack.proc = None
    # Again on the same data dir and ports, leftovers still there, as `make up` would be run.
    out["restart"] = stack.start()
    if out["restart"]["ready"]:
        with httpx.Client(timeout=300) as client:
            out["restart"]["first_request"] = outcome(
                ask(client, stack.base, "sigkill-after-00000", QUESTIONS[0])
            )
        out["restart"]["leftovers_of_first_run_still_running"] = {
            pid: name for pid, name in stack.alive_seen().items() if pid in left
        }
        out["audit_after_restart"] = audit_check(stack.audit, rows, stack.audit.with_name("checkpoint.key"))[
            "chain"
        ]
    return out


def row_soak(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = {
        "setup": {
            "client_threads": args.concurrency,
            "seconds": args.soak_s,
            "max_tokens": MAX_TOKENS,
            "rss_every_s": 10,
        }
    }
    if not _ensure(stack, out):
        return out
    samples: list[dict[str, Any]] = []
    load = Load(stack.base, "soak", args.concurrency).start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.soak_s:
        by = stack.rss_mb()
        samples.append(
            {
                "t_s": round(time.monotonic() - t0, 1),
                "rss_mb": round(sum(by.values()), 1),
                "done": len(load.rows),
                "by_process": {k: round(v, 1) for k, v in by.items()},
            }
        )
        time.sleep(10)
    load.stop.set()
    rows = load.join()
    out.update(
        {
            "requests": summary(rows),
            "rss": rss_trend(samples),
            "throughput_rps": round(len(rows) / args.soak_s, 3),
            "latency_by_third": [summary(third)["latency_ms"] for third in _thirds(rows)],
            "rss_samples": [{k: s[k] for k in ("t_s", "rss_mb", "done")} for s in samples],
            "rss_by_process_first_last": {
                "first": samples[0]["by_process"],
                "last": samples[-1]["by_process"],
            },
            "audit": audit_check(stack.audit, rows, stack.audit.with_name("checkpoint.key")),
        }
    )
    return out


def _thirds(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    ordered = sorted(rows, key=lambda r: r["started"])
    n = len(ordered)
    return [ordered[: n // 3], ordered[n // 3 : 2 * n // 3], ordered[2 * n // 3 :]]


def rss_trend(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares slope of the stack's total RSS over the run's second half (the first half is warm-up:
    caches, allocator arenas), and the growth from the first to the last sample."""
    import statistics

    half = samples[len(samples) // 2 :] if len(samples) >= 6 else samples
    xs, ys = [s["t_s"] / 60 for s in half], [s["rss_mb"] for s in half]
    slope = statistics.linear_regression(xs, ys).slope if len(half) >= 2 else float("nan")
    first, mid, last = samples[0]["rss_mb"], half[0]["rss_mb"], samples[-1]["rss_mb"]
    return {
        "first_mb": first,
        "last_mb": last,
        "growth_pct": round((last - first) / first * 100, 2),
        "growth_pct_second_half": round((last - mid) / mid * 100, 2),
        "slope_mb_per_min_second_half": round(slope, 3),
        "second_half_mean_mb": round(statistics.fmean(ys), 1),
    }


IN_PROCESS = {"audit_full": row_audit_full, "milvus_down": row_milvus_down}
STACK = {
    "replica_kill": row_replica_kill,
    "sigterm": row_sigterm,
    "sigkill_restart": row_sigkill_restart,
    "soak": row_soak,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", help=f"Comma-separated rows: {', '.join([*IN_PROCESS, *STACK])}.")
    ap.add_argument(
        "--port", type=int, default=18800, help="Base port: HTTP; +1 and +2 finserve up; +5 Milvus."
    )
    ap.add_argument("--per-phase", type=int, default=6, help="Requests per phase of the in-process rows.")
    ap.add_argument("--down-s", type=float, default=20, help="milvus_down: seconds Milvus stays down.")
    ap.add_argument("--concurrency", type=int, default=8, help="soak: client threads.")
    ap.add_argument(
        "--concurrency-kill", type=int, default=4, help="replica_kill, sigterm, sigkill: client threads."
    )
    ap.add_argument("--soak-s", type=float, default=600, help="soak: seconds.")
    ap.add_argument("--warm-s", type=float, default=15, help="Seconds of load before a kill.")
    ap.add_argument(
        "--after-s", type=float, default=30, help="replica_kill: seconds of load after the replica is back."
    )
    ap.add_argument(
        "--grace-s", type=float, default=30, help="sigterm: the grace period (Kubernetes' default)."
    )
    ap.add_argument(
        "--pace-s",
        type=float,
        default=0.5,
        help="replica_kill: each client thread starts a request at most this often (0: closed loop).",
    )
    ap.add_argument(
        "--generator-breaker",
        choices=("on", "off"),
        default="on",
        help="`finserve up` rows: degrade.generator_breaker.enabled (off: calls wait in Ray Serve's queue "
        "for a replacement replica, the behaviour before the breaker; replica_kill then writes "
        "fault_replica_kill_breaker_off.json).",
    )
    args = ap.parse_args()
    os.environ.setdefault("FINSERVE_DATA_DIR", str(VAR))
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in IN_PROCESS and r not in STACK]
    if unknown:
        raise SystemExit(f"unknown rows: {unknown}")
    work = Path(tempfile.mkdtemp(prefix="fault-rows-"))
    breaker = args.generator_breaker == "on"
    stack = Stack(work, args.port, breaker) if any(r in STACK for r in rows) else None
    try:
        for name in rows:
            t0 = time.monotonic()
            at_start = machine(("ray", "httpx", "milvus-lite", "torch"))
            result = IN_PROCESS[name](args, work) if name in IN_PROCESS else STACK[name](args, stack)
            suffix = "_breaker_off" if name == "replica_kill" and not breaker else ""
            path = write_result(
                f"fault_{name}{suffix}",
                {"machine": at_start, "wall_s": round(time.monotonic() - t0, 1), **result},
            )
            print(path.read_text(), flush=True)
    finally:
        if stack is not None:
            stack.stop()
            shutil.rmtree(stack.ray_tmp, ignore_errors=True)
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
