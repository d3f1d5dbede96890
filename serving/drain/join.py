"""Pure: which Ray cluster `finserve drain` joins, and on what terms (environment set before ``import ray``).

Ray 2.60 turns token authentication on for every new local cluster (``ray.init()`` as `finserve up` calls it),
with the token in ~/.ray/auth_token. A driver joining it sends the token only when its own mode is ``token``,
and Ray switches that on by itself only for ``address="auto"`` with a token file present: a driver given an
explicit address (the drain test's GCS address) joined in mode ``disabled`` and the GCS refused it with
``InvalidAuthToken``; so was ``auto`` with ``RAY_ADDRESS`` set, as KubeRay sets it in a Ray pod (Ray treats
that as explicit too). Ray's ``auto`` lookup is no answer for a local stack either: ``ray.init()`` records no
address (only `ray start` does), so ``auto`` picks any GCS running on the host, another user's stack included.

So a local `finserve up` names its cluster in the run record of its data dir (address and auth mode), and the
drain joins exactly that one on its terms; elsewhere (a KubeRay pod, where `ray start` recorded its address and
KubeRay may set ``RAY_ADDRESS`` / ``RAY_AUTH_MODE``) Ray's own ``auto`` lookup is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..ray_hardening import single_node_env

AUTH_MODE_ENV = "RAY_AUTH_MODE"  # Ray reads it once, at import: it must be in the environment first
AUTO = "auto"


@dataclass(frozen=True)
class Cluster:
    """What a running `finserve up` recorded of its Ray (serving/run_record.py), as far as joining goes."""

    pid: int
    address: str
    auth: Literal["token", "disabled"] | None


@dataclass(frozen=True)
class JoinPlan:
    address: str  # for ray.init(address=...)
    source: str  # where it came from, for the console
    env: dict[str, str] = field(default_factory=dict)  # set before `import ray`


def plan_join(address: str, local: Cluster | None, environ: Mapping[str, str], token_found: bool) -> JoinPlan:
    """``address``: the command's --address (``auto`` unless given); ``local``: the `finserve up` running on this
    data dir, if any; ``environ``: this process's environment; ``token_found``: a Ray token is at hand
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)."""
    env: dict[str, str] = {}
    if local is not None and address in (AUTO, local.address):
        # The recorded stack is one loopback node (ray_hardening): a driver joins it on the same terms.
        plan_address, source = local.address, f"the finserve up (pid {local.pid}) on this data dir"
        env.update(single_node_env())
        auth = local.auth
    elif address != AUTO:
        plan_address, source, auth = address, "--address", None
    else:
        plan_address, source, auth = (
            AUTO,
            "Ray's auto lookup (RAY_ADDRESS, or the cluster `ray start` began)",
            None,
        )
    if AUTH_MODE_ENV not in environ:  # set explicitly (KubeRay's authOptions do): Ray's own rules apply
        if auth is not None:
            env[AUTH_MODE_ENV] = auth
        elif token_found:
            # Ray's rule for `auto` (a token at hand means token mode), applied to every address: Ray skips it for
            # an explicit one, and RAY_ADDRESS (which KubeRay sets in its pods) makes even `auto` explicit.
            env[AUTH_MODE_ENV] = "token"
    return JoinPlan(plan_address, source, env)
