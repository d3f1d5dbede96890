"""pymilvus logs a traceback (ERROR, plus retry WARNINGs) for every failed call and reconnect attempt: about
two a second while Milvus is down. Each failure it describes also reaches the retriever as
VectorStoreUnavailable, and outage.py logs the outage once, so these records are dropped, unless pymilvus's
logger is set to DEBUG (someone debugging pymilvus itself)."""

from __future__ import annotations

import logging
import threading

ROOT = "pymilvus"


class _Dropped(logging.Filter):
    """Drops pymilvus's WARNING and ERROR records; counts them (``dropped``) for the debug view."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or logging.getLogger(ROOT).isEnabledFor(logging.DEBUG):
            return True
        self.dropped += 1
        return False


FILTER = _Dropped()
_lock = threading.Lock()


def quiet_pymilvus() -> None:
    """Attach the filter to every pymilvus logger that exists (a logger's filters only see the records it
    creates itself, not its children's): call after pymilvus is imported. Idempotent."""
    with _lock:
        for name in list(logging.root.manager.loggerDict):
            if name == ROOT or name.startswith(ROOT + "."):
                logger = logging.getLogger(name)
                if FILTER not in logger.filters:
                    logger.addFilter(FILTER)
