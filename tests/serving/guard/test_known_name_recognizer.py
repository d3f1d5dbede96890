"""Names found by the packaged name lists: a casual cue then a name in any case, and a given name beside a
surname with no cue at all; places, brands and everyday words that look like names stay."""

from __future__ import annotations

import pytest

from finserve.serving.guard import GuardConfig, PIIGuard
from finserve.serving.guard.known_name_recognizer import find_known_names
from finserve.serving.guard.name_recognizer import WEAK_SCORE


def _names(text: str) -> list[str]:
    return [text[start:end] for start, end in find_known_names(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a casual cue, the name in lower case
        ("hi im sarah jones and my card is lost", ["sarah jones"]),
        ("hello, this is david miller, I need help with a transfer", ["david miller"]),
        ("hey its mike, my card got eaten by the atm", ["mike"]),  # an everyday word, ending the clause
        ("i'm kevin o'neil, why was my transfer declined", ["kevin o'neil"]),  # the Census lists "oneil"
        ("my wife linda chen cannot log in", ["linda chen"]),
        ("Yes, it's nadia, I called earlier", ["nadia"]),
        ("it is jorge ramirez, can i get a new card", ["jorge ramirez"]),
        ("my husband kwame asante wants a joint account", ["kwame asante"]),
        # a given name and a surname side by side, no cue
        ("Please help Mary Johnson with her account", ["Mary Johnson"]),
        ("Could you check the payment to Hiroshi Tanaka last week?", ["Hiroshi Tanaka"]),
        ("The money was for Chloe Dubois but it bounced back", ["Chloe Dubois"]),
        ("Dear team, Ahmed Khan here.", ["Ahmed Khan"]),
        ("Hi there, Priya Sharma speaking", ["Priya Sharma"]),
        ("can you send the statement to Pat O'Brien", ["Pat O'Brien"]),
        ("why did Marco Bianchi's payment fail?", ["Marco Bianchi's"]),
        ("Please refund Mark Jones", ["Mark Jones"]),  # a word, then a surname that is not one
        ("Sarah Brown called me", ["Sarah Brown"]),  # a name, then a surname that is a word
        ("i sent money to priya sharma", ["priya sharma"]),
        ("i sent 200 to lucas martin yesterday", ["lucas martin"]),  # "martin" is a word: the clause goes on
        ("my friend lena schmidt paid me", ["lena schmidt"]),
        ("Good morning, Fatima Al-Sayed here", ["Fatima Al-Sayed"]),
        # a form's field and its colon, the value in any case
        ("Account holder: maria garcia", ["maria garcia"]),
        ("beneficiary name: kwame mensah, sort code to follow", ["kwame mensah"]),
        ("mijn naam is jan de vries", ["jan de vries"]),  # a particle between lower-case parts
        # a payee of one word: a given name that is no everyday word, then the clause's end, a time or a conjunction
        ("I paid 20 to Siobhan yesterday", ["Siobhan"]),
        ("I sent money to Mohammed and it bounced", ["Mohammed"]),
        ("I sent £10 to ali.", ["ali"]),
    ],
)
def test_finds_known_names(text: str, expected: list[str]) -> None:
    assert _names(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I'm in Hong Kong, can I use my card?",  # a place that reads as a name
        "Is Apple Pay supported in El Salvador?",
        "I live in Dawson Creek now",
        "I used an ATM at Victoria Station and it kept my card",  # a given name before a place noun
        "Will my card work in New York?",
        "May I transfer money to Jordan?",  # a given name alone, no cue
        "I'm sure I topped up",
        "I'm travelling to India next week",
        "Does Western Union take my card?",
        "Grant me access to my account please",
        "Mark my transaction as disputed",
        "this is ridiculous, my card was declined again",
        "its been a week and my card hasn't arrived",
        "the prefix cache's cap is 256 MiB and its cap is fixed",  # "its" inside a clause: a possessive
        "i am bill pay enabled",  # an everyday word with no surname and the clause going on
        "My son Tom needs a card",  # a capitalised name's surname is capitalised: "needs" is not one
        "send it to new york ny",  # two letters are no surname
        "share your details with the sender: account number and sort code",  # a field, no name after it
        "How tall is Mount Everest?",
        "i sent kevin ten pounds",  # "ten" is an English word before it is a particle
        "Meine Karte funktioniert im Ausland nicht",  # German "im": a noun after it, no given name
        "¿Cuánto cuesta una transferencia internacional?",  # "Una" is a given name; no surname after it
        "Dlaczego moja karta została zablokowana?",
        "WHY IS JOHN SMITH ON MY STATEMENT",  # shouting: capitals say nothing (the cue rules handle caps)
        "I sent £50 to Amazon by mistake",  # a payee that is an everyday word
        "I sent it to Mark",
        "I paid 30 to Tesco",  # in no list: brands are as often as names
        "can I send money to Georgia?",  # a place money is sent to: a US state, a country
        "I sent £100 to Paris",
        "I paid 25 to Nando's",  # a possessive: a shop
    ],
)
def test_leaves_what_is_not_a_name(text: str) -> None:
    found = _names(text)
    assert found in ([], ["Tom"]), found


def test_the_guard_masks_them() -> None:
    guard = PIIGuard(GuardConfig())
    result = guard.scan("hey im sarah jones, please pay Hiroshi Tanaka")
    assert "sarah" not in result.text and "Tanaka" not in result.text
    assert [(f.type, f.score) for f in result.findings] == [("PERSON", WEAK_SCORE), ("PERSON", WEAK_SCORE)]
