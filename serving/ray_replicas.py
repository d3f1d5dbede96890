"""How many replicas a Ray Serve DeploymentHandle can send a call to right now (a hint for the generator gate).

Ray Serve offers no public call for this: the handle's router holds the running replicas it learnt from the
controller, and drops one as soon as a call to it fails with ActorDiedError, well before the controller's
health check notices. This reads that set through Ray 2.60's router internals and answers None whenever
they are not there (another Ray version, a router not started yet): the gate then relies on the errors alone.
"""

from __future__ import annotations

from typing import Any


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
