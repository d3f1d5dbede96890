"""The served intent classifier: an adapter's intent head on the LLM's hidden states, or a retrieval vote.

Public surface: :class:`IntentConfig`, :class:`IntentPrediction`, :class:`IntentClassifier`, and the split
the pipeline uses: :func:`wants_head`, :class:`HeadScores`, :func:`decide`, :func:`own_opinion`.
"""

from .classifier import (
    UNKNOWN,
    HeadScores,
    IntentClassifier,
    IntentPrediction,
    decide,
    own_opinion,
    wants_head,
)
from .config import IntentConfig

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
