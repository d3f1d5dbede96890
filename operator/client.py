"""What ``finserve rollout list|get|status|pause|resume|promote|abort|retry|undo|wait`` do, over the
Kubernetes API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from .api import COMMAND_PREFIX, GROUP, PLURAL, VERSION
from .status import TERMINAL, Phase

OPPOSITE = {"pause": "resume", "resume": "pause"}
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RolloutNotFound(LookupError):
    pass


class UndoRefused(RuntimeError):
    """Undo needs a rollout that promoted its canary: anything else has nothing to undo (yet)."""


def default_namespace(context: str | None = None) -> str:
    """The kubeconfig context's namespace (``context``, else the current one), the pod's namespace in a
    cluster, else ``default``."""
    if IN_CLUSTER_NAMESPACE.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return IN_CLUSTER_NAMESPACE.read_text().strip()
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError):
        return "default"
    if context is not None:
        active = next((c for c in contexts if c.get("name") == context), None)
    return (active or {}).get("context", {}).get("namespace") or "default"


def settled(obj: dict[str, Any]) -> Phase | None:
    """The final phase, once the operator has acted on the current spec; None while still running.

    A status older than the spec (observedGeneration behind) is not trusted: after an edit the
    previous rollout's Succeeded would otherwise end a CI wait at once.
    """
    status = obj.get("status") or {}
    phase = status.get("phase")
    generation = obj.get("metadata", {}).get("generation")
    if phase not in {p.value for p in TERMINAL}:
        return None
    if generation is not None and (status.get("observedGeneration") or 0) < generation:
        return None
    return Phase(phase)


class RolloutClient:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return cast(
                "dict[str, Any]",
                await self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise RolloutNotFound(f"modelrollout {namespace}/{name} not found") from exc
            raise

    async def command(
        self, namespace: str, name: str, command: str, now: datetime | None = None
    ) -> dict[str, Any]:
        """Set ``finserve.dev/<command>`` to a fresh timestamp (pause and resume clear each other)."""
        stamp = (now or datetime.now(UTC)).isoformat()
        annotations: dict[str, str | None] = {COMMAND_PREFIX + command: stamp}
        if command in OPPOSITE:
            annotations[COMMAND_PREFIX + OPPOSITE[command]] = None
        body = {"metadata": {"annotations": annotations}}
        try:
            patched = await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]  # a client kwarg the stubs omit
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
            )
            return cast("dict[str, Any]", patched)
        except ApiException as exc:
            if exc.status == 404:
                raise RolloutNotFound(f"modelrollout {namespace}/{name} not found") from exc
            raise

    async def list_rollouts(self, namespace: str | None) -> list[dict[str, Any]]:
        """The rollouts of one namespace, or of all (None)."""
        if namespace is None:
            found = await self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            found = await self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return sorted(
            found.get("items", []), key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )

    async def changes(self, namespace: str, name: str) -> AsyncIterator[dict[str, Any]]:
        """The object now, then again after each change, until it settles (see settled())."""
        obj = await self.get(namespace, name)
        yield obj
        while settled(obj) is None:
            changed = False
            async for seen in self._watch(namespace, name, obj["metadata"]["resourceVersion"]):
                changed, obj = True, seen
                yield obj
                if settled(obj) is not None:
                    return
            if not changed:  # the server closed the watch: look again
                obj = await self.get(namespace, name)
                yield obj

    async def undo(self, namespace: str, name: str) -> dict[str, Any]:
        """Roll the previous stable version back in through a new rollout: the spec's stable and canary
        swap, so the operator starts the plan again (its steps and analysis) with the old version as
        canary. Only after Succeeded; a JSON-patch test on the resourceVersion refuses a concurrent edit."""
        obj = await self.get(namespace, name)
        phase = settled(obj)
        if phase != Phase.SUCCEEDED:
            now = (obj.get("status") or {}).get("phase") or "not started"
            raise UndoRefused(
                f"modelrollout {namespace}/{name} is {now}: only a Succeeded rollout can be undone "
                "(a running one: abort; a failed one already serves its stable version)"
            )
        spec = obj["spec"]
        body = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/stable", "value": spec["canary"]},
            {"op": "replace", "path": "/spec/canary", "value": spec["stable"]},
        ]
        patched = await self.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]  # a client kwarg the stubs omit
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/json-patch+json"
        )
        return cast("dict[str, Any]", patched)

    async def wait(self, namespace: str, name: str, timeout: float) -> dict[str, Any]:
        """The object once it settles; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            obj = await self.get(namespace, name)
            while settled(obj) is None:
                obj = await self._next_change(namespace, name, obj["metadata"]["resourceVersion"])
            return obj

    async def _next_change(self, namespace: str, name: str, since: str) -> dict[str, Any]:
        async for obj in self._watch(namespace, name, since):
            if settled(obj) is not None:
                return obj
        return await self.get(namespace, name)  # the server closed the watch: look again

    async def _watch(self, namespace: str, name: str, since: str) -> AsyncIterator[dict[str, Any]]:
        """Each new state of the object from ``since`` until the server closes the watch."""
        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=since,
        )
        async with stream as events:
            async for event in events:
                if event["type"] == "DELETED":
                    raise RolloutNotFound(f"modelrollout {namespace}/{name} was deleted")
                obj = event["object"]
                if obj.get("metadata", {}).get("name") == name:
                    yield obj
