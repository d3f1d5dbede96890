"""Where a customer is: map coordinates, what3words addresses and Plus Codes.

A location shared from a phone ("I'm stuck at 51.50735, -0.12776", a maps link, `///filled.count.soap`) places
the customer as exactly as a street address does. Forms:
- decimal degrees, a latitude and a longitude in range: taken when written as coordinates are (a degree sign or
  hemisphere letters), with six decimals or more on both (what map apps share), or after a location word
  ("location", "coordinates", "gps", "lat", "I'm at", "pin", ...). Two numbers with three or four decimals and
  no such word are left: exchange rates and three-decimal currencies look the same ("1.0850, 1.2710").
- degrees, minutes (and seconds) with hemisphere letters: `51°30'26"N 0°7'39"W`.
- what3words: three words joined by dots after `///` or after the word what3words.
- Plus Codes (Open Location Code): eight characters of its alphabet, `+`, two or three more (`9C3XGV4C+2V`).
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import FinderRecognizer

ENTITY = "COORDINATES"
SCORE = 0.85

_DECIMAL_PAIR = re.compile(
    r"(?<![\p{L}\d.,])(?P<lat>[-+−]?\d{1,2}\.(?P<lat_dec>\d{3,}))(?:[ \t]?(?P<deg1>°))?(?:[ \t]?(?P<ns>[NS](?![\p{L}])))?"
    r"(?:[ \t]*[,;/][ \t]*|[ \t]+|(?=[-−]))"  # the view drops the blank before a minus ("51.5074-0.1278")
    r"(?P<lon>[-+−]?\d{1,3}\.(?P<lon_dec>\d{3,}))(?:[ \t]?(?P<deg2>°))?(?:[ \t]?(?P<ew>[EW](?![\p{L}])))?(?![\d.]*\d)",
    re.IGNORECASE,
)
# Decimals a location shared from a map carries (about 10 cm); currency quotes stop at five (a pipette).
_MAP_PRECISION = 6
# Words that say a pair of numbers is where someone is; the guard's view spells a spoken "at" as "@" ("I'm@51.5074").
_LOCATION_WORD = re.compile(
    r"(?i)(?<![\p{L}])(?:location|located|locate|coordinates?|co-?ordinates?|coords?|gps|geo|lat(?:itude)?|lon(?:gitude)?"
    r"|lng|position|pin(?:ned)?|dropped|maps?|where\s+i\s+am|(?:i['’]?m|i\s+am|we['’]?re|we\s+are|stuck)(?:\s+(?:at|near)|\s*@)"
    r"|find\s+me)(?![\p{L}])"
)
_CONTEXT_BEFORE = 60
# Degrees, minutes, optional seconds, then a hemisphere; a pair of them.
_DMS = r"\d{1,3}[ \t]?°[ \t]?\d{1,2}(?:\.\d+)?[ \t]?['′’](?:[ \t]?\d{1,2}(?:\.\d+)?[ \t]?(?:[\"″”]|''))?[ \t]?[NSEW]"
_DMS_PAIR = re.compile(rf"(?<![\d])(?:{_DMS})[ \t]*,?[ \t]*(?:{_DMS})(?![\p{{L}}])", re.IGNORECASE)
_WHAT3WORDS = re.compile(
    r"(?i)(?:///|(?<=what\s?3\s?words(?:\s+(?:address\s+)?is)?[\s:]{1,3}))\p{L}{2,}\.\p{L}{2,}\.\p{L}{2,}(?![\p{L}]|\.\p{L})"
)
_PLUS_CODE = re.compile(r"(?<![\p{L}\d+])[23456789CFGHJMPQRVWX]{8}\+[23456789CFGHJMPQRVWX]{2,3}(?![\p{L}\d])")
HINT = re.compile(r"\d[.°]|///|\+|3\s?words", re.IGNORECASE)


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _reads_as_coordinates(text: str, m: re.Match[str]) -> bool:
    lat, lon = _number(m.group("lat")), _number(m.group("lon"))
    if not (abs(lat) <= 90 and abs(lon) <= 180):
        return False
    if m.group("deg1") or m.group("deg2") or (m.group("ns") and m.group("ew")):
        return True
    if min(len(m.group("lat_dec")), len(m.group("lon_dec"))) >= _MAP_PRECISION:
        return True
    return _LOCATION_WORD.search(text, max(0, m.start() - _CONTEXT_BEFORE), m.start()) is not None


def find_locations(text: str) -> list[tuple[int, int]]:
    """(start, end) of each coordinate pair, what3words address or Plus Code in ``text``."""
    spans = [m.span() for m in _DECIMAL_PAIR.finditer(text) if _reads_as_coordinates(text, m)]
    for pattern in (_DMS_PAIR, _WHAT3WORDS, _PLUS_CODE):
        spans.extend(m.span() for m in pattern.finditer(text))
    return spans


class LocationRecognizer(FinderRecognizer):
    """Presidio recognizer for coordinates, what3words addresses and Plus Codes; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            ENTITY,
            find_locations,
            SCORE,
            "a map location",
            "LocationRecognizer",
            supported_language,
            hint=HINT,
        )
