"""Identity-document and tax numbers after their keyword: passport, driving licence, national ID,
national insurance, tax IDs, of any country (US social security numbers are US_SSN's); and the numbers that
name one person in an employer's, insurer's or club's records (employee, member, policy numbers) or a car's
keeper (a VIN).

Their formats differ per country and many are plain digit runs, so the keyword decides: "passport
number 925076473", "driving licence MORGA753116SM9IJ", "NI number AB-12-34-56-C", "DNI
12345678Z". The value is up to six groups of letters and digits
holding at least four digits, so "my passport expired" and "licence fee of 30" stay as they are.
"The last 4 of my SSN are 1234" counts too: the last four digits are what call centres verify with.
So do vehicle registration plates after theirs ("my car reg is LV19 XYZ"): they name the keeper.
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import DIGIT, IS_CONTRACTED, IS_OTHER_LANGUAGES, FinderRecognizer

ENTITY = "ID_NUMBER"
# Below the rules that know a format (US_SSN, UK_NINO, cards: they name the type when both fire),
# above phone shapes, which a passport number in digits also matches.
SCORE = 0.55

_DOCUMENT = (
    r"passport|driv(?:ing|er'?s?)\s+licen[cs]e|licen[cs]e|national\s+(?:id(?:entity)?|insurance)(?:\s+card)?"
    r"|ni\s+(?:number|no\.?)|ni(?=\s+(?:is|was)\b|\s*:)|nino|id(?:entity)?\s+(?:card|number|no\.?|document)|identity\s+document"
    r"|(?:my|your|his|her|their)\s+id|sin"
    r"|tax\s+(?:id|identification|reference|file|code)|tin|tfn|utr|itin|pps|bsn|nif|nie|dni|cpf|aadhaar|pan(?:\s+card)?"
    # "DL" and "EIN" are words too (EIN is German for "a"): only as the keyword they clearly are
    r"|dl(?=\s*(?:number|no\.?|num|#|:))|(?-i:EIN)|ein(?=\s*(?:number|no\.?|num|#|:))"
    r"|codice\s+fiscale|steuer[\s\-]?id|personalausweis|personnummer|medicare|nhs"
    r"|nric|hkid|curp|cnic|mykad|emirates\s+id"
    # other countries' national numbers, residence documents
    r"|pesel|rrn|resident\s+registration|cnp|egn|oib|jmbg|tckn|t\.?c\.?\s+kimlik|kimlik|c[ée]dula|rut|dui|nik|ktp"
    r"|iqama|qid|insee|nir|social\s+insurance|citizen(?:ship)?\s+(?:id|number|no\.?)|voter\s+id"
    r"|residence\s+(?:permit|card)|green\s+card|alien\s+(?:registration\s+)?(?:number|no\.?)|brp|share\s+code"
    # numbers that name one person in an employer's, insurer's or club's records; a car's VIN names its keeper
    r"|(?:employee|staff|payroll|member(?:ship)?|policy|student|patient|insurance|pension)(?=\s+(?:id|number|no|num|nr|#))"
    r"|vin|vehicle\s+identification|chassis"
)
_NUMBER_WORD = r"(?:number|no\.?|num|nr\.?|#|id|code)"
# A group holds a digit, or is one or two capitals (the letters of "AB 12 34 56 C").
_GROUP = r"(?:[A-Za-z]{0,6}\d[\dA-Za-z]*|[A-Z]{1,3})"  # "POL-2231-8891"
_PATTERN = re.compile(
    rf"(?i)\b(?:{_DOCUMENT})(?:\s+{_NUMBER_WORD})?(?:\s+(?:is|was|{IS_OTHER_LANGUAGES})|{IS_CONTRACTED})?[\s:#=\-]*"
    rf"(?P<value>(?-i:{_GROUP}(?:[ \-./]{_GROUP}){{0,5}}))(?![\w\-])"
)
# The last four digits of a national number are what call centres verify with: a secret on their own.
_LAST_FOUR = re.compile(
    r"(?i)\blast\s+(?:4|four)(?:\s+digits)?\s+(?:of\s+)?(?:my|the|his|her)\s+"
    r"(?:ssn|social(?:\s+security)?(?:\s+number)?|sin|national\s+(?:id|insurance)(?:\s+number)?|ni\s+number|"
    rf"passport(?:\s+number)?|id(?:\s+number)?)(?:\s+(?:is|are|was|were)|{IS_CONTRACTED})?[\s:=\-]*(?P<value>(?<!\d)\d{{4}})(?!\d)"
)
_MIN_DIGITS = 4
# A vehicle's registration plate identifies its keeper: "my car reg is LV19 XYZ", "licence plate 7ABC123".
# Plates are short: a group holds a digit or is capitals, and the value needs a letter and a digit, so
# "reg 2024" and "registration number 12" stay.
_PLATE_KEYWORD = (
    r"(?:licen[cs]e|number|registration|reg)\s+plate|plate\s+(?:number|no\.?)"
    r"|(?:car|vehicle|van|motorbike|motorcycle)(?:['’]s)?\s+reg(?:istration)?(?:\s+(?:number|no\.?|plate|mark))?"
    r"|reg(?:istration)?(?:\s+(?:number|no\.?|mark))?|vrn"
)
_PLATE_GROUP = r"(?:[A-Za-z]{0,3}\d[A-Za-z\d]{0,6}|[A-Z]{1,4})"
_PLATE = re.compile(
    rf"(?i)\b(?:{_PLATE_KEYWORD})(?:\s+(?:is|was)|{IS_CONTRACTED})?[\s:#=\-]*"
    rf"(?P<value>(?-i:{_PLATE_GROUP}(?:[ \-]{_PLATE_GROUP}){{0,3}}))(?![\w\-])"
)
_PLATE_MIN_CHARACTERS = 4


def find_id_numbers(text: str) -> list[tuple[int, int]]:
    """(start, end) of each identity-document or tax number, or the last four digits of one, in `text`."""
    found = [
        (m.start("value"), m.end("value"))
        for m in _PATTERN.finditer(text)
        if len(DIGIT.findall(m.group("value"))) >= _MIN_DIGITS
    ]
    found += [(m.start("value"), m.end("value")) for m in _LAST_FOUR.finditer(text)]
    found += [
        (m.start("value"), m.end("value"))
        for m in _PLATE.finditer(text)
        if sum(c.isalnum() for c in m.group("value")) >= _PLATE_MIN_CHARACTERS
        and DIGIT.search(m.group("value"))
        and any(c.isalpha() for c in m.group("value"))
    ]
    return sorted(found)


class IdDocumentRecognizer(FinderRecognizer):
    """Presidio recognizer for identity-document and tax numbers; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "an identity-document or tax number after its keyword"
        super().__init__(ENTITY, find_id_numbers, SCORE, why, "IdDocumentRecognizer", supported_language)
