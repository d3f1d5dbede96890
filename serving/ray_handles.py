"""A DeploymentHandle seen as the deployment class it reaches: the one adapter between the pipeline's
stage interfaces and Ray.

``remote(handle, GuardDeployment)`` has GuardDeployment's async methods, each a hop over Ray:
``handle.<method>.remote(...)`` awaited, or for an async generator method a stream
(``handle.options(stream=True)``). Methods wrapped with ``@traced`` also get the caller's trace context
and request ids (``_otel=carrier()``, telemetry/ray_hops.py). mypy reads the adapter as the deployment
class, so wherever it is passed as a stage (``Pipeline(guard=...)``) the deployment's own signatures are
checked against the stage Protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from ray.serve.handle import DeploymentHandle

from .telemetry import carrier, takes_carrier

T = TypeVar("T")


def remote(handle: DeploymentHandle, deployment: type[T]) -> T:
    """``handle`` (bound to ``deployment``) with ``deployment``'s async methods, each called over Ray."""
    return cast(T, _Remote(handle, deployment))


class _Remote:
    def __init__(self, handle: DeploymentHandle, deployment: type) -> None:
        self._handle = handle
        self._deployment = deployment

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        call = _hop(self._handle, name, getattr(self._deployment, name))
        setattr(self, name, call)  # built once per method; later lookups find it on the instance
        return call


def _hop(handle: DeploymentHandle, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    carries = takes_carrier(method)

    def trace() -> dict[str, Any]:
        return {"_otel": carrier()} if carries else {}

    if inspect.isasyncgenfunction(method):

        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            # The carrier is taken at the first item, in the request's context, as the call itself starts there.
            async for item in getattr(handle.options(stream=True), name).remote(*args, **kwargs, **trace()):
                yield item

        return stream
    if inspect.iscoroutinefunction(method):

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await getattr(handle, name).remote(*args, **kwargs, **trace())

        return call
    raise TypeError(f"{name} is not async: stage calls over Ray are awaited (call the handle directly)")
