"""PIIGuard against real Presidio: what each entity type catches and misses, offsets, no leaks."""

from __future__ import annotations

import re
import threading

import pytest

from finserve.serving.guard import GuardConfig, GuardResult, PIIGuard

# (entity type, text, the exact PII substring expected to be found)
POSITIVES: list[tuple[str, str, str]] = [
    ("CREDIT_CARD", "My card 4111 1111 1111 1111 was declined", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "card number 5500-0000-0000-0004 please block it", "5500-0000-0000-0004"),
    ("CREDIT_CARD", "amex 378282246310005 charged twice", "378282246310005"),
    ("IBAN_CODE", "send it to GB82 WEST 1234 5698 7654 32 today", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN_CODE", "my German IBAN is DE89370400440532013000.", "DE89370400440532013000"),
    ("US_SSN", "my ssn is 536-22-8145", "536-22-8145"),
    ("US_SSN", "Social security number 536 22 8145 for the form", "536 22 8145"),
    ("EMAIL_ADDRESS", "email me at jane.doe@example.co.uk thanks", "jane.doe@example.co.uk"),
    ("EMAIL_ADDRESS", "j_smith+bank@mail.example.org is my address", "j_smith+bank@mail.example.org"),
    ("EMAIL_ADDRESS", "email me at jane at example dot com", "jane at example dot com"),
    ("PHONE_NUMBER", "call me on +44 20 7946 0958 after 5", "+44 20 7946 0958"),
    ("PHONE_NUMBER", "my number is (212) 555-0198", "(212) 555-0198"),
    ("PHONE_NUMBER", "ring 020 7946 0958 please", "020 7946 0958"),
    ("PHONE_NUMBER", "mobile +49 30 901820 if urgent", "+49 30 901820"),
    ("IP_ADDRESS", "login from 192.168.10.4 was not me", "192.168.10.4"),
    ("IP_ADDRESS", "the ip 2001:db8::8a2e:370:7334 is unknown", "2001:db8::8a2e:370:7334"),
    ("UK_SORT_CODE", "sort code 20-00-00 account 12345678", "20-00-00"),
    ("UK_ACCOUNT_NUMBER", "sort code 20-00-00 account 12345678", "12345678"),
    ("UK_SORT_CODE", "Sort code: 404784, thanks", "404784"),
    ("UK_ACCOUNT_NUMBER", "account number: 3192 6819", "3192 6819"),
    ("CARD_SECRET", "my pin is 4821 and it is blocked", "4821"),
    ("CARD_SECRET", "CVV: 123, expiry 04/27", "123"),
    ("PERSON", "my name is Jane Doe and I lost my card", "Jane Doe"),
    ("PERSON", "Hi, I'm John Smith, my card is stuck", "John Smith"),
    ("PERSON", "this is Maria Garcia from the Leeds branch", "Maria Garcia"),
    ("PERSON", "The name on the account is Peter O'Neil-Brown.", "Peter O'Neil-Brown"),
    ("PERSON", "Thanks for the help.\nKind regards,\nJames T. Kirk", "James T. Kirk"),
    # a published sample number (Presidio drops it): still masked
    ("US_SSN", "my ssn is 123-45-6789", "123-45-6789"),
    ("CARD_SECRET", "the code on the back is 737", "737"),
    ("CARD_SECRET", "card 4111 1111 1111 1111 exp 09/27", "09/27"),
    ("UK_NINO", "my NI number is AB 12 34 56 C", "AB 12 34 56 C"),
    ("ID_NUMBER", "my passport number is 925076473", "925076473"),
    ("ID_NUMBER", "driving licence MORGA753116SM9IJ, can I use it?", "MORGA753116SM9IJ"),
    ("DATE_OF_BIRTH", "my date of birth is 14/03/1985", "14/03/1985"),
    ("DATE_OF_BIRTH", "I was born on the 3rd of March 1985", "3rd of March 1985"),
    ("ADDRESS", "I live at 221B Baker Street, London NW1 6XE", "221B Baker Street, London NW1 6XE"),
    (
        "ADDRESS",
        "my new address is 5 rue de Rivoli, 75001 Paris. Can you update it?",
        "5 rue de Rivoli, 75001 Paris",
    ),
    ("CREDENTIAL", "my password is Hunter2!", "Hunter2"),
    ("CREDENTIAL", "the code you sent me is 482913", "482913"),
    ("ACCOUNT_NUMBER", "my checking account number is 0012 3456 7890", "0012 3456 7890"),
    # card numbers failing Luhn (a typo, a made-up example) are still cards after a card word or printed as one
    ("CREDIT_CARD", "My card 4111 1111 1111 1112 was declined", "4111 1111 1111 1112"),
    ("CREDIT_CARD", "my card number is 1234 5678 9012 3456", "1234 5678 9012 3456"),
    ("CREDIT_CARD", "it's 4929173852046617, my visa", "4929173852046617"),
    ("CREDIT_CARD", "please refund 4929-1738-5204-6617 today", "4929-1738-5204-6617"),
    # IBANs failing mod-97 in their country's exact format, or after the word IBAN
    ("IBAN_CODE", "please pay into GB12ABCD12345612345678 today", "GB12ABCD12345612345678"),
    # e-mail addresses on private domains, and undotted ones after their keyword
    ("EMAIL_ADDRESS", "my email is jane.doe@company.internal", "jane.doe@company.internal"),
    ("EMAIL_ADDRESS", "my email address is bob@gmail, sorry", "bob@gmail"),
    # SSNs Presidio's range rules refuse, after their keyword
    ("US_SSN", "my ssn is 000-12-3456", "000-12-3456"),
    ("US_SSN", "social security number 666 45 1234", "666 45 1234"),
    ("IBAN_CODE", "my IBAN is DE12 3456 7890 1234 5678 90, thanks", "DE12 3456 7890 1234 5678 90"),
]

# (entity type that must NOT be reported, text)
NEGATIVES: list[tuple[str, str]] = [
    ("CREDIT_CARD", "transaction id 4929173852046617 failed"),  # fails Luhn, no card word, not printed as one
    ("CREDIT_CARD", "since 2013. 1500.00 was taken on 12/05/2024 at 10:42"),
    ("CREDIT_CARD", "I was charged 1500 and then 2000 again"),
    ("IBAN_CODE", "ref GB82 WEST 1234 today"),  # too short for any IBAN
    ("US_SSN", "ticket 536-22 was closed"),
    ("EMAIL_ADDRESS", "meet me at home dot five"),  # "at ... dot" without a real domain
    ("EMAIL_ADDRESS", "upgrade to version@1.2.3 failed"),  # no letters in the last label
    ("EMAIL_ADDRESS", "see you @ 5pm"),
    ("PHONE_NUMBER", "I was charged 3 times for 12.50"),
    ("PHONE_NUMBER", "the transfer of 1500.00 took 2 days"),
    ("IP_ADDRESS", "the app version 4.2 crashed"),
    ("UK_SORT_CODE", "I paid on 12-05-24 and it has not arrived"),
    ("UK_ACCOUNT_NUMBER", "order 12345678 is late"),
    ("UK_ACCOUNT_NUMBER", "my account has 12345678 points"),
    ("CARD_SECRET", "I forgot my PIN, can I reset it?"),
    ("CARD_SECRET", "my pin was changed 3 times"),
    ("PERSON", "I'm waiting for my card, it's been a week"),
    ("PERSON", "I am still waiting on my card?"),
    ("PERSON", "I'm in America and my card doesn't work"),
    ("PERSON", "This is Visa, right? I am British"),
    ("PERSON", "I AM MISSING CASH FROM MY BANK ACCOUNT"),
    ("PERSON", "this is URGENT"),
    ("DATE_OF_BIRTH", "the transfer on 14/03/1985 never arrived"),
    ("DATE_OF_BIRTH", "my date of birth is wrong in the app"),
    ("ADDRESS", "How do I change my address?"),
    ("ADDRESS", "I paid via Apple Pay 3 times"),
    ("ADDRESS", "my email address is wrong"),
    ("CREDENTIAL", "my password is not working"),
    ("CREDENTIAL", "I don't know what my password is anymore"),
    ("CREDENTIAL", "the password reset link expired"),
    ("ID_NUMBER", "my passport expired, what ID can I use?"),
    ("ID_NUMBER", "the transaction id 55512345 is pending"),
    ("CARD_SECRET", "when does my card expire?"),
    ("ACCOUNT_NUMBER", "my account balance is 1500 and I have 2 accounts"),
]


def _found(result: GuardResult, text: str) -> set[tuple[str, str]]:
    return {(f.type, text[f.start : f.end]) for f in result.findings}


@pytest.mark.parametrize(
    ("entity", "text", "pii"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)]
)
def test_finds_entity_with_exact_offsets(guard: PIIGuard, entity: str, text: str, pii: str) -> None:
    result = guard.scan(text)
    assert (entity, pii) in _found(result, text)
    assert f"<{entity}>" in result.text
    assert pii not in result.text


@pytest.mark.parametrize(("entity", "text"), NEGATIVES, ids=[f"{n[0]}-{i}" for i, n in enumerate(NEGATIVES)])
def test_does_not_report(guard: PIIGuard, entity: str, text: str) -> None:
    result = guard.scan(text)
    assert entity not in result.counts(), _found(result, text)
    assert f"<{entity}>" not in result.text


def test_message_with_many_entities_leaves_no_digit_run_or_address(guard: PIIGuard) -> None:
    text = (
        "Hi, my name is Jane Doe. Card 4111-1111-1111-1111, IBAN GB82WEST12345698765432, "
        "ssn 536-22-8145, mail jane.doe@example.com, phone +44 20 7946 0958, ip 10.20.30.40, "
        "sort code 20-00-00 account 31926819, pin 4821."
    )
    result = guard.scan(text)
    assert result.counts() == {
        "PERSON": 1,
        "CREDIT_CARD": 1,
        "IBAN_CODE": 1,
        "US_SSN": 1,
        "EMAIL_ADDRESS": 1,
        "PHONE_NUMBER": 1,
        "IP_ADDRESS": 1,
        "UK_SORT_CODE": 1,
        "UK_ACCOUNT_NUMBER": 1,
        "CARD_SECRET": 1,
    }
    assert not re.search(r"\d{2}", result.text), result.text
    assert "@" not in result.text and "Jane" not in result.text
    # Findings are disjoint, sorted, and index the original text.
    spans = [(f.start, f.end) for f in result.findings]
    assert spans == sorted(spans)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


def test_text_without_pii_is_returned_unchanged(guard: PIIGuard) -> None:
    text = "How long does it take for my new card to arrive? I ordered it 3 days ago."
    result = guard.scan(text)
    assert result == GuardResult(text=text, findings=[], blocked=[])


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text(guard: PIIGuard, text: str) -> None:
    assert guard.scan(text) == GuardResult(text=text)


def test_counts_group_by_type(guard: PIIGuard) -> None:
    result = guard.scan("call +44 20 7946 0958 or (212) 555-0198, card 4111 1111 1111 1111")
    assert result.counts() == {"PHONE_NUMBER": 2, "CREDIT_CARD": 1}


def test_scan_many_matches_scan(guard: PIIGuard) -> None:
    texts = [text for _, text, _ in POSITIVES] + ["", "no pii here"] + [text for _, text in NEGATIVES]
    assert guard.scan_many(texts) == [guard.scan(t) for t in texts]
    assert guard.scan_many([]) == []


def test_concurrent_scans_give_serial_results(guard: PIIGuard) -> None:
    texts = [text for _, text, _ in POSITIVES]
    expected = [guard.scan(t) for t in texts]
    outcomes: list[list[GuardResult]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            outcomes.append([guard.scan(t) for t in texts])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert outcomes == [expected] * 6


def test_only_configured_entities_are_reported(make_guard) -> None:
    guard = make_guard(entities=["EMAIL_ADDRESS"])
    text = "card 4111 1111 1111 1111, mail jane@example.com"
    result = guard.scan(text)
    assert _found(result, text) == {("EMAIL_ADDRESS", "jane@example.com")}
    assert "4111 1111 1111 1111" in result.text


def test_allow_list_keeps_the_banks_own_number(make_guard) -> None:
    guard = make_guard(allow_list=["+44 20 7946 0000"])
    text = "The bank's line +44 20 7946 0000 told me to call you from +44 20 7946 0958"
    result = guard.scan(text)
    assert _found(result, text) == {("PHONE_NUMBER", "+44 20 7946 0958")}
    assert "+44 20 7946 0000" in result.text


def test_score_threshold_drops_weak_findings(make_guard) -> None:
    # Phone numbers score 0.4-0.6 without a context word; a stricter threshold drops them.
    strict = make_guard(score_threshold=0.7)
    assert "PHONE_NUMBER" not in strict.scan("later +44 20 7946 0958 maybe").counts()
    assert "CREDIT_CARD" in strict.scan("card 4111 1111 1111 1111").counts()


def test_from_config_accepts_a_dict() -> None:
    guard = PIIGuard.from_config({"entities": ["US_SSN"], "default_action": "redact"})
    assert guard.config == GuardConfig(entities=["US_SSN"], default_action="redact")
    assert guard.scan("ssn 536-22-8145!").text == "ssn !"
