"""Card PINs and security codes (CVV/CVC) a customer types in: short digit runs after their keyword.

Three to six digits are everywhere, so only the keyword makes them secret: "my pin is 4821",
"CVV: 123", "security code 0042". Banking chat mentions PINs often ("I forgot my PIN") but rarely
with digits, so the keyword-plus-digits rule costs almost no false positives.
"""

from __future__ import annotations

from typing import Any

import regex as re
from presidio_analyzer import LocalRecognizer, RecognizerResult

from .hits import make_result

ENTITY = "CARD_SECRET"
SCORE = 0.85

_PATTERN = re.compile(
    r"(?i)\b(?:pin(?:\s*(?:number|no\.?|code))?|cvv2?|cvc2?|csc|security\s+code|passcode)"
    r"(?:\s+(?:is|was|=))?[\s:#=\-]*(?P<secret>(?<!\d)\d{3,6}(?![\d,.]\d))(?!\d)"
)


def find_card_secrets(text: str) -> list[tuple[int, int]]:
    """(start, end) of each PIN or security code in `text`."""
    return [(m.start("secret"), m.end("secret")) for m in _PATTERN.finditer(text)]


class CardSecretRecognizer(LocalRecognizer):
    """Presidio recognizer for PINs and card security codes; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entities=[ENTITY], supported_language=supported_language, name="CardSecretRecognizer"
        )

    def load(self) -> None:
        """Nothing to load: the pattern is compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if ENTITY not in entities:
            return []
        return [
            make_result(self, ENTITY, start, end, SCORE, "digits after a PIN or security-code keyword")
            for start, end in find_card_secrets(text)
        ]
