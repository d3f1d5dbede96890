"""The routing-table ConfigMap store against kmock's emulated Kubernetes API (no real API server
can run here; conftest.py lists what the emulator adds to behave like one)."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from mro_testkit import RESOURCE_CM

from finserve.contracts import AdapterRef, Route, RoutingTable
from finserve.operator.adapters.routing import ConfigMapRouteStore

NS = "default"


def route(weight: int, canary: str | None = "b77@1.1.0") -> Route:
    return Route(
        base_model="smol",
        stable=AdapterRef.parse("b77@1.0.0"),
        canary=AdapterRef.parse(canary) if canary else None,
        canary_weight=weight,
    )


def stored(kube) -> RoutingTable:
    return RoutingTable.from_configmap_data(kube.objects[RESOURCE_CM, NS, "finserve-routing"]["data"])


async def test_creates_the_configmap_with_the_route(kube, api):
    store = ConfigMapRouteStore(api)
    assert await store.set_route(NS, "bank", route(5)) is True
    table = stored(kube)
    assert table.routes["bank"] == route(5)
    assert table.revision == 1


async def test_merges_into_other_routes_and_bumps_revision(kube, api):
    store = ConfigMapRouteStore(api)
    await store.set_route(NS, "bank", route(5))
    await store.set_route(NS, "cards", route(25))
    await store.set_route(NS, "bank", route(50))
    table = stored(kube)
    assert table.routes == {"bank": route(50), "cards": route(25)}
    assert table.revision == 3


async def test_same_route_twice_is_a_no_op(kube, api):
    store = ConfigMapRouteStore(api)
    await store.set_route(NS, "bank", route(5))
    version = kube.objects[RESOURCE_CM, NS, "finserve-routing"]["metadata"]["resourceVersion"]
    assert await store.set_route(NS, "bank", route(5)) is False
    assert kube.objects[RESOURCE_CM, NS, "finserve-routing"]["metadata"]["resourceVersion"] == version
    assert stored(kube).revision == 1


async def test_a_stale_resource_version_is_rejected(kube, api):
    store = ConfigMapRouteStore(api)
    await store.set_route(NS, "bank", route(5))
    table, version, has_data = await store.read(NS)
    await store.set_route(NS, "cards", route(25))  # another writer moves the ConfigMap on
    with pytest.raises(ApiException) as caught:
        await store.write(NS, table.with_route("bank", route(50)), version, has_data)
    assert caught.value.status == 422
    assert stored(kube).routes["cards"] == route(25)


async def test_concurrent_writers_lose_no_update(kube, api):
    stores = [ConfigMapRouteStore(api) for _ in range(6)]
    models = [f"model-{i}" for i in range(6)]
    await asyncio.gather(
        *(s.set_route(NS, m, route(5 * (i + 1))) for i, (s, m) in enumerate(zip(stores, models, strict=True)))
    )
    table = stored(kube)
    assert set(table.routes) == set(models)
    assert table.revision == 6
    assert [table.routes[m].canary_weight for m in models] == [5, 10, 15, 20, 25, 30]


async def test_keeps_other_keys_of_the_configmap(kube, api):
    kube.objects[RESOURCE_CM, NS, "finserve-routing"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "finserve-routing", "namespace": NS, "resourceVersion": "1"},
        "data": {"README": "managed by finserve"},
    }
    await ConfigMapRouteStore(api).set_route(NS, "bank", route(5))
    data = kube.objects[RESOURCE_CM, NS, "finserve-routing"]["data"]
    assert data["README"] == "managed by finserve"
    assert stored(kube).routes["bank"] == route(5)
