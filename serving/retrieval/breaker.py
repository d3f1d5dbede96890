"""The circuit breaker now lives in serving/breaker.py (shared with the generator's provider failover)."""

from ..breaker import CircuitBreaker

__all__ = ["CircuitBreaker"]
