"""DeploymentHandle stand-ins for building the Gateway class without Ray (a fake: no Ray cluster runs).

``_Handle(search=fn).search.remote(...)`` returns ``fn(...)``: awaiting it awaits ``fn``, as a real
handle's response would be awaited.
"""

from __future__ import annotations

from typing import Any


class FakeMethod:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any, _otel: Any = None, **kwargs: Any) -> Any:
        # _otel: the trace context real handles carry to the deployment (serving/telemetry/ray_hops.py);
        # these stand-ins run in the caller's own context, so it has nothing to carry.
        return self.fn(*args, **kwargs)


class FakeHandle:
    """A DeploymentHandle stand-in: ``handle.method.remote(...)`` awaits ``method(...)``."""

    def __init__(self, **methods: Any) -> None:
        for name, fn in methods.items():
            setattr(self, name, FakeMethod(fn))
