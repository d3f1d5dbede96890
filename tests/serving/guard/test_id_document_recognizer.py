"""Identity-document and tax numbers: a value with four digits or more after its keyword."""

from __future__ import annotations

import pytest

from finserve.serving.guard.id_document_recognizer import find_id_numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my passport number is 925076473", ["925076473"]),
        ("passport no. X1234567 issued 2019", ["X1234567"]),
        ("driving licence MORGA753116SM9IJ", ["MORGA753116SM9IJ"]),
        ("NI number AB-12-34-56-C", ["AB-12-34-56-C"]),
        ("national insurance number AB 12 34 56 C please", ["AB 12 34 56 C"]),
        ("DNI 12345678Z", ["12345678Z"]),
        ("mi DNI es 12345678Z", ["12345678Z"]),  # the "is" of other languages
        ("meine Steuer-ID lautet 12 345 678 901", ["12 345 678 901"]),
        ("my tax id: 123-45-6789", ["123-45-6789"]),
        ("national ID 7501011234567", ["7501011234567"]),
        ("my ID is 12345678 and I need help", ["12345678"]),
        ("the last 4 of my ssn are 1234", ["1234"]),
        ("My NI is QQ 12 34 56 C", ["QQ 12 34 56 C"]),
        ("NI: JG 10 37 59 A", ["JG 10 37 59 A"]),
        ("NRIC S1234567D", ["S1234567D"]),
        ("my CNIC is 12345-1234567-1", ["12345-1234567-1"]),
        ("last four digits of my social security number: 8145", ["8145"]),
        # the contracted "is", and keywords that are also words only where they are plainly keywords
        ("my passport no's 533380006", ["533380006"]),
        ("TFN 123 456 782", ["123 456 782"]),
        ("DL number S530-4612-1234", ["S530-4612-1234"]),
        ("EIN 12-3456789", ["12-3456789"]),
        # vehicle registration plates after their keyword
        ("my car reg is LV19 XYZ, was it towed?", ["LV19 XYZ"]),
        ("licence plate 7ABC123", ["7ABC123"]),
        ("number plate: KA 01 AB 1234", ["KA 01 AB 1234"]),
        ("the registration plate is B-MW 1234", ["B-MW 1234"]),
        ("my car's reg is ab12cde", ["ab12cde"]),
        # other countries' national numbers, a VIN, the numbers an employer, insurer or club knows a person by
        ("my VIN is 1HGCM82633A004352", ["1HGCM82633A004352"]),
        ("PAN card ABCDE1234F", ["ABCDE1234F"]),
        ("my PESEL is 44051401359", ["44051401359"]),
        ("RRN 900101-1234567", ["900101-1234567"]),
        ("my TC kimlik no is 10000000146", ["10000000146"]),
        ("my employee id is E-48213", ["E-48213"]),
        ("policy number POL-2231-8891 was cancelled", ["POL-2231-8891"]),
        ("membership no. M7678642", ["M7678642"]),
    ],
)
def test_finds_id_numbers(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_id_numbers(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "my passport expired",
        "licence fee of 30",
        "What ID do I need?",
        "I need ID verification for 2 accounts",
        "the transaction id 55512345 is pending",
        "card id 1234",
        "NI is part of the UK, I moved 2 years ago",
        "ich habe ein Konto mit 2000 Euro",  # German "ein", not an EIN
        "dl 2024 statement please",
        "what is the reg number for?",
        "change my registration number",
        "my number plate was stolen",
        "my policy number changed",  # no value
        "the vin is on the dashboard",
        "How long does the policy take, 2024 or 2025?",  # "policy" without its number word
    ],
)
def test_ignores_other_numbers(text: str) -> None:
    assert find_id_numbers(text) == []
