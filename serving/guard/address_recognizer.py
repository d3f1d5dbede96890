"""Postal addresses: street lines, postcodes, and what follows "my address is" / "I live at".

Four rules, each specific enough for banking chat (which talks about addresses often, "how do I
change my address?", but rarely writes one):
- a street line: a house number, one to four capitalised words and a street type
  ("221B Baker Street", "Flat 3, 12 High St.", "1600 Pennsylvania Avenue NW"), or a post office
  box ("PO Box 1234"), then the towns after commas;
- a UK postcode in capitals ("SW1A 2AA"), or a US state and ZIP code ("IL 62704");
- after "postcode", "zip code" or "postal code": the code in any case and most countries' shapes;
- after an address keyword ("my address is", "address:", "I live at"): the text up to the end of
  the clause when it holds a digit, a street type or a postcode ("5 rue de Rivoli, 75001 Paris").
Spans that touch or are only separated by commas and blanks are reported as one address.
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import IS_CONTRACTED, FinderRecognizer

ENTITY = "ADDRESS"
SCORE = 0.85

_STREET_TYPE = (
    r"street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|close|court|ct|way|boulevard|blvd|place|pl"
    r"|crescent|cres|terrace|tce|gardens|gdns|square|sq|grove|mews|parkway|pkwy|highway|hwy|walk|rise"
    r"|row|hill|green|circle|cir|trail|parade|quay|wharf|embankment|broadway|strasse|straße"
    r"|loop|alley|path|plaza|pike|cove|heights|vale|expressway|freeway|fwy|turnpike|causeway|esplanade|promenade"
)
_NAME_WORD = r"[\p{Lu}][\p{L}'’\-]*\.?"
_UNIT = r"(?:(?:flat|apt\.?|apartment|unit|suite|ste\.?|room)\s*[\w\-]{1,5},?\s+)"
_HOUSE = r"\d{1,5}[A-Za-z]?(?:\s?[\-/]\s?\d{1,5}[A-Za-z]?)?"
# Towns after commas, a continental postcode before the town ("10115 Berlin").
_TOWNS = r"(?:,\s*(?:\d{4,5}\s+)?[\p{Lu}][\p{L}'’\-]+(?:\s+[\p{Lu}][\p{L}'’\-]+){0,2}){0,3}"
# Street types written first, and the words that may join them to the name ("rue de la Paix").
_TYPE_FIRST = (
    r"rue|avenue|av\.|boulevard|bd|chemin|impasse|allée|quai|calle|avenida|paseo|carrer|via|viale|piazza"
    r"|corso|rua|praça|travessa|ulica|ul\."
)
_PARTICLES = r"(?:(?:de|del|della|dei|di|da|do|dos|du|des|la|le|les|van|von)\s+|l'|d')*"
# Compound street names ending in their type, number after ("Musterstraße 12").
_COMPOUND = r"[\p{Lu}][\p{L}\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|laan|straat|gracht|plein)"
_NAME = rf"{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,3}}"
_STREET = re.compile(
    rf"(?<![\w£$€.,/])(?:"
    rf"(?i:{_UNIT})?{_HOUSE},?\s+(?:{_NAME_WORD}\s+){{1,4}}(?i:(?:{_STREET_TYPE})\b\.?)(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?"
    rf"|(?i:{_UNIT})?{_HOUSE},?\s+(?i:(?:{_TYPE_FIRST})\s+{_PARTICLES}){_NAME}"  # 5 rue de Rivoli
    # Calle Mayor 5, Via Roma 10: only with a town after ("paid via Apple Pay 3 times" is not an address)
    rf"|(?i:(?:{_TYPE_FIRST})\s+{_PARTICLES}){_NAME},?\s+{_HOUSE}(?!\d)(?=,\s*(?:\d{{4,5}}\s+)?\p{{Lu}})"
    rf"|{_COMPOUND}\s+{_HOUSE}(?!\d)"  # Musterstraße 12
    rf"){_TOWNS}"
)
_UK_POSTCODE = r"(?:GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})"
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC"
    "|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
# Post office boxes: "PO Box 1234", "P.O. Box 77", "Postfach 1234".
_PO_BOX = re.compile(
    rf"(?i)\b(?:p\.?\s?o\.?\s?box|post\s+office\s+box|postfach|apartado(?:\s+de\s+correos)?|boîte\s+postale)"
    rf"\s*\d{{1,6}}(?-i:{_TOWNS})"
)
_CA_PROVINCES = "AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT"
_POSTCODE = re.compile(
    rf"(?<![\w\-])(?:{_UK_POSTCODE}|(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?"
    rf"|(?:{_CA_PROVINCES})\s+[A-Z]\d[A-Z]\s?\d[A-Z]\d)(?![\w\-])"
)
# After its keyword a code may be in any case and of most countries' shapes.
_ANY_POSTCODE = (
    rf"{_UK_POSTCODE}|\d{{5}}(?:-\d{{4}})?|\d{{4}}\s?[A-Z]{{2}}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|[A-Z]\d{{2}}\s?[A-Z\d]{{4}}"
    r"|\d{3}[\s\-]?\d{2,4}|\d{4}"
)
_CODE_AFTER_KEYWORD = re.compile(
    rf"(?i)\b(?:post\s?code|postal\s+code|zip(?:\s?code)?|eircode|plz)(?:\s+(?:is|was)|{IS_CONTRACTED})?[\s:#=\-]*"
    rf"(?P<value>(?:{_ANY_POSTCODE}))(?![\w\-])"
)
# "my address is", "address:", "I live at"; not e-mail, IP, web or wallet addresses.
_ADDRESS_KEYWORD = re.compile(
    r"(?i)(?<!(?:e-?mail|ip|mac|web|wallet|bitcoin|crypto|ethereum|btc|eth|server|billing\s+e-?mail)\s)"
    r"\b(?:(?:address|addr\.?)(?:\s+(?:is\s+now|is|was|now|has\s+changed\s+to|changed\s+to|should\s+be|will\s+be)"
    r"\s*[:=\-]?|\s*[:=\-])|(?:live|lives|living|reside|resides|residing|stay|staying)\s+at)\s+"
)
# A clause ends at a line break, a full stop that ends a sentence, or a word that starts a new clause.
_CLAUSE_END = re.compile(
    r"\n|[;!?]|(?<!\b(?:st|rd|ave|apt|no|dr|ln|ct|pl|sq|mr|mrs|ms|ste|[A-Za-z]))\.(?=\s|$)"
    r"|\s(?:and|but|so|because|please|can|could|would|will|how|what|when|why|is|are|was|were|if|then|thanks)\b",
    re.IGNORECASE,
)
_ADDRESS_HINT = re.compile(rf"\d|(?i:\b(?:{_STREET_TYPE})\b)")
# Where a card or letter is sent, or where the customer moved: the clause is an address when it starts with a
# street line in any case ("send the card to apt 4b 221 w 42nd st new york ny 10036"); money sent "to 2
# accounts in the same way" is not one, since function words cannot name a street.
_DELIVERY_CUE = re.compile(
    r"(?i)\b(?:(?:send|sent|post|posted|mail|mailed|deliver|delivered|ship|shipped|forward|forwarded)"
    r"(?:\s+(?!to\b)[\w'’]+){0,4}|moved|moving|relocated|relocating)\s+to\s+"
)
_STREET_START = re.compile(
    rf"(?i){_UNIT}?{_HOUSE},?\s+(?:(?P<words>(?:[\w'’\-]+\.?\s+){{1,4}})(?:{_STREET_TYPE})\b|(?:{_TYPE_FIRST})\s+\w)"
)
_NOT_STREET_WORDS = frozenset(
    """a an the in on of to for from with at by and or my your our their his her its this that same other
    different two three few many some all days weeks months years accounts cards times people friends""".split()
)
# A street line in lower case with no cue is an address when its town and postcode follow it ("flat 2, 14 queen
# street, edinburgh eh2 1jx", "221 w 42nd st, new york ny 10036"): the postcode vouches for the rest.
_ANY_STREET = re.compile(rf"(?<![\w£$€.,/]){_STREET_START.pattern}")
_TOWN_AND_CODE = re.compile(
    rf"(?i)(?:\s+(?:nw|ne|sw|se|n|s|e|w)\b)?(?:,?\s*[\p{{L}}'’\-]+(?:\s+[\p{{L}}'’\-]+){{0,2}}){{1,2}},?\s+"
    rf"(?:{_UK_POSTCODE}|(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?|(?:{_CA_PROVINCES})\s+[A-Z]\d[A-Z]\s?\d[A-Z]\d)(?![\w\-])"
)
_MAX_CLAUSE = 120
_JOIN = re.compile(r"^[\s,]*$")


def find_addresses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each address in `text`, adjacent parts joined."""
    spans = [(m.start(), m.end()) for p in (_STREET, _PO_BOX, _POSTCODE) for m in p.finditer(text)]
    spans += [(m.start("value"), m.end("value")) for m in _CODE_AFTER_KEYWORD.finditer(text)]
    for m in _ADDRESS_KEYWORD.finditer(text):
        value = _clause(text, m.end())
        if value and _ADDRESS_HINT.search(value):
            spans.append((m.end(), m.end() + len(value)))
    for m in _DELIVERY_CUE.finditer(text):
        street = _STREET_START.match(text, m.end(), m.end() + _MAX_CLAUSE)
        if street is None or not _names_a_street(street):
            continue
        if any(start == m.end() for start, _ in spans):  # the cased rules found it, and where it ends
            continue
        spans.append((m.end(), m.end() + len(_clause(text, m.end()))))
    for street in _ANY_STREET.finditer(text):
        tail = _TOWN_AND_CODE.match(text, street.end())
        if tail and _names_a_street(street):
            spans.append((street.start(), tail.end()))
    return _join(sorted(spans), text)


def _names_a_street(street: re.Match[str]) -> bool:
    """A `_STREET_START` match whose words can name a street: no function words ("to 2 accounts in the same way")."""
    return not any(w.lower().rstrip(".") in _NOT_STREET_WORDS for w in (street.group("words") or "").split())


def _clause(text: str, start: int) -> str:
    """The text from ``start`` to the end of its clause (at most _MAX_CLAUSE characters), trailing punctuation off."""
    clause = text[start : start + _MAX_CLAUSE]
    end = _CLAUSE_END.search(clause)
    return clause[: end.start() if end else len(clause)].rstrip(" ,.")


def _join(spans: list[tuple[int, int]], text: str) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and (start <= joined[-1][1] or _JOIN.match(text[joined[-1][1] : start])):
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


class AddressRecognizer(FinderRecognizer):
    """Presidio recognizer for postal addresses; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "a street line, a postcode, or the text after an address keyword"
        super().__init__(ENTITY, find_addresses, SCORE, why, "AddressRecognizer", supported_language)
