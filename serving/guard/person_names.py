"""The given names and surnames the guard knows (data/person_names.txt, built by scripts/build_name_lists.py).

A list cannot tell a name from a word by itself ("will", "mark", "chase" are both), so the file also lists the
everyday English words; the rules that use it (known_name_recognizer.py) ask for more evidence of a name that is
also a word, and take a word in no list after "hi im" for a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

GIVEN = 1
SURNAME = 2
WORD = 4  # an everyday English word
PLACE = (
    8  # also a place of one word money is sent to: a city of 100,000 people or more, a country, a US state
)
_FLAGS = {"g": GIVEN, "s": SURNAME, "w": WORD, "c": PLACE}
_BITS = {
    "".join(f for f, bit in _FLAGS.items() if bits & bit): bits
    for bits in range(1, (GIVEN | SURNAME | WORD | PLACE) + 1)
}


@dataclass(frozen=True, slots=True)
class PersonNames:
    """Case-folded entries; look words up with `fold`."""

    kinds: dict[str, int]  # entry -> GIVEN | SURNAME | WORD | PLACE bits
    places: frozenset[
        str
    ]  # places of several words that read as a name ("hong kong"), words joined by a blank

    @staticmethod
    def fold(word: str) -> str:
        """The form the lists hold: case-folded, the curly apostrophe straight, a possessive "'s" dropped."""
        folded = word.casefold()
        if "’" in folded:
            folded = folded.replace("’", "'")
        return folded[:-2] if folded.endswith("'s") else folded

    def kind(self, folded: str) -> int:
        return self.kinds.get(folded, 0)


@cache
def person_names() -> PersonNames:
    """The packaged lists, read once per process (about 186,000 entries, 20 MB)."""
    kinds: dict[str, int] = {}
    places: set[str] = set()
    with files(__package__).joinpath("data", "person_names.txt").open(encoding="utf-8") as fh:
        for line in fh:  # line by line: a list of all rows first would double the resident memory it leaves
            if line.startswith("#"):
                continue
            name, flags = line.rstrip("\n").split("\t")
            if flags == "p":
                places.add(name)
            else:
                kinds[name] = _BITS[flags]
    return PersonNames(kinds, frozenset(places))
