"""The served intent classifier: an adapter's intent head on the LLM's hidden states, or a retrieval vote.

Public surface: :class:`IntentConfig`, :class:`IntentPrediction`, :class:`IntentClassifier`.
"""

from .classifier import UNKNOWN, IntentClassifier, IntentPrediction
from .config import IntentConfig

__all__ = ["UNKNOWN", "IntentClassifier", "IntentConfig", "IntentPrediction"]
