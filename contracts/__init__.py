"""What finserve's parts agree on: config base, adapter refs and registry, routing table, metric names.

Imports none of the parts.
"""

from .adapters import BASE_ADAPTER, AdapterRef
from .config import StrictModel
from .registry import AdapterCorrupt, AdapterIncompatible, AdapterManifest, AdapterNotFound, AdapterRegistry
from .routing import ADAPTER_OVERRIDE_HEADER, CONFIGMAP_KEY, Route, RoutingTable

__all__ = [
    "ADAPTER_OVERRIDE_HEADER",
    "BASE_ADAPTER",
    "CONFIGMAP_KEY",
    "AdapterCorrupt",
    "AdapterIncompatible",
    "AdapterManifest",
    "AdapterNotFound",
    "AdapterRef",
    "AdapterRegistry",
    "Route",
    "RoutingTable",
    "StrictModel",
]
