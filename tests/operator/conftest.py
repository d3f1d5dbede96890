"""Fixtures for the operator tests.

No Kubernetes API server can run on the machines these tests run on (no kind, k3s or Docker), so
kmock's emulated API stands in for one. Its emulator keeps objects in memory; the subclass here
adds what kopf 1.45 and the operator's adapters rely on (see shared/FINDINGS.md): uid,
resourceVersion and generation stamping, 409 on a stale resourceVersion and 422 on a failed
JSON-patch ``test`` op, the status and scale subresources, finalizers, lists that carry a
resourceVersion and watches that replay from one (``watch=True`` counts, as the API server's
lenient booleans allow), equality label selectors on lists, and kmock's bundled core resources in
discovery. No controllers run: a test plays the Job controller and kubelet by writing a Job's status
and its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import pytest
import yaml
from kmock._internal import apps, dicts, enums, rendering
from mro_testkit import RESOURCE_RAY
from netutil import free_port

from finserve.operator.api import CRD_PATH


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conflict(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the API server behaviour kopf and the adapters need."""

    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _rv: int = attrs.field(default=0, init=False)
    _log: list[tuple[int, kmock.resource, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _arrived: asyncio.Condition = attrs.field(factory=asyncio.Condition, init=False)

    def _next_rv(self) -> str:
        self._rv = next(self._versions)
        return str(self._rv)

    async def _emit(self, resource: kmock.resource, kind: str, obj: dict[str, Any]) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self._log.append((self._rv, resource, event))
        await self._buses[resource].put(event)

    def _has_status_subresource(self, resource: kmock.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.action == enums.action.LIST and request.params.get("watch", "").lower() in ("true", "1"):
            # kubernetes_asyncio sends watch=True; the API server parses booleans leniently, kmock does not.
            # The request must stay the same object: kmock matches reactions against its request log.
            object.__setattr__(request, "action", enums.action.WATCH)
        async with self._arrived:
            self._arrived.notify_all()
        if request.resource is not None and request.action is not None:
            async with self._lock:
                response = await self._mutate(request)
            if response is not None:
                return response
        # The stateless parts (discovery, serving stored objects) come from the grandparent:
        # the parent's own mutation logic is replaced by _mutate.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    async def _mutate(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        if request.action == enums.action.CREATE:
            await self._create(request)
        elif request.action == enums.action.UPDATE and request.name is not None:
            return await self._update(request)
        elif request.action == enums.action.DELETE and request.name is not None:
            await self._delete(request)
        elif request.action == enums.action.FETCH and request.subresource == "scale":
            return self._scale_response(self._get((request.resource, request.namespace, request.name)))
        return None

    def _get(self, key: tuple[Any, ...]) -> kmock.Object:
        if key not in self._objects or self._objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return self._objects[key]

    async def _create(self, request: rendering.Request) -> None:
        obj = copy.deepcopy(request.data)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        namespace = request.namespace or meta.get("namespace")
        key = (request.resource, namespace, meta.get("name"))
        if key in self._objects and not self._objects[key].deleted:
            raise _conflict(409, "AlreadyExists", f"{meta.get('name')} already exists")
        if namespace is not None:
            meta["namespace"] = namespace
        meta.update(
            uid=str(uuid.uuid4()), resourceVersion=self._next_rv(), creationTimestamp=_now(), generation=1
        )
        request.data.clear()
        request.data.update(obj)  # the fallback answers with what was stored
        if key in self._objects:
            self._objects[key].create(obj)
        else:
            self._objects[key] = obj
        await self._emit(request.resource, "ADDED", obj)

    async def _update(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        key = (request.resource, request.namespace, request.name)
        current = copy.deepcopy(self._get(key).raw)
        new = self._patched(request, current)
        if request.subresource == "scale":
            replicas = (new.get("spec") or {}).get("replicas")
            new = copy.deepcopy(current)
            new.setdefault("spec", {})["replicas"] = replicas
        elif request.subresource == "status":
            new = {
                **{k: v for k, v in current.items() if k != "status"},
                **({"status": new["status"]} if new.get("status") is not None else {}),
            }
        elif self._has_status_subresource(request.resource):
            new.pop("status", None)  # the main endpoint ignores status changes
            if current.get("status") is not None:
                new["status"] = current["status"]
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[key].history.append(new)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].delete()
            await self._emit(request.resource, "DELETED", new)
        else:
            await self._emit(request.resource, "MODIFIED", new)
        return self._scale_response(self._objects[key]) if request.subresource == "scale" else None

    def _patched(self, request: rendering.Request, current: dict[str, Any]) -> dict[str, Any]:
        data = request.data
        if isinstance(data, list):  # JSON patch
            try:
                return jsonpatch.apply_patch(current, data)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise _conflict(422, "Invalid", f"the JSON patch test failed: {exc}") from exc
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _conflict(422, "Invalid", f"the JSON patch does not apply: {exc}") from exc
        expected = (data.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise _conflict(409, "Conflict", "the object has been modified; apply to the latest version")
        if request.method == enums.method.PUT:
            return copy.deepcopy(data)
        return dict(dicts.merge_patch_dict(current, data))

    async def _delete(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        obj = self._get(key)
        meta = obj.raw.get("metadata", {})
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                new = copy.deepcopy(obj.raw)
                new["metadata"].update(deletionTimestamp=_now(), resourceVersion=self._next_rv())
                obj.history.append(new)
                await self._emit(request.resource, "MODIFIED", new)
            return
        last = copy.deepcopy(obj.raw)
        last["metadata"]["resourceVersion"] = self._next_rv()
        obj.history.append(last)
        obj.delete()
        await self._emit(request.resource, "DELETED", last)

    def _scale_response(self, obj: kmock.Object) -> aiohttp.web.StreamResponse:
        raw = obj.raw
        meta = raw["metadata"]
        return aiohttp.web.json_response(
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid") if k in meta
                },
                "spec": {"replicas": (raw.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (raw.get("status") or {}).get("replicas", 0), "selector": ""},
            }
        )

    def _matches(self, request: rendering.Request, namespace: str | None, name: str | None) -> bool:
        selector = dict(
            part.split("=", 1) for part in request.params.get("fieldSelector", "").split(",") if "=" in part
        )
        return (
            (request.namespace is None or namespace == request.namespace)
            and (request.name is None or name == request.name)
            and selector.get("metadata.name", name) == name
            and selector.get("metadata.namespace", namespace) == namespace
        )

    def _labelled(self, request: rendering.Request, raw: dict[str, Any]) -> bool:
        """Equality-based labelSelector (``a=b,c=d``), as the operator lists a Job's pods."""
        wanted = dict(
            part.split("=", 1) for part in request.params.get("labelSelector", "").split(",") if "=" in part
        )
        labels = (raw.get("metadata") or {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in wanted.items())

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if request.resource not in self._get_resources():
            raise kmock.KubernetesResourceNotFoundError()
        async with self._lock:
            items = [
                copy.deepcopy(obj.raw)
                for (resource, namespace, name), obj in self._objects.items()
                if resource == request.resource
                and not obj.deleted
                and self._matches(request, namespace, name)
                and self._labelled(request, obj.raw)
            ]
            version = str(self._rv)
        return {"metadata": {"resourceVersion": version}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now: a quiet watch must still be an open stream
        bus = self._buses[request.resource]
        since = request.params.get("resourceVersion", "")
        async with self._lock:
            mark = await bus.mark()  # under the lock: nothing lands between replay and live events
            if since.isdigit() and int(since) > 0:
                replay = [e for rv, res, e in self._log if res == request.resource and rv > int(since)]
            else:
                replay = [
                    {"type": "ADDED", "object": copy.deepcopy(obj.raw)}
                    for (res, _, _), obj in self._objects.items()
                    if res == request.resource and not obj.deleted
                ]
        try:
            for event in replay:
                meta = event["object"].get("metadata", {})
                if self._matches(request, meta.get("namespace"), meta.get("name")):
                    yield event
            async for event in bus.stream(since=mark):
                meta = event["object"].get("metadata", {})
                if self._matches(request, meta.get("namespace"), meta.get("name")):
                    yield event
        finally:
            await bus.unmark(mark)

    async def wait_for_request(
        self, predicate: Callable[[rendering.Request], bool], timeout: float = 60.0
    ) -> None:
        """Return once a request matching ``predicate`` has arrived (the timeout only stops a hung test)."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: any(predicate(r) for r in self))

    async def wait_for(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        timeout: float = 60.0,
    ) -> dict[str, Any] | None:
        """The object once ``predicate`` holds for it (None: absent), driven by the watch bus.

        The timeout only stops a hung test; no assertion depends on how long anything takes.
        """
        res = kmock.resource(resource)
        bus = self._buses[res]
        async with self._lock:
            mark = await bus.mark()
            key = (res, namespace, name)
            current = (
                None
                if key not in self._objects or self._objects[key].deleted
                else copy.deepcopy(self._objects[key].raw)
            )
        try:
            if predicate(current):
                return current
            async with asyncio.timeout(timeout):
                async for event in bus.stream(since=mark):
                    meta = event["object"].get("metadata", {})
                    if (meta.get("namespace"), meta.get("name")) == (namespace, name):
                        obj = None if event["type"] == "DELETED" else event["object"]
                        if predicate(obj):
                            return obj
        finally:
            await bus.unmark(mark)
        raise AssertionError("unreachable: the bus stream never ends")


def crd_resource_info(crd: dict[str, Any]) -> tuple[str, kmock.ResourceInfo]:
    """Discovery info for a CRD, from the CRD itself (so discovery and manifest cannot drift)."""
    names, version = crd["spec"]["names"], crd["spec"]["versions"][0]
    info = kmock.ResourceInfo(
        kind=names["kind"],
        singular=names["singular"],
        namespaced=crd["spec"]["scope"] == "Namespaced",
        verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
        shortnames=set(names.get("shortNames", [])),
        categories=set(names.get("categories", [])),
        subresources=set(version.get("subresources", {})),
    )
    return f"{crd['spec']['group']}/{version['name']}/{names['plural']}", info


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture()
async def kube(crd: dict[str, Any]) -> AsyncIterator[KubeEmulator]:
    """The emulated Kubernetes API with core resources, the ModelRollout CRD, KubeRay and KEDA."""
    emulator = KubeEmulator()
    emulator.resources.load_bundled()
    key, info = crd_resource_info(crd)
    emulator.resources[key] = info
    emulator.resources[RESOURCE_RAY] = kmock.ResourceInfo(
        kind="RayService", namespaced=True, verbs={"get", "list", "watch", "patch"}, subresources={"status"}
    )
    async with emulator, apps.Server(emulator):
        yield emulator


@pytest.fixture()
def kubeconfig(kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig pointing at the emulator, exported as $KUBECONFIG."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kube.url).rstrip("/")}}],
                "users": [{"name": "kmock", "user": {"token": "test-token"}}],
                "contexts": [
                    {
                        "name": "kmock",
                        "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"},
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture()
async def api(kubeconfig: Path) -> AsyncIterator[Any]:
    """A kubernetes_asyncio ApiClient talking to the emulator."""
    from finserve.operator.adapters.kube import api_client

    client = await api_client()
    try:
        yield client
    finally:
        await client.close()


class FakePrometheus:
    """A Prometheus HTTP API stand-in: answers /api/v1/query from values the test sets.

    A value is picked by the first registered substring found in the query, so tests say
    ``prom.set('code=~"5..', 0.3)`` for the error rate. Unknown queries get an empty vector.
    """

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.queries: list[str] = []
        self.down = False

    def set(self, needle: str, value: float | None) -> None:
        self.values[needle] = value

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        query = request.query.get("query", "")
        self.queries.append(query)
        if self.down:
            return aiohttp.web.json_response(
                {"status": "error", "errorType": "unavailable", "error": "storage is down"}, status=503
            )
        for needle, value in self.values.items():
            if needle in query:
                result = [] if value is None else [{"metric": {}, "value": [0, json.dumps(value)]}]
                return aiohttp.web.json_response(
                    {"status": "success", "data": {"resultType": "vector", "result": result}}
                )
        return aiohttp.web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}}
        )


@pytest.fixture()
async def fake_prometheus() -> AsyncIterator[tuple[FakePrometheus, str]]:
    """A fake Prometheus HTTP server on a free port: (controls, base URL)."""
    fake = FakePrometheus()
    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/query", fake.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture()
def operator_metrics(monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of the operator's own /metrics: operators started by the tests serve it on a free port."""
    port = free_port()
    monkeypatch.setenv("FINSERVE_OPERATOR__METRICS_PORT", str(port))
    return f"http://127.0.0.1:{port}/metrics"


@pytest.fixture()
def run_operator(
    kubeconfig: Path,
    fake_prometheus: tuple[FakePrometheus, str],
    operator_metrics: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    """Start the real operator (kopf run of finserve.operator.handlers) against the emulator.

    kopf runs in its own thread and loop; leaving goes through a thread too, because the emulator
    serves from this test's loop and must keep answering while kopf shuts down.
    """
    from kopf.testing import KopfRunner

    monkeypatch.setenv("FINSERVE_OPERATOR__PROMETHEUS__URL", fake_prometheus[1])
    monkeypatch.setenv("FINSERVE_OPERATOR__POLL_SECONDS", "1")

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[KopfRunner]:
        runner = KopfRunner(
            ["run", "--standalone", "--all-namespaces", "-m", "finserve.operator.handlers"], timeout=60
        )
        runner.__enter__()
        try:
            yield runner
        finally:
            await asyncio.to_thread(runner.__exit__, None, None, None)

    return running
