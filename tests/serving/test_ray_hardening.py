"""Ray Serve's side listeners narrowed: HAProxy's stats page and Prometheus exporter on loopback, its admin
socket private, gRPC servers on the gateway's address. Checked against the Ray installed here, so an
upgrade that changes Ray's template fails here rather than silently exposing them again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import psutil
import pytest

from finserve.serving.config import DeploymentsConfig
from finserve.serving.ray_hardening import GRPC_HOST_ENV, grpc_address, harden_template, single_node_env
from finserve.serving.serve_env import RAY_WORKER_SETUP_HOOK, haproxy_paths, serve_env


def _template() -> str:
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    return HAPROXY_CONFIG_TEMPLATE


def test_rays_template_binds_side_listeners_everywhere_and_ours_on_loopback() -> None:
    ray_binds = re.findall(r"^\s*bind (.+)$", _template(), re.M)
    assert "*:{{" in " ".join(ray_binds) and "mode 666" in _template()  # what Ray ships (the reason for this)
    ours = harden_template(_template())
    binds = re.findall(r"^\s*bind (.+)$", ours, re.M)
    side = [b for b in binds if "frontend_host" not in b]  # the ingress ports follow gateway.host
    assert side and all(b.startswith("127.0.0.1:") for b in side), binds
    assert "mode 600 level admin" in ours and "mode 666" not in ours


def test_a_changed_template_is_an_error_not_a_silent_pass() -> None:
    with pytest.raises(ValueError, match="template changed"):
        harden_template(_template().replace("bind *:{{ config.stats_port }}", "bind *:{{ config.stats }}"))


@pytest.mark.parametrize(
    ("address", "host", "expected"),
    [
        ("[::]:9000", "127.0.0.1", "127.0.0.1:9000"),
        ("[::]:0", "::1", "[::1]:0"),
        ("[::]:9000", "0.0.0.0", "[::]:9000"),  # a container's gateway: every interface, as configured
        ("[::]:9000", None, "[::]:9000"),
        ("10.0.0.5:9000", "127.0.0.1", "10.0.0.5:9000"),  # an explicit address is Ray's choice, left alone
    ],
)
def test_grpc_servers_bind_the_gateway_host(address: str, host: str | None, expected: str) -> None:
    assert grpc_address(address, host) == expected


def test_serve_env_moves_haproxy_files_into_the_private_folder_and_names_the_grpc_host() -> None:
    env = serve_env(
        DeploymentsConfig(ingress="haproxy"), grpc_host="127.0.0.1", haproxy_dir="/tmp/fs-haproxy-x"
    )
    paths = {k: v for k, v in env.items() if k.startswith("RAY_SERVE_HAPROXY") and "TIMEOUT" not in k}
    assert paths == haproxy_paths("/tmp/fs-haproxy-x")
    assert all(v.startswith("/tmp/fs-haproxy-x") for v in haproxy_paths("/tmp/fs-haproxy-x").values())
    assert env[GRPC_HOST_ENV] == "127.0.0.1"
    assert not any(
        k.startswith("RAY_SERVE_HAPROXY")
        for k in serve_env(DeploymentsConfig(ingress="proxy"), haproxy_dir="/tmp/x")
    )
    module, _, func = RAY_WORKER_SETUP_HOOK.rpartition(".")
    assert callable(getattr(__import__(module, fromlist=[func]), func))


def test_the_hook_patches_a_worker_process(tmp_path) -> None:  # noqa: ANN001
    """apply() as Ray runs it in a fresh worker process: the template Ray renders from is ours, a gRPC
    server Ray Serve starts on `[::]` for ingress listens on the gateway's host only, and a replica's
    inter-deployment gRPC server on loopback when Ray is a single loopback node."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, concurrent.futures, grpc, psutil\n"
        "from finserve.serving.ray_hardening import apply\n"
        "apply()\n"
        "from ray.serve._private import default_impl, haproxy\n"
        "server = grpc.server(concurrent.futures.ThreadPoolExecutor(1))\n"
        "default_impl.add_grpc_address(server, '[::]:0')\n"
        "from ray.serve._private import replica\n"
        "internal = grpc.server(concurrent.futures.ThreadPoolExecutor(1))\n"
        "port = replica.add_port_to_grpc_server(internal, '[::]:0')\n"
        "server.start(); internal.start()\n"
        "listening = [c.laddr for c in psutil.Process().net_connections('tcp') if c.status == 'LISTEN']\n"
        "ips = sorted({a.ip for a in listening})\n"
        "internal_ips = sorted({a.ip for a in listening if a.port == port})\n"
        "print(json.dumps({'ips': ips, 'internal': internal_ips, 'template': haproxy.HAPROXY_CONFIG_TEMPLATE}))\n"
    )
    env = {**os.environ, "RAY_SERVE_ENABLE_HA_PROXY": "1", GRPC_HOST_ENV: "127.0.0.1", **single_node_env()}
    out = subprocess.run(
        [sys.executable, "-P", "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["ips"] and set(seen["ips"]) <= {
        "127.0.0.1",
        "::ffff:127.0.0.1",
    }  # gRPC may use a v4-mapped socket
    assert seen["internal"] and set(seen["internal"]) <= {"127.0.0.1", "::ffff:127.0.0.1"}
    assert seen["template"] == harden_template(_template())


# A Ray driver that starts a local node as `finserve up` does (environment before `import ray`), prints its
# pid and node IP, and stays up until its stdin closes.
_DRIVER = """
import os, sys
os.environ.update({env!r})
import ray
from finserve.serving.ray_start import descendant_pids, start_with_retry, stop_failed_start
before = descendant_pids()
start_with_retry(  # as `finserve up` does: a loaded machine sometimes misses Ray's fixed startup wait once
    lambda: ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False),
    lambda: (ray.shutdown(), stop_failed_start(keep=before)),
    lambda text: print(text, file=sys.stderr),
)
print(ray.util.get_node_ip_address(), flush=True)
@ray.remote
def ping():
    return os.getpid()
ray.get(ping.remote())  # a core worker up too
print("ready", flush=True)
sys.stdin.read()
ray.shutdown()
"""


def _listeners_below(pid: int) -> dict[tuple[str, int], str]:
    """(address, port) -> process name for every listening TCP socket of ``pid`` and its descendants."""
    out: dict[tuple[str, int], str] = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            for c in proc.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    out[(c.laddr.ip, c.laddr.port)] = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@pytest.mark.slow
def test_a_single_node_ray_core_listens_on_loopback_only(tmp_path) -> None:
    """A real local Ray started with `finserve up`'s environment: GCS, raylet (node manager, object manager),
    core workers and Ray's agents all listen on 127.0.0.1, nothing on another interface."""
    ray_tmp = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER.format(env=single_node_env())],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        node_ip = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "ready"
        listening = _listeners_below(proc.pid)
        names = set(listening.values())
        assert {"gcs_server", "raylet"} <= names, names  # the core processes were seen
        assert node_ip == "127.0.0.1"
        exposed = {
            addr: name
            for addr, name in listening.items()
            if addr[0] not in {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        }
        assert exposed == {}, exposed
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
