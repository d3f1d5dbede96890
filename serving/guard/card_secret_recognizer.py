"""Card PINs, security codes (CVV/CVC) and expiry dates a customer types in: values after their keyword.

Three to six digits are everywhere, so only the keyword makes them secret: "my pin is 4821",
"CVV: 123", "security code 0042", "the code on the back is 737", "expires 09/27", "exp March 2028". Banking chat
mentions PINs and expiry often ("I forgot my PIN", "when does my card expire") but rarely with the
value, so the keyword-plus-value rule costs almost no false positives.
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import IS_CONTRACTED, IS_OTHER_LANGUAGES, FinderRecognizer

ENTITY = "CARD_SECRET"
SCORE = 0.85

_SECRET_KEYWORD = (
    r"pin(?:\s*(?:number|no\.?|code))?|cvv2?|cvc2?|csc|cid|(?:security|sec\.?)\s+(?:code|number|digits)|passcode"
    r"|card\s+(?:verification|security)\s+(?:value|code|number)"
    r"|(?:three|3|four|4)[\s\-]digit\s+(?:security\s+)?(?:code|number)"
    r"|(?:code|number|digits)\s+on\s+the\s+back(?:\s+of\s+(?:my|the)\s+card)?"
)
_MONTH = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_PATTERN = re.compile(
    rf"(?i)\b(?:{_SECRET_KEYWORD})(?:\s+(?:is|was|are|were|=|{IS_OTHER_LANGUAGES})|{IS_CONTRACTED})?[\s:#=\-]*(?P<secret>(?<!\d)\d{{3,6}}(?![\d,.]\d))(?!\d)"
)
# An expiry date (MM/YY, MM/YYYY, MM-YY) after its keyword: card data under PCI DSS when it travels
# with the number; alone it still narrows a card down.
_EXPIRY = re.compile(
    r"(?i)\b(?:exp(?:iry|iration)?(?:\s+date)?|expires?(?:\s+on|\s+in)?|valid\s+(?:thru|through|until|to))"
    rf"(?:\s+(?:is|was|=)|{IS_CONTRACTED})?[\s:#=\-.]*(?P<secret>(?<![\d/])(?:(?:0?[1-9]|1[0-2])\s?[/\-.]\s?(?:\d{{4}}|\d{{2}})"
    # or the month in words: "expires in March 2028", "exp Mar '28"
    rf"|(?:{_MONTH})\.?,?\s+(?:of\s+)?(?:20\d\d|['’]\d\d)))(?![\d/]|[.\-]\d)"
)


def find_card_secrets(text: str) -> list[tuple[int, int]]:
    """(start, end) of each PIN, security code or expiry date in `text`."""
    found = [(m.start("secret"), m.end("secret")) for p in (_PATTERN, _EXPIRY) for m in p.finditer(text)]
    return sorted(found)


class CardSecretRecognizer(FinderRecognizer):
    """Presidio recognizer for PINs, card security codes and expiry dates; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "a PIN, security code or expiry date after its keyword"
        super().__init__(ENTITY, find_card_secrets, SCORE, why, "CardSecretRecognizer", supported_language)
