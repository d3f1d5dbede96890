"""Which Ray cluster `finserve drain` joins and on what terms: the pure plan as a table of named cases, and where
it looks for Ray's token (the join itself runs in tests/serving/test_e2e_stack.py's preStop test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finserve.serving.drain.coordinator import token_found
from finserve.serving.drain.decide import CUT, DRAINED, DrainVerdict, exit_code
from finserve.serving.drain.join import AUTO, Cluster, plan_join

LOCAL = Cluster(pid=4242, address="127.0.0.1:61234", auth="token")
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

CASES = {
    # name: (address, local stack, environ, token found) -> (address joined, env set before `import ray`)
    "local finserve up: its own cluster, loopback, its auth mode": (
        (AUTO, LOCAL, {}, True),
        ("127.0.0.1:61234", {**LOOPBACK, "RAY_AUTH_MODE": "token"}),
    ),
    "local stack started without auth: joined without": (
        (AUTO, Cluster(1, "127.0.0.1:6000", "disabled"), {}, True),
        ("127.0.0.1:6000", {**LOOPBACK, "RAY_AUTH_MODE": "disabled"}),
    ),
    "the local stack's address given explicitly: the same terms": (
        ("127.0.0.1:61234", LOCAL, {}, False),
        ("127.0.0.1:61234", {**LOOPBACK, "RAY_AUTH_MODE": "token"}),
    ),
    "explicit address with a token at hand: token mode (Ray only does this for auto)": (
        ("10.0.0.5:6379", None, {}, True),
        ("10.0.0.5:6379", {"RAY_AUTH_MODE": "token"}),
    ),
    "explicit address, no token: Ray's default": (("10.0.0.5:6379", None, {}, False), ("10.0.0.5:6379", {})),
    "another address than the local stack's: not made loopback": (
        ("10.0.0.5:6379", LOCAL, {}, True),
        ("10.0.0.5:6379", {"RAY_AUTH_MODE": "token"}),
    ),
    "KubeRay pod (no local stack): Ray's auto lookup, token mode (RAY_ADDRESS would make Ray skip it)": (
        (AUTO, None, {"RAY_ADDRESS": "127.0.0.1:6379"}, True),
        (AUTO, {"RAY_AUTH_MODE": "token"}),
    ),
    "no token anywhere: Ray's default": ((AUTO, None, {}, False), (AUTO, {})),
    "RAY_AUTH_MODE set (KubeRay authOptions): never overridden": (
        (AUTO, LOCAL, {"RAY_AUTH_MODE": "token"}, True),
        ("127.0.0.1:61234", LOOPBACK),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_plan_join(case: str) -> None:
    args, (address, env) = CASES[case]
    plan = plan_join(*args)
    assert (plan.address, plan.env) == (address, env)
    assert plan.source


def test_token_found_where_ray_looks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert not token_found({}, home)
    assert token_found({"RAY_AUTH_TOKEN": "abc"}, home)
    path = tmp_path / "token"
    assert not token_found({"RAY_AUTH_TOKEN_PATH": str(path)}, home)
    path.write_text("abc")
    assert token_found({"RAY_AUTH_TOKEN_PATH": str(path)}, home)
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("abc")
    assert token_found({}, home)


@pytest.mark.parametrize(
    ("verdict", "code"),
    [
        (None, DRAINED),  # no Gateway replica answered: nothing to wait for
        (DrainVerdict(True, "idle", 0), DRAINED),
        (DrainVerdict(True, "grace_over", 2), CUT),
        (DrainVerdict(True, "forced", 1), CUT),
    ],
)
def test_exit_code(verdict: DrainVerdict | None, code: int) -> None:
    assert exit_code(verdict) == code
