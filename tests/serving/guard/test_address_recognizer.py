"""Postal addresses: street lines, postcodes, and the clause after an address keyword."""

from __future__ import annotations

import pytest

from finserve.serving.guard.address_recognizer import find_addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I live at 221B Baker Street, London NW1 6XE", ["221B Baker Street, London NW1 6XE"]),
        ("Flat 3, 12 High St. in Leeds", ["Flat 3, 12 High St."]),
        (
            "send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500",
            ["1600 Pennsylvania Avenue NW, Washington, DC 20500"],
        ),
        ("123 Main St, Springfield, IL 62704", ["123 Main St, Springfield, IL 62704"]),
        ("my postcode is sw1a 1aa", ["sw1a 1aa"]),
        ("zip code: 90210", ["90210"]),
        ("the parcel went to SW1A 2AA", ["SW1A 2AA"]),
        (
            "my new address is 5 rue de Rivoli, 75001 Paris. Can you update it?",
            ["5 rue de Rivoli, 75001 Paris"],
        ),
        ("Address: 42 Wallaby Way, Sydney NSW 2000", ["42 Wallaby Way, Sydney NSW 2000"]),
        ("my address is Rose Cottage, Church Lane, Ambridge", ["Rose Cottage, Church Lane, Ambridge"]),
        ("Musterstraße 12, 10115 Berlin", ["Musterstraße 12, 10115 Berlin"]),
        ("Calle Mayor 5, 28013 Madrid", ["Calle Mayor 5, 28013 Madrid"]),
        ("Keizersgracht 123, 1015 CJ Amsterdam", ["Keizersgracht 123, 1015 CJ Amsterdam"]),
        ("send it to PO Box 1234, Springfield", ["PO Box 1234, Springfield"]),
        ("P.O. Box 77, Leeds LS1 4AP", ["P.O. Box 77, Leeds LS1 4AP"]),
        (
            "I moved to 1 Infinite Loop, Cupertino, CA 95014 last year",
            ["1 Infinite Loop, Cupertino, CA 95014"],
        ),
        ("Flat 4B, 77 Rue de la Paix, 75002 Paris", ["Flat 4B, 77 Rue de la Paix, 75002 Paris"]),
        # a Canadian postal code after its province; lower-case street lines where a card is sent or one moved to
        ("55 Queen St W, Toronto, ON M5H 2M9", ["55 Queen St W, Toronto, ON M5H 2M9"]),
        (
            "send the card to apt 4b 221 w 42nd st new york ny 10036",
            ["apt 4b 221 w 42nd st new york ny 10036"],
        ),
        ("can you send it to 14 elm grove, leeds ls6 2ab please", ["14 elm grove, leeds ls6 2ab"]),
        ("I moved to 7 rue des lilas", ["7 rue des lilas"]),
        # a street line in lower case, vouched for by its town and postcode
        ("flat 2, 14 queen street, edinburgh eh2 1jx", ["flat 2, 14 queen street, edinburgh eh2 1jx"]),
        ("it's 221 w 42nd st, new york ny 10036, the old one", ["221 w 42nd st, new york ny 10036"]),
    ],
)
def test_finds_addresses(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_addresses(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "How do I change my address?",
        "my address has changed",
        "my address is the same as before",
        "my email address is jane@example.com",
        "I paid via Apple Pay 3 times",
        "Via Revolut 25 EUR",
        "I have 2 Pending Transactions",
        "what is your address",
        "I paid BP 45 pounds for fuel",
        "my address book has 3 entries",  # "address" without "is" or ":" introduces nothing
        "I sent money to 2 accounts in the same way",
        "send £50 to 3 friends on the same day",
        "I moved to the UK in 2020 and need a card",
        "i paid 5 for the drive, london was fun",  # function words cannot name a street
        "I have 3 cards, 2 accounts and 1 loan, sw1 is my area",
    ],
)
def test_ignores_other_text(text: str) -> None:
    assert find_addresses(text) == []
