"""The retriever: masked query -> L1 -> L2 -> embed + Milvus, each result keyed on the index version."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..breaker import CircuitBreaker
from .answers import AnswerTable
from .cache import LookupResult, RedisCache, TTLCache, cache_key
from .config import RetrievalConfig
from .embedder import Embedder
from .errors import IndexMissing, VectorStoreUnavailable
from .metrics import cache_lookups
from .outage import OutageLog
from .ranking import fuse_answers, intents_to_fetch
from .store import IndexInfo, MilvusStore
from .types import Hit, RetrievalResult, SearchFilters

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


class Retriever:
    """Searches the knowledge base for a masked query; async, transport-free.

    Milvus failures raise :class:`VectorStoreUnavailable` (then fail fast for ``milvus_retry_s``); Redis
    failures only cost the L2 tier. ``embedder`` and ``clock`` are injectable for reuse and tests; cache
    lookups are counted in ``registry`` (default: prometheus_client's process registry).
    """

    def __init__(
        self,
        config: RetrievalConfig,
        *,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self.embedder = embedder or Embedder(
            config.embedder_path, threads=config.embed_threads, backend=config.embed_backend
        )
        self._store = MilvusStore(config.resolved_milvus_uri(), config.milvus_timeout_s)
        self._milvus = CircuitBreaker(config.milvus_retry_s, clock)
        self._outage = OutageLog("Milvus", config.outage_log_every_s, clock)
        caching = config.cache_enabled
        self._l1: TTLCache[RetrievalResult] | None = (
            TTLCache(config.l1_max_entries, config.l1_ttl_s, clock)
            if caching and config.l1_max_entries
            else None
        )
        self._l2: RedisCache | None = (
            RedisCache(config.redis_url, config.l2_ttl_s, config.l2_timeout_s, config.l2_retry_s, clock)
            if caching and config.redis_url
            else None
        )
        self._index: IndexInfo | None = None
        self._index_checked_at = 0.0
        self._index_lock = asyncio.Lock()
        counter = cache_lookups(registry)
        self._count = {
            (tier, result): counter.labels(tier=tier, result=result)
            for tier in ("l1", "l2")
            for result in ("hit", "miss", "error")
        }
        self._closing: set[asyncio.Task[None]] = set()
        # (index version, its answers table or None when the partition is too large to hold)
        self._answers: tuple[str, AnswerTable | None] | None = None
        self._answers_lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------------

    async def search(self, masked_query: str, filters: SearchFilters | None = None) -> RetrievalResult:
        """Answers and nearest examples for ``masked_query`` (already PII-masked by the caller)."""
        filters = filters or SearchFilters()
        tenant = filters.tenant or self.config.default_tenant
        index = await self._current_index()
        if self._l1 is None and self._l2 is None:
            hits, examples = await self._search_or_answers(masked_query, tenant, filters.intent, index)
            return RetrievalResult(hits=hits, examples=examples, cache="off", index_version=index.version)

        key = cache_key(
            masked_query, filters.intent, tenant, index.version, self.config.top_k, self.config.example_k
        )
        lookups: dict = {}
        if self._l1 is not None:
            cached = self._l1.get(key)
            lookups["l1"] = "hit" if cached is not None else "miss"
            self._count["l1", lookups["l1"]].inc()
            if cached is not None:
                return cached.model_copy(update={"lookups": lookups})  # shallow: the entry stays shared
        if self._l2 is not None:
            from_l2, lookups["l2"] = await self._l2_get(self._l2, key, index.version)
            if from_l2 is not None:
                self._l1_put(key, from_l2)
                return from_l2.model_copy(update={"lookups": lookups})

        try:
            hits, examples = await self._search_store(masked_query, tenant, filters.intent, index)
        except VectorStoreUnavailable as exc:
            partial = await self._answers_only(masked_query, tenant, filters.intent, index, exc)
            return partial.model_copy(update={"lookups": lookups})
        result = RetrievalResult(hits=hits, examples=examples, cache="miss", index_version=index.version)
        self._l1_put(key, result)
        if self._l2 is not None:
            await self._l2.put(key, result.model_dump_json(exclude={"cache", "lookups"}))
        return result.model_copy(update={"lookups": lookups})

    async def knowledge_texts(self) -> list[str]:
        """Every answer text of the current index (what searches return as hits), for warming the context
        guard's cache; empty when the answers are not held in memory."""
        index = await self._current_index()
        table = await asyncio.to_thread(self._answer_table, index)
        return list(table.texts) if table is not None else []

    async def embed_texts(self, texts: list[str]) -> list[list[float]]:
        """Unit-length embeddings of ``texts`` (masked text only) with this retriever's embedder, in a thread;
        plain lists so they cross a Ray hop as they are."""
        vectors = await asyncio.to_thread(self.embedder.embed, texts)
        return vectors.tolist()

    def ready(self) -> bool:
        """True when the embedder is loaded and Milvus has a usable index (checks Milvus if it must)."""
        if self._index is not None and not self._milvus.is_open:
            return True
        if not self._milvus.allow():
            return False
        try:
            self._fetch_index()
        except VectorStoreUnavailable:
            return False
        return True

    @property
    def index_version(self) -> str | None:
        """Version of the index last seen (None before the first successful check)."""
        return self._index.version if self._index else None

    async def aclose(self) -> None:
        if self._l2 is not None:
            await self._l2.aclose()
        self._store.close()

    def close(self) -> None:
        """Close Milvus now; inside a running event loop the Redis client is closed by a task (use aclose
        to wait for it)."""
        self._store.close()
        if self._l2 is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: its connections were bound to a loop that is gone
            task = loop.create_task(self._l2.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- index version ----------------------------------------------------------------------------

    async def _current_index(self) -> IndexInfo:
        if self._index is not None and self._clock() - self._index_checked_at < self.config.index_refresh_s:
            return self._index
        async with self._index_lock:
            if (
                self._index is not None
                and self._clock() - self._index_checked_at < self.config.index_refresh_s
            ):
                return self._index
            if not self._milvus.allow():
                if self._index is not None:
                    return self._index  # stale but usable: cached results stay servable while Milvus is down
                raise VectorStoreUnavailable("Milvus unavailable", self._milvus.retry_after())
            try:
                return await asyncio.to_thread(self._fetch_index)
            except VectorStoreUnavailable as exc:
                if self._index is not None and not isinstance(exc, IndexMissing):
                    return self._index
                raise

    def _fetch_index(self) -> IndexInfo:
        """Read the index's version from Milvus and check it was built with this embedder."""
        try:
            info = self._store.index_info(self.config.collection)
        except IndexMissing:
            self._milvus_ok()
            raise
        except VectorStoreUnavailable as exc:
            self._milvus_failed(exc)
            raise
        self._milvus_ok()
        if info is None:
            raise IndexMissing(f"no index {self.config.collection!r}: run `finserve ingest`")
        if info.embedder_id != self.embedder.model_id:
            raise IndexMissing(
                f"index {info.version[:12]} was built with embedder {info.embedder_id!r}, this retriever "
                f"embeds with {self.embedder.model_id!r}: re-run `finserve ingest`"
            )
        if self._index is None or info.version != self._index.version:
            log.info("retrieval index %s (collection %s)", info.version[:12], info.collection)
        self._index = info
        self._index_checked_at = self._clock()
        return info

    # -- tiers ------------------------------------------------------------------------------------

    def _l1_put(self, key: str, result: RetrievalResult) -> None:
        if self._l1 is not None:
            self._l1.put(key, result.model_copy(update={"cache": "l1", "lookups": {}}))

    async def _l2_get(
        self, l2: RedisCache, key: str, version: str
    ) -> tuple[RetrievalResult | None, LookupResult]:
        lookup = await l2.get(key)
        if lookup.result != "hit" or lookup.value is None:
            self._count["l2", lookup.result].inc()
            return None, lookup.result
        try:
            result = RetrievalResult.model_validate({**json.loads(lookup.value), "cache": "l2"})
        except (ValueError, ValidationError):
            self._count["l2", "error"].inc()  # written by an incompatible version: search instead
            return None, "error"
        if result.index_version != version:
            self._count["l2", "miss"].inc()
            return None, "miss"
        self._count["l2", "hit"].inc()
        return result, "hit"

    async def _search_store(
        self, query: str, tenant: str, intent: str | None, index: IndexInfo
    ) -> tuple[list[Hit], list[Hit]]:
        if not self._milvus.allow():
            raise VectorStoreUnavailable("Milvus unavailable (failing fast)", self._milvus.retry_after())
        try:
            found = await asyncio.to_thread(self._embed_and_search, query, tenant, intent, index)
        except IndexMissing:
            self._milvus_ok()
            self._index_checked_at = 0.0  # re-read the version on the next request
            raise
        except VectorStoreUnavailable as exc:
            self._milvus_failed(exc)
            raise
        self._milvus_ok()
        return found

    def _milvus_failed(self, exc: VectorStoreUnavailable) -> None:
        self._milvus.record_failure()
        exc.retry_after_s = self.config.milvus_retry_s
        self._outage.failed(exc)

    def _milvus_ok(self) -> None:
        self._milvus.record_success()
        self._outage.succeeded()

    async def _search_or_answers(
        self,
        query: str,
        tenant: str,
        intent: str | None,
        index: IndexInfo,
    ) -> tuple[list[Hit], list[Hit]]:
        try:
            return await self._search_store(query, tenant, intent, index)
        except VectorStoreUnavailable as exc:
            partial = await self._answers_only(query, tenant, intent, index, exc)
            return partial.hits, partial.examples

    async def _answers_only(
        self, query: str, tenant: str, intent: str | None, index: IndexInfo, exc: VectorStoreUnavailable
    ) -> RetrievalResult:
        """While Milvus is down: the answers of the index already held in memory (no examples, so the intent
        comes from the adapter's head alone), rather than no answer at all. Re-raises ``exc`` when the index
        is missing or its answers were never loaded. Never cached: the full result comes back with Milvus."""
        loaded = self._answers
        if isinstance(exc, IndexMissing) or loaded is None or loaded[0] != index.version or loaded[1] is None:
            raise exc
        table = loaded[1]
        only = [intent] if intent else None
        vector = (await asyncio.to_thread(self.embedder.embed, [query]))[0]
        # Said once per outage by the outage log; per request only at debug level.
        log.debug("Milvus unavailable: searching the %d answers held in memory only", len(table))
        return RetrievalResult(
            hits=table.search(vector, tenant, only, self.config.top_k),
            examples=[],
            cache="answers",
            index_version=index.version,
        )

    def _answer_table(self, index: IndexInfo) -> AnswerTable | None:
        """The answers of ``index`` in memory, loaded on first use of a version; None: search Milvus."""
        limit = self.config.answers_in_memory_max
        if not limit:
            return None
        loaded = self._answers
        if loaded is not None and loaded[0] == index.version:
            return loaded[1]
        with self._answers_lock:
            loaded = self._answers
            if loaded is not None and loaded[0] == index.version:
                return loaded[1]
            # The physical build, not the alias: the rows must be the version the table is labelled with.
            try:
                rows = self._store.fetch_kind(index.collection, "answer", limit + 1)
            except VectorStoreUnavailable as exc:
                # E.g. a re-ingest dropped this build before its version was re-read: the alias still
                # answers, so this query searches Milvus and the next one tries the table again.
                log.warning("answers table for index %s not loaded: %s", index.version[:12], exc)
                return None
            table = AnswerTable.build(index.version, rows) if len(rows) <= limit else None
            if table is None:
                log.info("answers partition over %d documents: searched in Milvus", limit)
            self._answers = (index.version, table)
            return table

    def _embed_and_search(
        self, query: str, tenant: str, intent: str | None, index: IndexInfo
    ) -> tuple[list[Hit], list[Hit]]:
        # One thread hop for the whole miss path: embedding and the searches release the event loop.
        vector = self.embedder.embed([query])[0]
        alias, top_k, example_k = self.config.collection, self.config.top_k, self.config.example_k
        only = [intent] if intent else None
        table = self._answer_table(index)

        def answers_of(intents: list[str] | None, limit: int) -> list[Hit]:
            if table is not None:
                return table.search(vector, tenant, intents, limit)
            return self._store.search(alias, vector, "answer", tenant, intents, limit)

        answers = answers_of(only, top_k)
        if not example_k:
            return answers, []
        examples = self._store.search(alias, vector, "example", tenant, only, example_k)
        missing = intents_to_fetch(answers, examples)
        if missing:
            answers += answers_of(missing, len(missing))
        return fuse_answers(answers, examples, top_k), examples
