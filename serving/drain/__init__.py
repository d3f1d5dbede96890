"""Graceful shutdown: every Gateway replica answers not ready first, then the stack stops once nothing is in
flight (or the grace period is over).

config.py holds the settings, decide.py the pure decision of when the drain is over, state.py what each Gateway
replica keeps (the draining flag and its in-flight count), coordinator.py the I/O that `finserve up` and the
cluster's preStop hook run over Ray Serve.
"""

from .config import DrainConfig
from .decide import DrainVerdict, decide
from .state import DrainState, InFlightMiddleware

__all__ = ["DrainConfig", "DrainState", "DrainVerdict", "InFlightMiddleware", "decide"]
