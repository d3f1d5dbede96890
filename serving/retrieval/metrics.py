"""Retrieval's Prometheus metrics (names from finserve.contracts.metrics; labels carry no content)."""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from finserve.contracts.metrics import CACHE_LOOKUPS_TOTAL

_counters: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def cache_lookups(registry: CollectorRegistry | None = None) -> Counter:
    """``finserve_cache_lookups_total{tier,result}`` in ``registry`` (default: prometheus_client's),
    created once per registry so any number of retrievers can share it."""
    registry = registry if registry is not None else REGISTRY
    with _lock:
        counter = _counters.get(registry)
        if counter is None:
            counter = Counter(
                CACHE_LOOKUPS_TOTAL.removesuffix("_total"),
                "Retrieval cache lookups by tier (l1|l2) and result (hit|miss|error; error includes lookups "
                "skipped while the Redis circuit breaker is open).",
                ["tier", "result"],
                registry=registry,
            )
            _counters[registry] = counter
        return counter
