"""A Presidio recognizer around a pure finder function: finserve's keyword-and-value rules.

Each rule module keeps its patterns and a ``find_*(text) -> [(start, end)]`` function free of
Presidio (tested on its own); this class is the one place that turns those spans into Presidio
results for one entity type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import regex as re
from presidio_analyzer import LocalRecognizer, RecognizerResult

from .hits import make_result

Finder = Callable[[str], list[tuple[int, int]]]
# Every value these rules report but a password holds a digit; most chat messages hold none.
DIGIT = re.compile(r"\d")
# The contracted "is" after a keyword ("my password's ...", "my pin's 4921"): every rule's "is" takes it too.
IS_CONTRACTED = r"['’]s"
# "is" in the languages a European bank's customers write in ("mein Passwort ist ...", "mi PIN es ...", "meine
# IBAN lautet ..."): German, Spanish, French, Portuguese, Italian, Swedish, Polish. The secrets', identity
# documents' and account numbers' rules take them.
IS_OTHER_LANGUAGES = r"ist|lautet|es|est|é|è|är|jest"


class FinderRecognizer(LocalRecognizer):
    """Reports every span ``find`` returns as ``entity`` with ``score``; skips texts ``hint`` finds nothing in
    (a cheap search for what every match needs, so most messages cost one scan)."""

    def __init__(
        self,
        entity: str,
        find: Finder,
        score: float,
        why: str,
        name: str,
        supported_language: str = "en",
        hint: re.Pattern[str] | None = DIGIT,
    ) -> None:
        super().__init__(supported_entities=[entity], supported_language=supported_language, name=name)
        self._entity, self._find, self._score, self._why, self._hint = entity, find, score, why, hint

    def load(self) -> None:
        """Nothing to load: the rule's patterns are compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if self._entity not in entities or (self._hint is not None and not self._hint.search(text)):
            return []
        return [
            make_result(self, self._entity, start, end, self._score, self._why)
            for start, end in self._find(text)
        ]
