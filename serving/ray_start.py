"""Starts the local Ray node for `finserve up`, once more when Ray's own fixed startup waits run out.

Ray waits a hard-coded 30 s for its raylet to register with the GCS and a fixed time for the GCS to write its
port file (neither is configurable). A loaded 2-core node (a CI machine, a busy laptop, a container starting
beside others) sometimes misses one of them although nothing is wrong; a second start then succeeds. Any
other failure, or the same timeout twice, is raised as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Substrings of the exceptions Ray raises when those waits run out (ray/_private/node.py, services.py).
STARTUP_TIMEOUTS = ("timed out during startup", "Timed out waiting for file")


def is_startup_timeout(exc: BaseException) -> bool:
    """True when ``exc`` is one of Ray's fixed startup waits running out, which a second start can cure."""
    return any(marker in str(exc) for marker in STARTUP_TIMEOUTS)


def start_with_retry(init: Callable[[], Any], shutdown: Callable[[], Any], say: Callable[[str], Any],
                     attempts: int = 2) -> None:
    """Calls ``init`` up to ``attempts`` times while it fails with a startup timeout, ``shutdown`` between."""
    for attempt in range(1, attempts + 1):
        try:
            init()
            return
        except Exception as exc:
            if attempt == attempts or not is_startup_timeout(exc):
                raise
            say(f"Ray's node did not start in time ({exc}); the machine is probably busy: starting it once more")
            shutdown()
