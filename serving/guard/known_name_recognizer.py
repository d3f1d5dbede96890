"""Names the guard recognises by the name itself: "hi im sarah jones", "Please help Mary Johnson".

name_recognizer.py finds names by the phrase that introduces them and by capital letters, so a name typed in
lower case after a casual cue ("im", "this is", "my wife") or a full name with no cue at all passed. Here a
word counts as part of a name when the packaged lists (person_names.py) hold it as a given name or a surname,
or when it is in none of them, not even the everyday words; more evidence is asked of names that are also
everyday words ("will", "mark", "chase"):

- after a casual cue or a form field's colon, in any case: a given name, a surname that is no everyday word or a
  word in no list, then its further parts ("this is david miller", "hi im haoran li", "Account holder: maria
  garcia");
- anywhere, two name words side by side, particles between ("Ximena de la Cruz"), in either order, at least one
  of them listed: capitalised ("Mary Johnson", "Vikram Sharma", "Trần Văn Dung"), or in lower case a given name
  that is no everyday word before a listed surname ("sent it to priya sharma").
- after a payment's "to", a given name alone that is no everyday word nor a large place, where the clause ends
  or a time or a conjunction follows ("sent £10 to Ali.", "paid 20 to Siobhan yesterday", "to Mohammed and it
  bounced"); the brands paid are everyday words or no given names ("to Amazon", "to Tesco").
Places of several words that read as names ("Hong Kong") and place or firm nouns ("Victoria Station") are not.

Otherwise a given name alone with no cue ("tell Sarah") stays: too many brands, places and words are given
names somewhere.
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import FinderRecognizer
from .name_recognizer import CAPITALISED_NON_NAMES, ENTITY, FUNCTION_WORDS, PAYEE, PERSONAL_CUES, WEAK_SCORE
from .person_names import GIVEN, PLACE, SURNAME, WORD, PersonNames, person_names

_TOKEN = re.compile(r"\p{L}+(?:['’\-]\p{L}+)*")
# The casual cues of name_recognizer.py, and "im" typed without its apostrophe. "it's" / "its" / "this is" only
# where they start a clause ("hey its mike"): inside one they are a possessive or point at a thing ("its cap").
_CLAUSE_START = r"(?:^|(?<=[.!?,;:\n(][ \t]*)|(?<=(?i:\b(?:hi|hiya|hello|hey|heya|yo|morning|afternoon|evening|yes|yeah|oh|ok|okay|sorry))[ \t]+))"
# A form's field and its colon, the value in any case ("Account holder: maria garcia"); the value must read as a
# name, so "share your details with the sender: account number and sort code" stays.
_FIELD = (
    r"(?:(?:joint\s+)?account\s+(?:holder|owner)|beneficiary|payee|recipient|customer|client|card\s?holder|applicant"
    r"|sender|remitter)(?:['’]s)?(?:\s+name)?\s*:"
)
_CUE = re.compile(
    r"(?<![\p{L}])(?i:"
    + "|".join(f"(?:{c})" for c in PERSONAL_CUES)
    + rf"|im|{_CLAUSE_START}(?:this\s+is|it['’]?s|it\s+is)|{_FIELD})[ \t]*,?[ \t]+"
)
# What may follow a payee of one word: the clause goes on ("sent money to Mohammed and it bounced").
_LINKS = frozenset("and but for because so by via from with using through".split())
_PAYEE_CUE = re.compile(rf"(?<![\p{{L}}])(?i:{PAYEE})[ \t]+")
# What may follow a complete name: the end of a clause, or the words a name introduces itself with.
_CLAUSE_END = re.compile(r"[ \t]*(?:$|[,.!?;:)\n]|(?i:here|speaking|calling|writing)(?![\p{L}]))")
# Words that make a name part of a place or a firm ("Victoria Station", "Mount Everest", "North Anna"); surnames
# that are also such words but common as surnames (Hall, Park, Hill, Green) are left out.
_PLACE_NOUNS: frozenset[str] = frozenset(
    """
    mount mt lake port fort saint san santa north south east west cape loch isle
    station street road avenue lane square bridge airport centre center college university school hospital
    tower plaza mall market hotel bank gardens terrace heights stadium arena beach bay island city county
    valley river inc ltd llc plc group holdings securities insurance airlines airways motors pharmacy
    store supermarket restaurant cafe
    """.split()
)
_OPENS_SENTENCE = re.compile(r"(?:^|[.!?:\n])[\s\"'(]*$")  # the text before a token that opens one
_STOPPED = 16  # a token's kind: a function word or a word capitalised for other reasons, never a name
_UNKNOWN = 8  # a token's kind: in no list
_WHEN = frozenset("yesterday today tomorrow last next this on at".split())
_STOP = FUNCTION_WORDS | CAPITALISED_NON_NAMES | _PLACE_NOUNS
_MAX_PARTS = 4  # "maria garcia lopez", "nguyễn thị minh khai"


_CAPITALISED = re.compile(r"(?:\p{Ll}{1,3}['’\-])?\p{Lu}")  # "Mary", "al-Hassan", "d'Souza"
# Particles inside a name, in either case: "Ximena de la Cruz", "Anne Van der Berg", "Niamh Ní Bhriain".
_PARTICLES = frozenset(
    "de la del della der di du da dos das van von ter ten bin binti al el le ó ní nic mac ua y".split()
)


# Between two lower-case name words only the particles that are no English word ("ten", "bin", "la" are).
_LOWER_CASE_PARTICLES = frozenset("de del della der di du da dos das van von".split())


def _listed_surname(folded: str, names: PersonNames) -> bool:
    """ "o'neil" is listed as "oneil" by the Census, "O'Neil" by Faker; "al-sayed" and "smith-jones" by their parts."""
    if "'" not in folded and "-" not in folded:
        return False
    forms = (folded.replace("'", ""), *re.split(r"['\-]", folded)[1:])
    return any(names.kind(form) & SURNAME for form in forms)


def _capitalised(word: str) -> bool:
    return bool(_CAPITALISED.match(word)) and not word.isupper()


class _Reader:
    """The tokens of one text and the list look-ups on them, made once per token (the rules ask several times)."""

    def __init__(self, text: str, names: PersonNames) -> None:
        self.text = text
        self.names = names
        self.tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        self.folded: list[str] = []
        self._kind: list[int] = []
        for _, _, word in self.tokens:
            folded = names.fold(word)
            if folded in _STOP:
                kind = _STOPPED
            else:
                kind = names.kind(folded)
                if not kind & SURNAME and _listed_surname(folded, names):
                    kind |= SURNAME
                # In none of the lists: no everyday word, no listed name ("haoran", "tanvir", a typo). Acronyms
                # and two-letter words are left out ("SEPA", "ur").
                if not kind and len(folded) > 2 and not word.isupper():
                    kind = _UNKNOWN
            self.folded.append(folded)
            self._kind.append(kind)

    def adjacent(self, i: int) -> bool:
        """Token i + 1 follows token i with only blanks between them."""
        return i + 1 < len(self.tokens) and not self.text[self.tokens[i][1] : self.tokens[i + 1][0]].strip(
            " \t"
        )

    def stop(self, i: int) -> bool:
        return self._kind[i] == _STOPPED

    def given(self, i: int) -> bool:
        return bool(self._kind[i] & GIVEN)

    def surname(self, i: int) -> bool:
        return bool(self._kind[i] & SURNAME)

    def unknown(self, i: int) -> bool:
        return self._kind[i] == _UNKNOWN

    def when(self, i: int) -> bool:
        """Token i starts when something happened, as it does after a payee ("to lucas martin yesterday")."""
        return self.folded[i] in _WHEN

    def word(self, i: int) -> bool:
        return bool(self._kind[i] & WORD)

    def place_word(self, i: int) -> bool:
        """Token i is also a place of one word (a large city, a country, a US state)."""
        return bool(self._kind[i] & PLACE)

    def place(self, a: int, b: int) -> bool:
        """Tokens a..b are part of a place of several words ("Hong Kong", "El Salvador")."""
        places = self.names.places
        for start in (a - 1, a):
            for length in (2, 3, 4):
                stop = start + length
                if start >= 0 and stop - 1 >= a and stop <= len(self.folded):
                    if " ".join(self.folded[start:stop]) in places:
                        return True
        return False

    def ends_clause(self, i: int) -> bool:
        return bool(_CLAUSE_END.match(self.text, self.tokens[i][1]))

    def part(self, i: int) -> bool:
        """Token i can be part of a name: a listed given name or surname, or a word in no list."""
        return self.given(i) or self.surname(i) or self.unknown(i)

    def listed(self, i: int) -> bool:
        return self.given(i) or self.surname(i)

    def after_particles(self, i: int) -> int | None:
        """The token after token i and the particles following it ("de la"), if it follows on the same line."""
        j = i + 1
        while self.adjacent(j - 1) and j < len(self.tokens) and self.folded[j] in _PARTICLES:
            j += 1
        return j if j < len(self.tokens) and self.adjacent(j - 1) else None

    def name_end(self, i: int, cased: bool) -> int:
        """The last token of the name that starts at token i: its further parts (listed, or in no list, with
        particles between), if any. A part that is also a word ("brown", "king") counts where it is capitalised
        or the clause ends after it."""
        last = i
        cased = cased or _capitalised(self.tokens[i][2])  # "Tom needs": a capitalised name's surname is too
        while last - i < _MAX_PARTS and (nxt := self.after_particles(last)) is not None and self.part(nxt):
            if cased and not _capitalised(self.tokens[nxt][2]):
                break
            if self.word(nxt) and not (_capitalised(self.tokens[nxt][2]) or self.ends_clause(nxt)):
                break
            last = nxt
        return last

    def sentence_start(self, i: int) -> bool:
        return i == 0 or bool(_OPENS_SENTENCE.search(self.text, 0, self.tokens[i][0]))


def find_known_names(text: str) -> list[tuple[int, int]]:
    """(start, end) of each name found by the lists; see the module docstring."""
    if text.isupper():  # shouting: capitals say nothing, and every word would have to be looked up
        return []
    reader = _Reader(text, person_names())
    starts = {start: i for i, (start, _, _) in enumerate(reader.tokens)}
    spans: list[tuple[int, int]] = []
    # After a cue: a name, any case, in any order; an everyday word needs another part or the clause's end after it.
    for cue in _CUE.finditer(text):
        i = starts.get(cue.end())
        # In no list is a name too: the everyday words a cue precedes are all listed ("im waiting", "its ok").
        # A surname first ("this is nguyen thi lan") only where it is no everyday word ("i'm stuck here").
        if i is None or not (
            reader.given(i) or reader.unknown(i) or reader.surname(i) and not reader.word(i)
        ):
            continue
        # "im" is German too ("im Ausland", "im Moment"): there a capitalised word after it must be a given name.
        if (
            cue.group().strip().casefold() == "im"
            and _capitalised(reader.tokens[i][2])
            and not reader.given(i)
        ):
            continue
        last = reader.name_end(i, cased=False)
        if reader.word(i) and last == i and not reader.ends_clause(i):
            continue
        spans.append((i, last))
    # A payee of one word ("sent £10 to Ali.") where the clause ends, or a time or a conjunction follows it.
    for cue in _PAYEE_CUE.finditer(text):
        i = starts.get(cue.end())
        # Places money goes to ("to Paris", "to Jordan"), brands with a possessive ("to Nando's").
        if (
            i is None
            or not reader.given(i)
            or reader.word(i)
            or reader.place_word(i)
            or reader.tokens[i][2].casefold().endswith(("'s", "’s"))
        ):
            continue
        last = reader.name_end(i, cased=False)
        if last == i and not (
            reader.ends_clause(i)
            or reader.adjacent(i)
            and (reader.when(i + 1) or reader.folded[i + 1] in _LINKS)
        ):
            continue
        spans.append((i, last))
    # Two name words side by side (particles between allowed), in either order ("Vikram Sharma", "Trần Văn
    # Dung"): at least one listed, the other listed or in no list.
    for i in range(len(reader.tokens) - 1):
        if not reader.part(i) or (j := reader.after_particles(i)) is None:
            continue
        if not reader.part(j) or not (reader.listed(i) or reader.listed(j)):
            continue
        if reader.folded[i] == reader.folded[j]:  # a place ("Bora Bora", "Walla Walla"), a stutter
            continue
        # A word in no list beside an everyday word is a place or a typo more often ("Notting Hill"), and so
        # is a surname before one ("Costa Coffee"): surname-first names are written with a given name after.
        if (reader.unknown(i) and reader.word(j)) or (reader.unknown(j) and reader.word(i)):
            continue
        if not reader.given(i) and reader.word(j):
            continue
        first, second = reader.tokens[i][2], reader.tokens[j][2]
        if _capitalised(first) and _capitalised(second):
            # Two everyday words capitalised together open a sentence as a title or a brand ("Will Young")
            # more often; inside a sentence they are a name ("pay Harry Walker").
            if reader.word(i) and reader.word(j) and (reader.sentence_start(i) or not reader.given(i)):
                continue
            spans.append((i, reader.name_end(i, cased=True)))
        elif (
            first.islower()
            and second.islower()
            and all(reader.folded[k] in _LOWER_CASE_PARTICLES for k in range(i + 1, j))  # "jan de vries"
            and min(len(first), len(second)) > 2  # "york ny"
            and reader.given(i)
            and not reader.word(i)
            # a word in no list only after a particle: alone it is too often another language's ("una transferencia")
            and (reader.surname(j) or reader.unknown(j) and j > i + 1)
            # a surname that is also a word ("lucas martin") where the clause or the name ends after it
            and (not reader.word(j) or reader.ends_clause(j) or reader.adjacent(j) and reader.when(j + 1))
        ):
            spans.append((i, max(j, reader.name_end(i, cased=False))))
    found = [(a, b) for a, b in _merge(spans) if a == b or not reader.place(a, b)]
    return [(reader.tokens[a][0], reader.tokens[b][1]) for a, b in found]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token ranges that overlap become one: a cue's name and the same name's pair are one finding."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


class KnownNameRecognizer(FinderRecognizer):
    """Presidio recognizer for names found by the packaged name lists; see the module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "a name found by the name lists"
        super().__init__(
            ENTITY, find_known_names, WEAK_SCORE, why, "KnownNameRecognizer", supported_language, hint=None
        )

    def load(self) -> None:
        person_names()  # read the lists when the guard is built, not on its first request
