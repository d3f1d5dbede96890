"""OpenTelemetry spans, request log fields and token-timing metrics of the serving graph.

The transport binds each request (``attach``), the pipeline's stage timer opens a span per stage
(``stage_span``), Ray hops carry the W3C context as a small carrier (``carrier`` / ``traced``), and the
HTTP app answers with the trace id (``instrument_api``). Everything is a no-op while tracing is off.
"""

from .process import setup_process
from .ray_hops import carrier, takes_carrier, traced
from .request import attach, note, stage_span
from .timing import TokenClock

__all__ = [
    "TokenClock",
    "attach",
    "carrier",
    "note",
    "setup_process",
    "stage_span",
    "takes_carrier",
    "traced",
]
