"""Person names the text itself introduces ("my name is Jane Doe"), found without an NER model.

A name is up to six capitalised words, initials or particles right after an introducing phrase
("my name is", "name on account", "beneficiary:", "account holder is", "I am", "my wife", "sent £50
to"), after a sign-off ("Regards,", "Thanks,", "Best,"), right before "here" at the start of a
sentence ("Jane Doe here"), or as the owner of something a bank holds ("John Smith's card"). Two things keep "I'm waiting for my card" and "this is Visa" from
becoming names: the words must be capitalised, and words that are capitalised for other reasons
(brands, nationalities, weekdays, emphasis) are stop words that end or reject the name.
"""

from __future__ import annotations

from typing import Any

import regex as re
from presidio_analyzer import LocalRecognizer, RecognizerResult

from .hits import make_result

ENTITY = "PERSON"

# Phrases that almost always precede a name.
_STRONG = (
    r"my\s+(?:full\s+|first\s+|last\s+|sur|legal\s+)?name\s+is",
    r"(?:(?:first|last|full|legal|given|middle|family)\s+|sur|fore)?name['’]s",
    # "first name Jane, last name Doe", "surname Okonkwo": a form's field names without their colon
    r"(?:first|last|given|middle|family)\s+name(?:\s+is)?|(?:sur|fore)name(?:\s+is)?",
    r"name\s+on\s+(?:the\s+|my\s+|this\s+|our\s+)?(?:account|card)(?:\s+is|\s*[:\-])?",
    r"(?:the\s+)?(?:joint\s+)?account\s+holder(?:['’]s\s+name|\s+name)?(?:\s+is|\s*[:\-])?",
    r"(?:the\s+)?account\s+name(?:\s+is|\s*[:\-])",
    r"(?:the\s+)?(?:beneficiary|payee|recipient)(?:['’]s)?(?:\s+name)?(?:\s+is|\s*[:\-])",
    r"(?:the\s+)?(?:beneficiary|payee)(?:['’]s)?(?:\s+name)?",
    # a form's or a letter's fields: "Customer: Bruce Wayne", "Cardholder name - ..."
    r"(?:customer|client|card\s?holder|account\s+owner|applicant|sender|remitter)(?:['’]s)?(?:\s+name)?"
    r"(?:\s+is|\s*[:\-])",
    r"in\s+the\s+name\s+of",
    r"(?:first\s+|last\s+|full\s+|sur|legal\s+)?name\s*[:\-]",
    r"(?:kind\s+|best\s+|warm\s+|warmest\s+)?regards,?",
    r"sincerely,?",
    r"signed\s*[,:]?",
    r"(?<=^|\n)[ \t]*from\s*:",  # a message's header line: "From: Hans Müller"
)
# Sign-offs that also start ordinary sentences ("Thanks, I will try"): a comma or line break after
# them, and the stricter stop words of the weak phrases.
_SIGN_OFF = (
    r"(?:many\s+)?thanks(?:\s+again)?[!.]?(?:,|[ \t]*\n)",
    r"thank\s+you[!.]?(?:,|[ \t]*\n)",
    r"best(?:\s+wishes)?[!.]?(?:,|[ \t]*\n)",
    r"cheers[!.]?(?:,|[ \t]*\n)",
    r"yours(?:\s+(?:truly|faithfully|sincerely))?(?:,|[ \t]*\n)",
    r"(?:from|love),",
)
# A dash sign-off on its own line ("-- Olusegun Adebayo", "- Ken"): only when the name ends the text, since a
# dash also starts list items ("- Check my balance").
_DASH_SIGN_OFF = r"(?<=^|\n)[ \t]*(?:-+|—|–)"
# Phrases that often do ("I'm Jane") but also precede adjectives and places ("I'm British"). Those that also point
# at a thing ("this is my card", "its cap") are kept apart: known_name_recognizer.py takes a name in any case after
# the personal ones, after these only where a clause starts.
POINTING_CUES = (r"this\s+is", r"it['’]s")
PERSONAL_CUES = (
    r"i\s+am",
    r"i['’]m",
    r"call\s+me",
    r"belongs\s+to|(?:is|are)\s+held\s+by|owned\s+by",  # "the account belongs to Peter Parker"
    # a relative or friend named in passing: "my wife Anna Kowalska will call"
    r"my\s+(?:wife|husband|partner|spouse|son|daughter|mother|mum|mom|father|dad|brother|sister|friend|flatmate"
    r"|roommate|colleague|landlord|landlady|boss|employer|grandmother|grandfather|grandma|grandpa|gran|niece|nephew"
    r"|uncle|aunt|auntie|cousin|fianc[ée]e?|girlfriend|boyfriend|child|carer|neighbou?r)(?:['’]s\s+name)?(?:\s+is|,)?",
)
_WEAK_CUES = PERSONAL_CUES + POINTING_CUES
# A payment's recipient: "I sent £50 to Mark Jones". Brands follow "to" too, so two name words at least.
PAYEE = (
    r"(?:sent|send|sending|transfer(?:red|ring)?|paid|pay|paying|wired?|owed?|owes)\s+"
    r"(?:(?:[£$€]\s?)?\d[\d,.]*\s*(?:pounds|dollars|euros|gbp|usd|eur)?\s+|money\s+|funds\s+|it\s+|a\s+payment\s+)?to"
)
STRONG_SCORE = 0.85
WEAK_SCORE = 0.6

# A capitalised word, with apostrophes and hyphens inside ("O'Neil-Brown", "Min-jun") and a short
# lowercase prefix before one ("al-Hassan", "d'Souza").
_WORD = r"(?:\p{Ll}{1,3}['’\-])?\p{Lu}[\p{Ll}\p{Lu}]*(?:['’\-]\p{Lu}?[\p{Ll}\p{Lu}]+)*"
_INITIAL = r"\p{Lu}\."
_PARTICLE = r"(?:de|da|del|della|der|di|du|la|le|van|von|bin|binti|al|el|dos|das|ter|ten)"
_TITLE = r"(?i:mr|mrs|ms|miss|dr|prof|sir|madam)\.?"
# An optional title, then up to six name words, initials or particles (a particle only before a
# capitalised word, so "de la Cruz" but not "I am de"), separated by blanks: a newline ends a name.
_NAME = (
    rf"(?:{_TITLE}[ \t]+)?(?:{_PARTICLE}[ \t]+(?={_PARTICLE}[ \t]|\p{{Lu}}))*(?:{_WORD})"
    rf"(?:[ \t]+(?:{_INITIAL}|{_WORD}|{_PARTICLE}(?=[ \t]+(?:{_PARTICLE}[ \t]+)*\p{{Lu}}))){{0,5}}"
)


def _phrase_alternation(phrases: tuple[str, ...]) -> str:
    return "|".join(f"(?:{p})" for p in phrases)


_PATTERN = re.compile(
    rf"(?<![\p{{L}}])(?i:(?P<strong>{_phrase_alternation(_STRONG)})|(?P<signoff>{_phrase_alternation(_SIGN_OFF)})"
    rf"|(?P<weak>{_phrase_alternation(_WEAK_CUES)})|(?P<payee>{PAYEE})|(?P<dash>{_DASH_SIGN_OFF}))"
    rf"[ \t]*\n?[ \t]*(?P<name>{_NAME})"
)
# Lower-case names ("my name is jane doe", "this is mr. david o'brien") after the cues that leave no
# doubt: "my name is", "name:", a title. At most five words and initials, ended by function words and by the words
# that describe a name instead of being one ("my name is spelled wrong").
_LOWER_WORD = r"\p{Ll}(?:\.|[\p{Ll}'’\-]*)"  # "jane", "o'brien", the initial "v."
_ANY_CASE = rf"(?:{_LOWER_WORD}|{_WORD})"
_LOWER_CUE = (
    r"my\s+(?:full\s+|first\s+|last\s+|sur|legal\s+)?name\s+is|my\s+name['’]s"
    r"|(?:first\s+|last\s+|full\s+|sur|legal\s+)?name\s*:|mr|mrs|ms|mx|dr\."
)
_LOWER_PATTERN = re.compile(
    rf"(?<![\p{{L}}])(?i:{_LOWER_CUE})\.?[ \t]+(?P<name>{_ANY_CASE}(?:[ \t]+(?:{_ANY_CASE}|{_INITIAL})){{0,4}})(?![\p{{L}}])"
)
DESCRIBING_WORDS: frozenset[str] = frozenset(
    """
    wrong wrongly incorrect incorrectly misspelled misspelt mispelled spelled spelt spelling different
    missing changed changing showing shown showed listed printed written displayed appearing correct right
    same too legally officially hyphenated long short unusual common weird strange double new old cut
    truncated reversed swapped backwards blank empty invalid unknown fine ok okay coming being getting going
    """.split()
)
_VERBS: frozenset[str] = frozenset(
    "says said asks asked told tells wants wanted needs needed sent paid owes gave called rang speaking writing".split()
)
# A sign-off that ends the text, in any case ("Regards, jane", "thanks - Mike"): the words after it up to the
# end are the name, unless they are what follows "thanks" in a sentence ("thanks a lot", "thanks again").
_SIGN_OFF_AT_END = re.compile(
    r"(?<![\p{L}])(?i:(?:kind\s+|best\s+|warm\s+|warmest\s+)?regards|sincerely|(?:many\s+)?thanks|thank\s+you"
    r"|cheers|best(?:\s+wishes)?|yours(?:\s+(?:truly|faithfully|sincerely))?)(?![\p{L}])"
    rf"[!.]?[ \t]*[,:\-–—]?[ \t]*\n?[ \t]*(?P<name>{_ANY_CASE}(?:[ \t]+{_ANY_CASE}){{0,2}})[ \t]*[.!]*[ \t]*$"
)
_AFTER_THANKS: frozenset[str] = frozenset(
    """
    much lots heaps loads tons bunch guys team everyone everybody all both mate bro buddy dude folks sir madam
    bye again regards wishes cheers kindly indeed advance ahead anyway anyways tho though x xx xxx
    """.split()
)
# "O'Connor, Siobhan": a surname first, then the given name after a comma, ending the sentence.
_GIVEN_AFTER_COMMA = re.compile(
    rf",[ \t]*(?P<given>{_WORD}(?:[ \t]+{_WORD})?)(?=[ \t]*(?:$|[\n.!?;,]|(?i:and|&)\b))"
)

# "John Smith's card was stolen": a full name owning something a bank holds. Two name words at least, none of
# them a word capitalised for another reason ("Apple Pay's", "Western Union's").
_POSSESSIVE = re.compile(
    rf"(?<![\p{{L}}])(?P<name>{_WORD}(?:[ \t]+(?:{_INITIAL}|{_WORD})){{1,3}})['’]s[ \t]+"
    r"(?i:(?:debit\s+|credit\s+|new\s+|old\s+)?(?:card|account|balance|phone|number|address|details|payment|transfer"
    r"|salary|money|pin|passcode|statement|wallet|iban|loan|mortgage|savings))\b"
)

# "Jane Doe here": at the start of the text, of a sentence or line, or after a greeting.
_HERE = re.compile(
    rf"(?:^|(?<=[.!?;:\n][ \t]*)|(?<=(?i:\b(?:hi|hello|hey|morning|afternoon|evening|dear))[ \t]*[,!]?[ \t]*))"
    rf"(?P<name>{_NAME})[ \t]+(?i:here)\b"
)

# Words that end a name when they follow one and reject it when they start it (lowercase).
# FUNCTION_WORDS apply after every phrase; CAPITALISED_NON_NAMES only after the weak phrases,
# because "my name is May Chen" is a name and "I'm British" is not.
FUNCTION_WORDS: frozenset[str] = frozenset(
    """
    i a an the and or but so not no yes ok okay hi hello hey dear thanks thank please sorry
    very really still just also here there now today tomorrow yesterday again already only
    in on at to from for with by of about into over after before since until up out off
    my your our their his her its this that these those it he she we they you me us them
    is am are was were be been being have has had do does did will would can could should
    what who where why how which when whatever whenever
    """.split()
)
# Words that start "... here" without being a name ("Nothing here", "Anyone here?").
_HERE_NON_NAMES: frozenset[str] = frozenset(
    """
    nothing anything something everything anyone someone everyone nobody anybody somebody
    help question problem issue money cash payment transfer refund charge fee balance
    """.split()
)
CAPITALISED_NON_NAMES: frozenset[str] = frozenset(
    """
    trying looking waiting unable having going getting calling writing wondering confused
    worried annoyed angry upset happy glad new old abroad overseas home sure afraid fine
    urgent important ridiculous terrible unacceptable frustrating great good bad awful
    bank card account customer client manager member user support team service branch
    visa mastercard maestro amex american express discover paypal apple google samsung pay
    monday tuesday wednesday thursday friday saturday sunday january february march april
    may june july august september october november december
    british english scottish welsh irish european french german spanish italian dutch
    portuguese polish indian chinese japanese canadian australian mexican brazilian
    russian ukrainian african asian muslim christian jewish
    uk usa us eu america england scotland wales ireland europe london
    western union moneygram amazon ebay netflix spotify uber tesco hmrc irs revolut monzo wise airbnb
    microsoft steam coinbase binance stripe venmo zelle cash app top up atm sepa swift po p.o. box
    """.split()
)
# Titles are skipped, not counted as names: "my name is Dr Jane Doe" finds "Jane Doe".
TITLES: frozenset[str] = frozenset({"mr", "mrs", "ms", "miss", "dr", "sir", "madam", "prof"})


def _trim(words: list[tuple[int, int, str]], stop: frozenset[str]) -> list[tuple[int, int, str]]:
    """The leading run of words that can be part of a name (titles dropped in front)."""
    while words and words[0][2].rstrip(".").lower() in TITLES:
        words = words[1:]
    kept: list[tuple[int, int, str]] = []
    for start, end, word in words:
        initial = len(word) == 2 and word.endswith(".")  # "A." is an initial, not the article
        if not initial and word.rstrip(".").lower() in stop:
            break
        kept.append((start, end, word))
    # A name never ends on a particle ("Jane van").
    while kept and kept[-1][2].islower():
        kept.pop()
    return kept


_WEAK_STOP = FUNCTION_WORDS | CAPITALISED_NON_NAMES
# After a sign-off: what follows "thanks" in a sentence, and words capitalised for other reasons ("Cheers, Visa").
_NOT_SIGNED = _AFTER_THANKS | CAPITALISED_NON_NAMES


def _words(match: re.Match[str]) -> list[tuple[int, int, str]]:
    name_start = match.start("name")
    return [
        (name_start + m.start(), name_start + m.end(), m.group())
        for m in re.finditer(r"\S+", match.group("name"))
    ]


def _with_given_name(text: str, kept: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """`kept` and the given name after its comma, when the surname came first ("O'Connor, Siobhan")."""
    given = _GIVEN_AFTER_COMMA.match(text, kept[-1][1])
    if given is None or any(word.lower() in _WEAK_STOP for word in given.group("given").split()):
        return kept
    return [*kept, (given.start("given"), given.end("given"), given.group("given"))]


def _lower_case_name(words: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The words after a lower-case cue that can be a name: "jane doe" of "jane doe and my card"."""
    kept: list[tuple[int, int, str]] = []
    for start, end, word in words:
        lower = word.lower()
        if lower in FUNCTION_WORDS or lower in DESCRIBING_WORDS:
            break
        # After the first word, a few verbs end it ("mrs patel said"), and so does any lower-case word
        # after a capitalised one ("Mrs Patel called"). Other words are kept: masking a verb after a
        # lower-case name ("jane doe speaking") costs less than leaking a surname shaped like one.
        if kept and word.islower() and (lower in _VERBS or not kept[-1][2].islower()):
            break
        kept.append((start, end, word))
    return kept


def find_names(text: str) -> list[tuple[int, int, float]]:
    """(start, end, score) of each introduced name in `text`."""
    found: list[tuple[int, int, float]] = []
    shouting = text.isupper()
    for match in _PATTERN.finditer(text):
        strong = match.group("strong") is not None
        kept = _trim(_words(match), FUNCTION_WORDS if strong else _WEAK_STOP)
        # A lone capital is a placeholder ("beneficiary X"), not a name.
        if not kept or (len(kept) == 1 and len(kept[0][2].rstrip(".")) == 1):
            continue
        payee = match.group("payee") is not None
        if payee and len(kept) < 2:
            continue
        if match.group("dash") is not None and text[kept[-1][1] :].strip():
            continue
        if strong:
            kept = _with_given_name(text, kept)
        weak = match.group("weak") is not None or payee
        # After a weak phrase, all-caps words are shouting more often than a name ("I AM MISSING
        # CASH", "this is URGENT"); two of them in a text that is not all caps are a name.
        if weak and all(word.isupper() for _, _, word in kept) and (shouting or len(kept) < 2):
            continue
        found.append((kept[0][0], kept[-1][1], WEAK_SCORE if weak else STRONG_SCORE))
    for match in _POSSESSIVE.finditer(text):
        words = _words(match)
        # Every word must be a name's: "Yesterday John Smith's card" starts at "John".
        kept = _trim(words, _WEAK_STOP)
        while words and (not kept or kept[-1] != words[-1]):
            words = words[1:]
            kept = _trim(words, _WEAK_STOP)
        if (
            len(kept) >= 2
            and not shouting
            and not any(s < kept[-1][1] and kept[0][0] < e for s, e, _ in found)
        ):
            found.append((kept[0][0], kept[-1][1], WEAK_SCORE))
    for match in _HERE.finditer(text):
        words = [w for w in _words(match) if w[2].rstrip(".").lower() not in TITLES]
        kept = _trim(words, _WEAK_STOP | _HERE_NON_NAMES)
        # Every word before "here" must be part of the name: "Nothing works here" is not one.
        if kept and len(kept) == len(words) and not shouting:
            found.append((kept[0][0], kept[-1][1], STRONG_SCORE))
    sign_offs = [(m, _NOT_SIGNED) for m in _SIGN_OFF_AT_END.finditer(text)]
    for match, not_names in [*((m, frozenset()) for m in _LOWER_PATTERN.finditer(text)), *sign_offs]:
        words = _words(match)
        if any(w.lower() in not_names for _, _, w in words):
            continue
        kept = _lower_case_name(words)
        kept = _with_given_name(text, kept) if kept else kept
        # Only what the cased rules above did not already find: one finding per name.
        if kept and not any(start < kept[-1][1] and kept[0][0] < end for start, end, _ in found):
            found.append((kept[0][0], kept[-1][1], STRONG_SCORE))
    return found


class IntroducedNameRecognizer(LocalRecognizer):
    """Presidio recognizer for names introduced in the text; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entities=[ENTITY],
            supported_language=supported_language,
            name="IntroducedNameRecognizer",
        )

    def load(self) -> None:
        """Nothing to load: the pattern is compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if ENTITY not in entities:
            return []
        return [
            make_result(self, ENTITY, start, end, score, "name after an introducing phrase")
            for start, end, score in find_names(text)
        ]
