"""The record a running `finserve up` keeps in its data dir, so that the next one can stop what it left behind.

A `finserve up` killed before its shutdown finished (SIGKILL a few seconds after SIGTERM, as a supervisor
or an OOM kill does) cannot run its own clean-up. Ray's daemons share the driver's fate (Ray's reaper),
but the haproxy that Ray Serve's HAProxyManager started is orphaned and keeps the HTTP and gRPC ports, so
the next start failed ("Some protocols failed to start their listeners!"). Each run writes
``DATA_DIR/run/finserve-up.json`` (its pid and start time, its haproxy config path) and removes it when it
stops cleanly. The next run on the same data dir reads it: when that process is gone, it stops the haproxy
processes started with exactly that config (haproxy_procs.started_with) and removes their private folder.
A run that is still alive, and every other data dir's stack, are left alone.

The record also names the run's Ray cluster (its GCS address and token-authentication mode): `finserve drain` on
the same data dir joins exactly that cluster, whatever else runs on the host (serving/drain/join.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

import psutil
from pydantic import Field, ValidationError

from finserve.contracts import StrictModel

from .haproxy_procs import stop_haproxy

RECORD = Path("run") / "finserve-up.json"
PRIVATE_PREFIX = "fs-haproxy-"  # runner.py's mkdtemp prefix: the only folders reap() removes


class RunRecord(StrictModel):
    """One `finserve up` on a data dir."""

    pid: int = Field(ge=1, description="The `finserve up` process.")
    started: float = Field(
        description="Its start time (psutil create_time): a reused pid is not mistaken for it."
    )
    haproxy_config: str | None = Field(None, description="The config file Ray Serve's haproxy reads (-f).")
    haproxy_dir: str | None = Field(
        None, description="The private folder holding that config and its socket."
    )
    ray_address: str | None = Field(
        None,
        description="The GCS address of the run's Ray (one loopback node): where `finserve drain` joins.",
    )
    ray_auth: Literal["token", "disabled"] | None = Field(
        None,
        description="Ray's token authentication on that cluster (Ray >= 2.5x turns it on for a new local cluster); "
        "the token itself is never recorded (Ray keeps it in ~/.ray/auth_token or RAY_AUTH_TOKEN).",
    )


class Reaped(StrictModel):
    """What a start found of an earlier run on its data dir."""

    stopped: list[int] = Field(default_factory=list, description="haproxy pids it left running, now stopped.")
    running_pid: int | None = Field(
        None, description="The earlier `finserve up` when it still runs (left alone)."
    )


def write(
    data_dir: Path,
    haproxy_config: str | None,
    haproxy_dir: str | None,
    ray_address: str | None = None,
    ray_auth: Literal["token", "disabled"] | None = None,
) -> None:
    me = psutil.Process()
    record = RunRecord(
        pid=me.pid,
        started=me.create_time(),
        haproxy_config=haproxy_config,
        haproxy_dir=haproxy_dir,
        ray_address=ray_address,
        ray_auth=ray_auth,
    )
    path = data_dir / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(record.model_dump_json())
    os.replace(tmp, path)


def clear(data_dir: Path) -> None:
    (data_dir / RECORD).unlink(missing_ok=True)


def read(data_dir: Path) -> RunRecord | None:
    """The record of the run on ``data_dir`` while that run is alive; None otherwise (none, unreadable, gone)."""
    try:
        record = RunRecord.model_validate(json.loads((data_dir / RECORD).read_text()))
    except (OSError, ValueError, ValidationError):
        return None
    return record if _alive(record) else None


def reap(data_dir: Path) -> Reaped:
    """Stops what the last run on ``data_dir`` left running, if that run is gone."""
    path = data_dir / RECORD
    try:
        record = RunRecord.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        return Reaped()
    except (ValueError, ValidationError):  # unreadable: nothing in it can be trusted to name processes
        path.unlink(missing_ok=True)
        return Reaped()
    if _alive(record):
        return Reaped(running_pid=record.pid)
    stopped = stop_haproxy(record.haproxy_config, grace_s=0) if record.haproxy_config else []
    if record.haproxy_dir and Path(record.haproxy_dir).name.startswith(PRIVATE_PREFIX):
        shutil.rmtree(record.haproxy_dir, ignore_errors=True)
    path.unlink(missing_ok=True)
    return Reaped(stopped=stopped)


def _alive(record: RunRecord) -> bool:
    try:
        proc = psutil.Process(record.pid)
        return abs(proc.create_time() - record.started) < 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
