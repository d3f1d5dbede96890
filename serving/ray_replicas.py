"""How many replicas a Ray Serve DeploymentHandle can send a call to right now (a hint for the generator gate).

Ray Serve offers no public call for this: the handle's router holds the running replicas it learnt from the
controller, and drops one as soon as a call to it fails with ActorDiedError, well before the controller's
health check notices. This reads that set through Ray 2.60's router internals and answers None whenever
they are not there (another Ray version, a router not started yet): the gate then relies on the errors alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle


def running_replicas(handle: Any) -> int | None:
    router = getattr(handle, "_router", None)
    if router is None:
        return None
    try:
        if not router.running_replicas_populated():
            return None  # nothing learnt yet: at start-up "no replica" would be wrong
        request_router = router._asyncio_router._request_router
        return None if request_router is None else len(request_router.curr_replicas)
    except AttributeError:
        return None


class DeploymentHealth:
    """StageHealth (serving/degrade/gated_generator.py) of a deployment behind a handle, for the generator
    gate: the replicas' readiness probe, and how many replicas the handle can send a call to now."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    async def ready(self) -> bool:
        return bool(await self.handle.ready.remote())

    def replicas(self) -> int | None:
        return running_replicas(self.handle)
