"""The routing table ConfigMap (one per namespace): merge one route in, never lose another writer's.

Read, merge, then patch with a JSON-patch ``test`` of the resourceVersion read; a concurrent write
makes the test fail (409/422) and the merge is redone on the fresh table.
"""

from __future__ import annotations

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from finserve.contracts import CONFIGMAP_KEY, Route, RoutingTable

from .kube import is_conflict

DEFAULT_CONFIGMAP = "finserve-routing"


class RouteConflict(RuntimeError):
    """Other writers kept winning the race: try again later."""


class ConfigMapRouteStore:
    def __init__(self, api: client.ApiClient, name: str = DEFAULT_CONFIGMAP, attempts: int = 8) -> None:
        self.core = client.CoreV1Api(api)
        self.name = name
        self.attempts = attempts

    async def read(self, namespace: str) -> tuple[RoutingTable, str | None, bool]:
        """(table, resourceVersion, whether the ConfigMap has a data map); rv None: no ConfigMap."""
        try:
            cm = await self.core.read_namespaced_config_map(self.name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return RoutingTable(), None, False
            raise
        return RoutingTable.from_configmap_data(cm.data), cm.metadata.resource_version, cm.data is not None

    async def set_route(self, namespace: str, model: str, route: Route) -> bool:
        for _ in range(self.attempts):
            table, version, has_data = await self.read(namespace)
            if table.routes.get(model) == route:
                return False
            new = table.with_route(model, route)
            try:
                if version is None:
                    await self._create(namespace, new)
                else:
                    await self.write(namespace, new, version, has_data)
                return True
            except ApiException as exc:
                if not is_conflict(exc):
                    raise
        raise RouteConflict(
            f"routing table {namespace}/{self.name}: {self.attempts} conflicting writes in a row"
        )

    async def write(self, namespace: str, table: RoutingTable, version: str, has_data: bool) -> None:
        """Replace the table only if the ConfigMap is still at ``version``."""
        payload = table.to_configmap_data()[CONFIGMAP_KEY]
        value_op = (
            {"op": "add", "path": f"/data/{CONFIGMAP_KEY}", "value": payload}
            if has_data
            else {"op": "add", "path": "/data", "value": {CONFIGMAP_KEY: payload}}
        )
        body = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, value_op]
        await self.core.patch_namespaced_config_map(self.name, namespace, body)

    async def _create(self, namespace: str, table: RoutingTable) -> None:
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=namespace,
                labels={
                    "app.kubernetes.io/managed-by": "finserve-operator",
                    "app.kubernetes.io/part-of": "finserve",
                },
            ),
            data=table.to_configmap_data(),
        )
        await self.core.create_namespaced_config_map(namespace, body)
