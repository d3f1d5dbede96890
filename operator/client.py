"""What ``finserve rollout status|pause|resume|promote|abort|wait`` do, over the Kubernetes API."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from .api import COMMAND_PREFIX, GROUP, PLURAL, VERSION
from .status import TERMINAL, Phase

OPPOSITE = {"pause": "resume", "resume": "pause"}
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RolloutNotFound(LookupError):
    pass


def default_namespace() -> str:
    """The kubeconfig context's namespace, the pod's namespace in a cluster, else ``default``."""
    if IN_CLUSTER_NAMESPACE.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return IN_CLUSTER_NAMESPACE.read_text().strip()
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    try:
        _, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError):
        return "default"
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
            return await self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
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
            return await self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status == 404:
                raise RolloutNotFound(f"modelrollout {namespace}/{name} not found") from exc
            raise

    async def wait(self, namespace: str, name: str, timeout: float) -> dict[str, Any]:
        """The object once it settles; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            obj = await self.get(namespace, name)
            while settled(obj) is None:
                obj = await self._next_change(namespace, name, obj["metadata"]["resourceVersion"])
            return obj

    async def _next_change(self, namespace: str, name: str, since: str) -> dict[str, Any]:
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
                if obj.get("metadata", {}).get("name") == name and settled(obj) is not None:
                    return obj
        return await self.get(namespace, name)  # the server closed the watch: look again
