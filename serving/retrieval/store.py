"""Milvus access: one collection per index build, an alias the retriever searches, partitions by kind.

Layout: ``<alias>_<version[:16]>`` holds one build, with partitions ``answers`` and ``examples`` so a
search only scans its own kind; ingest re-points ``<alias>`` at a finished build, then drops older
builds, so a re-ingest never leaves searches without an index. The build's version and embedder are
collection properties.

Milvus Lite (a ``.db`` path) runs inside the process that opens it: only one process may open a file.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from . import lite_fastpath
from .errors import IndexMissing, VectorStoreUnavailable
from .pymilvus_logs import quiet_pymilvus
from .types import Document, Hit, Kind

if TYPE_CHECKING:
    from pymilvus import MilvusClient

log = logging.getLogger(__name__)

PARTITIONS: dict[Kind, str] = {"answer": "answers", "example": "examples"}
PROP_VERSION = "finserve.index_version"
PROP_EMBEDDER = "finserve.embedder_id"
OUTPUT_FIELDS = ["text", "intent", "kind", "tenant"]
MAX_TEXT_BYTES = 4096
BUILD_SUFFIX_LEN = 16
# How Milvus (server and Lite) reports a search on a collection that is not loaded.
_NOT_LOADED = re.compile(r"released|not loaded|call load\(\)|collection not loaded", re.IGNORECASE)
T = TypeVar("T")

# milvus-lite runs one in-process server per .db path for the whole process and never stops it on
# client close. Counting this process's users of each path lets the last one stop it, which closes the
# file so another process (e.g. a serving replica after the CLI's ingest) can open it.
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


def is_lite_uri(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:", "grpc://"))


def _lite_acquire(path: str) -> None:
    with _lite_lock:
        _lite_users[path] = _lite_users.get(path, 0) + 1


def _lite_release(path: str) -> None:
    with _lite_lock:
        left = _lite_users.get(path, 0) - 1
        if left > 0:
            _lite_users[path] = left
            return
        _lite_users.pop(path, None)
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)


@dataclass(frozen=True)
class IndexInfo:
    """What a built collection says about itself."""

    version: str
    embedder_id: str
    collection: str


def build_name(alias: str, version: str) -> str:
    """Physical collection name of one build."""
    return f"{alias}_{version[:BUILD_SUFFIX_LEN]}"


def filter_expression(tenant: str, intents: Sequence[str] | None) -> str:
    """Milvus boolean expression; values are validated upstream to contain no quotes or backslashes."""
    values = [tenant, *(intents or [])]
    if any('"' in v or "\\" in v for v in values):
        raise ValueError("filter values must not contain quotes or backslashes")
    expr = f'tenant == "{tenant}"'
    if intents:
        if len(intents) == 1:
            expr += f' and intent == "{intents[0]}"'
        else:
            expr += " and intent in [" + ", ".join(f'"{i}"' for i in intents) + "]"
    return expr


class MilvusStore:
    """Narrow, synchronous adapter over ``pymilvus.MilvusClient``; connects lazily.

    Every failure to reach or use Milvus surfaces as :class:`VectorStoreUnavailable`.
    """

    def __init__(self, uri: str, timeout_s: float) -> None:
        self.uri = uri
        self.timeout_s = timeout_s
        self._client_obj: MilvusClient | None = None
        self._lite_path = os.path.abspath(uri) if is_lite_uri(uri) else None
        self._loaded: set[str] = set()
        self._connect_lock = threading.Lock()  # searches run in worker threads: connect once

    # -- connection ---------------------------------------------------------------------------

    def _client(self) -> MilvusClient:
        client = self._client_obj
        if client is not None:
            return client
        with self._connect_lock:
            if self._client_obj is None:
                self._client_obj = self._connect()
            return self._client_obj

    def _connect(self) -> MilvusClient:
        from pymilvus import MilvusClient

        quiet_pymilvus()  # a traceback per failed call and reconnect otherwise; outage.py says it once

        if self._lite_path is not None:
            lite_fastpath.install()  # this process runs the Lite server: skip its per-row walk (see module)
            _lite_acquire(self._lite_path)
        try:
            client = MilvusClient(uri=self.uri, timeout=self.timeout_s)
        except Exception as exc:
            if self._lite_path is not None:
                _lite_release(self._lite_path)
            raise VectorStoreUnavailable(f"cannot connect to Milvus: {type(exc).__name__}") from exc
        self._loaded.clear()
        return client

    def _call(self, what: str, fn: Callable[[MilvusClient], T]) -> T:
        client = self._client()
        try:
            return fn(client)
        except VectorStoreUnavailable:
            raise
        except Exception as exc:
            if self._lite_path is None:
                # A remote Milvus that failed may come back as a new process with nothing loaded: the next
                # call connects afresh and loads the collection again (recovery without a restart).
                self._drop_client()
            raise VectorStoreUnavailable(f"Milvus {what} failed: {exc}") from exc

    def _drop_client(self) -> None:
        with self._connect_lock:
            client, self._client_obj = self._client_obj, None
            self._loaded.clear()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection: nothing to learn from it
                pass

    def close(self) -> None:
        if self._client_obj is None:
            return
        try:
            self._client_obj.close()
        finally:
            self._client_obj = None
            if self._lite_path is not None:
                _lite_release(self._lite_path)

    # -- reading ------------------------------------------------------------------------------

    def has_collection(self, name: str) -> bool:
        return self._call("has_collection", lambda c: bool(c.has_collection(name, timeout=self.timeout_s)))

    def index_info(self, name: str) -> IndexInfo | None:
        """The build behind ``name`` (alias or collection); None when there is none."""
        if not self.has_collection(name):
            return None
        desc = self._call(
            "describe_collection", lambda c: c.describe_collection(name, timeout=self.timeout_s)
        )
        props = desc.get("properties") or {}
        if PROP_VERSION not in props:
            raise IndexMissing(f"collection {name!r} was not built by finserve ingest")
        collection = desc.get("collection_name", name)
        self._ensure_loaded(collection)
        return IndexInfo(
            version=props[PROP_VERSION], embedder_id=props.get(PROP_EMBEDDER, ""), collection=collection
        )

    def _ensure_loaded(self, collection: str) -> None:
        """A reopened Milvus Lite file (or a released collection on a server) must be loaded to search."""
        if collection in self._loaded:
            return
        state = self._call("get_load_state", lambda c: c.get_load_state(collection, timeout=self.timeout_s))
        if "Loaded" not in str(state.get("state")):
            self._call("load_collection", lambda c: c.load_collection(collection, timeout=None))
        self._loaded.add(collection)

    def search(
        self,
        name: str,
        vector: np.ndarray,
        kind: Kind,
        tenant: str,
        intents: Sequence[str] | None,
        limit: int,
    ) -> list[Hit]:
        """Nearest ``limit`` documents of one kind (and of ``intents`` if given), best first."""
        expr = filter_expression(tenant, intents)
        try:
            result = self._reloading(
                name,
                "search",
                lambda c: c.search(
                    collection_name=name,
                    data=[vector.tolist()],
                    partition_names=[PARTITIONS[kind]],
                    filter=expr,
                    limit=limit,
                    output_fields=OUTPUT_FIELDS,
                    search_params={"metric_type": "COSINE", "params": {"ef": max(64, limit)}},
                    timeout=self.timeout_s,
                ),
            )
        except VectorStoreUnavailable as exc:
            # Tell "no index yet" from "Milvus down": only the first is fixed by running ingest.
            if not isinstance(exc, IndexMissing) and self._reachable_without(name):
                raise IndexMissing(f"collection {name!r} does not exist: run `finserve ingest`") from exc
            raise
        return [
            Hit(id=str(h["id"]), score=float(h["distance"]), **{f: h["entity"][f] for f in OUTPUT_FIELDS})
            for h in result[0]
        ]

    def fetch_kind(self, name: str, kind: Kind, limit: int) -> list[dict]:
        """Up to ``limit`` documents of one kind with their vectors (id, text, intent, kind, tenant, vector)."""
        return self._reloading(
            name,
            "query",
            lambda c: c.query(
                collection_name=name,
                filter="",
                partition_names=[PARTITIONS[kind]],
                output_fields=["id", *OUTPUT_FIELDS, "vector"],
                limit=limit,
                timeout=self.timeout_s,
            ),
        )

    def _reloading(self, name: str, what: str, fn: Callable[[MilvusClient], T]) -> T:
        """``fn``, loading ``name`` and trying once more if Milvus says the collection is not loaded.

        Milvus Lite keeps one server per file and process; when another user of the file in this process
        closes it (the last one stops the server) a later server can find the collection released, while
        this store still remembers having loaded it.
        """
        try:
            return self._call(what, fn)
        except VectorStoreUnavailable as exc:
            if not _NOT_LOADED.search(str(exc)):
                raise
            log.warning("collection %s was released: loading it again", name)
            self._loaded.clear()
            self._call("load_collection", lambda c: c.load_collection(name, timeout=None))
            return self._call(what, fn)

    def _reachable_without(self, name: str) -> bool:
        try:
            return not self.has_collection(name)
        except VectorStoreUnavailable:
            return False

    # -- writing (ingest) ---------------------------------------------------------------------

    def create_collection(self, name: str, dim: int, properties: dict[str, str]) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("intent", DataType.VARCHAR, max_length=128)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("tenant", DataType.VARCHAR, max_length=128)

        def create(c: MilvusClient) -> None:
            index = c.prepare_index_params()
            index.add_index(
                field_name="vector",
                index_type="HNSW",
                metric_type="COSINE",
                params={"M": 16, "efConstruction": 200},
            )
            c.create_collection(
                name, schema=schema, index_params=index, properties=properties, timeout=self.timeout_s
            )
            for partition in PARTITIONS.values():
                c.create_partition(name, partition, timeout=self.timeout_s)

        self._call("create_collection", create)

    def insert(self, name: str, docs: Sequence[Document], vectors: np.ndarray) -> None:
        """Insert documents with their vectors, each into its kind's partition."""
        for kind, partition in PARTITIONS.items():
            rows = [
                {"vector": vectors[i], **doc.model_dump()} for i, doc in enumerate(docs) if doc.kind == kind
            ]
            for row in rows:
                if len(row["text"].encode()) > MAX_TEXT_BYTES:
                    raise ValueError(f"document {row['id']} is longer than {MAX_TEXT_BYTES} bytes")
            if rows:
                self._call(
                    "insert", lambda c, rows=rows, part=partition: c.insert(name, rows, partition_name=part)
                )

    def seal(self, name: str) -> None:
        """Flush and load: Milvus Lite searches unflushed rows by brute force (slow) until flushed."""
        self._call("flush", lambda c: c.flush(name, timeout=None))
        self._call("load_collection", lambda c: c.load_collection(name, timeout=None))

    def point_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` resolve to ``name``; a plain collection squatting the alias's name is dropped."""

        def point(c: MilvusClient) -> None:
            if alias in c.list_collections():
                c.drop_collection(alias)
            if alias in c.list_aliases().get("aliases", []):
                c.alter_alias(name, alias)
            else:
                c.create_alias(name, alias)

        self._call("alias", point)

    def drop_collection(self, name: str) -> None:
        self._call("drop_collection", lambda c: c.drop_collection(name))

    def drop_stale_builds(self, alias: str, keep: str) -> list[str]:
        """Drop every ``<alias>_<hex>`` build except ``keep``; return their names."""
        pattern = re.compile(rf"{re.escape(alias)}_[0-9a-f]{{{BUILD_SUFFIX_LEN}}}")
        stale = [
            n
            for n in self._call("list_collections", lambda c: c.list_collections())
            if pattern.fullmatch(n) and n != keep
        ]
        for name in stale:
            self.drop_collection(name)
        return stale
