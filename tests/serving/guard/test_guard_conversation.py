"""Values split across the texts of one conversation (scan_many) are caught and masked in each."""

from __future__ import annotations

import pytest

from finserve.serving.guard import PIIGuard
from finserve.serving.guard.conversation import joins, split_back
from finserve.serving.guard.spans import Span

# (case id, the conversation's texts, exactly what scan_many must return)
CASES: list[tuple[str, list[str], list[str]]] = [
    (
        "card-over-two-user-turns",
        ["my card number is 4458 5630", "Thanks. Could you send the rest?", "7407 7526"],
        ["my card number is <CREDIT_CARD>", "Thanks. Could you send the rest?", "<CREDIT_CARD>"],
    ),
    (
        "card-over-system-and-user",
        [
            "You are a banking assistant. The customer's card starts 4458 5630",
            "7407 7526 and it was declined",
        ],
        [
            "You are a banking assistant. The customer's card starts <CREDIT_CARD>",
            "<CREDIT_CARD> and it was declined",
        ],
    ),
    (
        "card-in-words-over-turns",
        ["card four four five eight five six three zero", "seven four zero seven seven five two six"],
        ["card <CREDIT_CARD>", "<CREDIT_CARD>"],
    ),
    (
        "iban-over-turns",
        ["my IBAN is GB82 WEST", "1234 5698 7654 32"],
        ["my IBAN is <IBAN_CODE>", "<IBAN_CODE>"],
    ),
    (
        "phone-over-turns",
        ["call me on (201) 555", "-0142 please"],
        ["call me on <PHONE_NUMBER>", "<PHONE_NUMBER> please"],
    ),
    (
        "name-after-cue-in-previous-turn",
        ["Beneficiary name:", "Hannah Adeyemi, thanks"],
        ["Beneficiary name:", "<PERSON>, thanks"],
    ),
    (
        "password-after-keyword-in-previous-turn",
        ["my password is", "Hunter2xyz"],
        ["my password is", "<CREDENTIAL>"],
    ),
    (
        "contracted-keyword-in-previous-turn",
        ["my pin's", "4921"],
        ["my pin's", "<CARD_SECRET>"],
    ),
    (
        "birth-date-after-keyword-in-previous-turn",
        ["What is your date of birth?", "my date of birth is", "14/03/1985"],
        ["What is your date of birth?", "my date of birth is", "<DATE_OF_BIRTH>"],
    ),
    (
        "address-after-keyword-in-previous-turn",
        ["my new address is", "221B Baker Street, London NW1 6XE"],
        ["my new address is", "<ADDRESS>"],
    ),
    (
        "talk-about-a-password-stays",
        ["my password is", "not working since yesterday"],
        ["my password is", "not working since yesterday"],
    ),
    (
        "unrelated-numbers-stay",
        ["I paid 1500 on 12/05/2024", "20 of it came back"],
        ["I paid 1500 on 12/05/2024", "20 of it came back"],
    ),
]


@pytest.mark.parametrize(("case", "texts", "expected"), CASES, ids=[c[0] for c in CASES])
def test_split_values_are_masked_in_every_text(
    guard: PIIGuard, case: str, texts: list[str], expected: list[str]
) -> None:
    assert [r.text for r in guard.scan_many(texts)] == expected


def test_scan_each_reads_texts_on_their_own(guard: PIIGuard) -> None:
    texts = ["my card number is 4458 5630", "7407 7526"]
    assert [r.text for r in guard.scan_each(texts)] == texts


def test_findings_of_each_part_index_its_own_text(guard: PIIGuard) -> None:
    texts = ["card 4458 5630 ", "  7407 7526 ok"]
    first, second = guard.scan_many(texts)
    assert [(f.start, f.end) for f in first.findings] == [(5, 14)]
    assert [(f.start, f.end) for f in second.findings] == [(2, 11)]


def test_only_open_ends_are_joined() -> None:
    texts = ["my card is 4458", "what is the fee?", "5630 7407 7526", "Regards,", "Jane"]
    pairs = {(j.first, j.second) for j in joins(texts)}
    assert (0, 2) in pairs and (3, 4) in pairs
    assert (1, 2) not in pairs and (0, 1) not in pairs


def test_a_keyword_waiting_for_its_value_opens_a_join() -> None:
    pairs = {
        (j.first, j.second) for j in joins(["my password is", "Hunter2", "I lost my card", "Can you help?"])
    }
    assert (0, 1) in pairs and (2, 3) not in pairs


def test_split_back_maps_a_crossing_span_to_both_texts() -> None:
    [join] = joins(["x 4458 5630", "7407 7526 y"])
    assert join.text == "x 4458 5630 7407 7526 y"
    parts = split_back(join, [Span("CREDIT_CARD", 2, 21, 1.0)])
    assert parts == [(0, Span("CREDIT_CARD", 2, 11, 1.0)), (1, Span("CREDIT_CARD", 0, 9, 1.0))]
