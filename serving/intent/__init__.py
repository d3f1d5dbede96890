"""The served intent classifier: an adapter's intent head on the LLM's hidden states, or a retrieval vote.

Public surface: :class:`IntentConfig`, :class:`IntentPrediction`, :class:`IntentClassifier`, and the split
the pipeline uses: :func:`wants_head`, :class:`HeadScores`, :func:`decide`, :func:`own_opinion`.

``IntentClassifier`` is imported on first use: it brings torch (~180 MB resident), which only the replica that
runs the heads (the Generator's) needs; the decision itself (:mod:`decision`) is plain Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import IntentConfig
from .decision import UNKNOWN, HeadScores, IntentPrediction, decide, own_opinion, wants_head

if TYPE_CHECKING:
    from .classifier import IntentClassifier

__all__ = [
    "UNKNOWN",
    "HeadScores",
    "IntentClassifier",
    "IntentConfig",
    "IntentPrediction",
    "decide",
    "own_opinion",
    "wants_head",
]


def __getattr__(name: str) -> Any:
    if name == "IntentClassifier":
        from .classifier import IntentClassifier

        return IntentClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
