"""Every format and obfuscation the guard promises to catch, with the exact text it must produce
(real Presidio, default policy). The corpus test measures rates; this table pins behaviour."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finserve.serving.guard import PIIGuard

CARD = "4458 5630 7407 7526"  # Luhn-valid
# (case id, text, exact guarded text)
CASES: list[tuple[str, str, str]] = [
    # cards: separators
    ("card-dots", "card number 4458.5630.7407.7526 was charged twice", "card number <CREDIT_CARD> was charged twice"),
    ("card-slashes", "card number 4458/5630/7407/7526 was charged twice", "card number <CREDIT_CARD> was charged twice"),
    ("card-single-digits", "my card is 4 4 5 8 5 6 3 0 7 4 0 7 7 5 2 6", "my card is <CREDIT_CARD>"),
    ("card-spaced-dots", "card 4458 . 5630 . 7407 . 7526 please", "card <CREDIT_CARD> please"),
    ("card-double-spaces", "card 4458  5630  7407  7526 please", "card <CREDIT_CARD> please"),
    ("card-amex-4-6-5-dots", "amex 3782.822463.10005 declined", "amex <CREDIT_CARD> declined"),
    ("card-mastercard-2-series", "card 2223 0000 4841 0010 again", "card <CREDIT_CARD> again"),
    ("card-en-dash", "card 4458\u20135630\u20137407\u20137526 ok", "card <CREDIT_CARD> ok"),
    ("card-nbsp", "card 4458\u00a05630\u00a07407\u00a07526 ok", "card <CREDIT_CARD> ok"),
    # cards: other digits and invisible characters
    ("card-fullwidth", "card ４４５８５６３０７４０７７５２６ ok", "card <CREDIT_CARD> ok"),
    ("card-fullwidth-ideographic-space", "card ４４５８\u3000５６３０\u3000７４０７\u3000７５２６ ok", "card <CREDIT_CARD> ok"),
    ("card-arabic-indic", "card ٤٤٥٨ ٥٦٣٠ ٧٤٠٧ ٧٥٢٦ ok", "card <CREDIT_CARD> ok"),
    ("card-persian", "card ۴۴۵۸۵۶۳۰۷۴۰۷۷۵۲۶ ok", "card <CREDIT_CARD> ok"),
    ("card-devanagari", "card ४४५८-५६३०-७४०७-७५२६ ok", "card <CREDIT_CARD> ok"),
    ("card-zero-width", "card 44\u200b58 56\u200d30 7407\u2060 7526 ok", "card <CREDIT_CARD> ok"),
    # cards: words
    (
        "card-words",
        "four four five eight five six three zero seven four zero seven seven five two six",
        "<CREDIT_CARD>",
    ),
    ("card-words-double", "card double four five eight, five six three zero, seven four zero seven, seven five two six",
     "card <CREDIT_CARD>"),
    ("card-mixed-words", "card 4458 five six three zero 7407 seven five two six", "card <CREDIT_CARD>"),
    # IBANs
    ("iban-lower", "iban gb82 west 1234 5698 7654 32 thanks", "iban <IBAN_CODE> thanks"),
    ("iban-lower-compact", "refund gb82west12345698765432 please", "refund <IBAN_CODE> please"),
    ("iban-dashes", "to GB82-WEST-1234-5698-7654-32 today", "to <IBAN_CODE> today"),
    ("iban-lower-dashes", "to de89-3704-0044-0532-0130-00 today", "to <IBAN_CODE> today"),
    ("iban-dots", "to FR14.2004.1010.0505.0001.3M02.606 ok", "to <IBAN_CODE> ok"),
    # phones: shapes, no numbering-plan check
    ("phone-us-parens", "(827) 324-5383", "<PHONE_NUMBER>"),
    ("phone-us-parens-tight", "call (201)555-0142 now", "call <PHONE_NUMBER> now"),
    ("phone-us-dots", "it's 201.555.0142", "it's <PHONE_NUMBER>"),
    ("phone-us-plus1", "+1-201-555-0142 is mine", "<PHONE_NUMBER> is mine"),
    ("phone-uk-mobile-intl", "+44 7651 511496", "<PHONE_NUMBER>"),
    ("phone-uk-fiction-range", "My phone is +44 7700 900123.", "My phone is <PHONE_NUMBER>."),
    ("phone-uk-trunk-in-parens", "ring +44 (0)20 7946 0958", "ring <PHONE_NUMBER>"),
    ("phone-uk-national", "my mobile 07700 900123", "my mobile <PHONE_NUMBER>"),
    ("phone-00-prefix", "0044 7700 900123 works", "<PHONE_NUMBER> works"),
    ("phone-fr-pairs", "mon numero 06 12 34 56 78", "mon numero <PHONE_NUMBER>"),
    ("phone-de-mobile", "Handy +49 151 23456789", "Handy <PHONE_NUMBER>"),
    ("phone-es-context", "call me on 612 345 678", "call me on <PHONE_NUMBER>"),
    ("phone-context-after", "606 269 377 is my new number", "<PHONE_NUMBER> is my new number"),
    ("phone-single-digits", "my mobile is 0 7 7 0 0 9 0 0 1 2 3", "my mobile is <PHONE_NUMBER>"),
    ("phone-words", "call me on oh seven seven double oh nine oh oh one two three", "call me on <PHONE_NUMBER>"),
    ("phone-fullwidth", "call （２０１）５５５-０１４２", "call <PHONE_NUMBER>"),
    # SSNs
    ("ssn-dots", "my ssn is 536.22.8145", "my ssn is <US_SSN>"),
    ("ssn-compact-context", "SSN: 536228145 for the form", "SSN: <US_SSN> for the form"),
    ("ssn-words", "ssn five three six two two eight one four five", "ssn <US_SSN>"),
    ("ssn-zero-width", "my ssn is 536\u200b-22-8145", "my ssn is <US_SSN>"),
    # UK bank details
    ("uk-fullwidth", "sort code ２０-００-００ account １２３４５６７８", "sort code <UK_SORT_CODE> account <UK_ACCOUNT_NUMBER>"),
    # e-mails
    ("email-spelled", "mail jane dot doe at mail dot com", "mail <EMAIL_ADDRESS>"),
    ("email-brackets", "j.smith [at] example [dot] co [dot] uk please", "<EMAIL_ADDRESS> please"),
    ("email-upper-at", "JANE.DOE AT GMAIL DOT COM", "<EMAIL_ADDRESS>"),
    ("email-fullwidth-at", "jane.doe＠example.org", "<EMAIL_ADDRESS>"),
    # names after cues
    ("name-on-account", "Refund to IBAN GB82WEST12345698765432 please, name on account Hannah Adeyemi",
     "Refund to IBAN <IBAN_CODE> please, name on account <PERSON>"),
    ("name-account-holder", "The account holder is Chukwuemeka Okafor.", "The account holder is <PERSON>."),
    ("name-regards", "Thanks for the help. Regards, Siobhán O'Brien", "Thanks for the help. Regards, <PERSON>"),
    ("name-beneficiary", "Beneficiary name: Hannah Adeyemi", "Beneficiary name: <PERSON>"),
    ("name-thanks", "It worked.\nThanks,\nPriya Ramanathan", "It worked.\nThanks,\n<PERSON>"),
    ("name-best-prefix", "Best, Ahmed al-Hassan", "Best, <PERSON>"),
    ("name-here", "Hi, Jane Doe here, my card is stuck", "Hi, <PERSON> here, my card is stuck"),
    ("name-i-am", "I am Kim Min-jun", "I am <PERSON>"),
    ("name-all-caps", "NAME ON ACCOUNT: HANNAH ADEYEMI", "NAME ON ACCOUNT: <PERSON>"),
    ("name-all-caps-i-am", "Hi I AM JOHN SMITH and my card", "Hi I AM <PERSON> and my card"),
    # names in passing: relatives, payees
    ("name-relative", "my wife Anna Kowalska will call", "my wife <PERSON> will call"),
    ("name-lower-case", "my name is jane doe and my card was stolen", "my name is <PERSON> and my card was stolen"),
    ("name-title-lower", "this is mr. david o'brien speaking", "this is mr. <PERSON> speaking"),
    ("name-surname-first", "My name is O'Connor, Siobhan", "My name is <PERSON>"),
    ("name-payee", "I sent £50 to Mark Jones yesterday", "I sent £50 to <PERSON> yesterday"),
    ("name-payee-brand", "I paid 20 pounds to Western Union", "I paid 20 pounds to Western Union"),
    # short phone numbers with a context word
    ("phone-de-short-trunk", "tel: 030 901820", "tel: <PHONE_NUMBER>"),
    ("phone-local-7", "my number is 555-0142", "my number is <PHONE_NUMBER>"),
    # crypto wallets (checksum-validated)
    ("crypto-btc", "my bitcoin wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "my bitcoin wallet <CRYPTO>"),
    ("crypto-eth", "send it to 0x52908400098527886E0F7030069857D2E4169EE7 pls", "send it to <CRYPTO> pls"),
    ("crypto-eth-tx-hash", "tx 0x" + "ab" * 32 + " is pending", "tx 0x" + "ab" * 32 + " is pending"),
    # card secrets in other words, expiry dates
    ("cvv-back-of-card", "the code on the back of my card is 737", "the code on the back of my card is <CARD_SECRET>"),
    ("card-expiry", "card 4111 1111 1111 1111 expires 09/27", "card <CREDIT_CARD> expires <CARD_SECRET>"),
    ("cvv-words", "my pin is four eight two one", "my pin is <CARD_SECRET>"),
    # identity documents and national numbers
    ("nino-spaced", "my NI number is AB 12 34 56 C", "my NI number is <UK_NINO>"),
    ("nino-dashes", "national insurance number AB-12-34-56-C", "national insurance number <ID_NUMBER>"),
    ("passport", "my passport number is 925076473", "my passport number is <ID_NUMBER>"),
    ("driving-licence", "driving licence MORGA753116SM9IJ", "driving licence <ID_NUMBER>"),
    ("ssn-sample", "my SSN is 123-45-6789", "my SSN is <US_SSN>"),
    # account and customer numbers of other countries
    ("account-us", "acct 000123456789 please", "acct <ACCOUNT_NUMBER> please"),
    ("customer-number", "my customer number is 8877665544", "my customer number is <ACCOUNT_NUMBER>"),
    # dates of birth
    ("dob-numeric", "my date of birth is 14/03/1985", "my date of birth is <DATE_OF_BIRTH>"),
    ("dob-iso", "DOB: 1985-03-14", "DOB: <DATE_OF_BIRTH>"),
    ("dob-words", "I was born on March 14, 1985", "I was born on <DATE_OF_BIRTH>"),
    ("dob-after", "14.03.1985 is my DOB", "<DATE_OF_BIRTH> is my DOB"),
    ("dob-compact-month", "DOB:14MAR1985", "DOB:<DATE_OF_BIRTH>"),
    ("dob-day-month", "my birthday is 5/11", "my birthday is <DATE_OF_BIRTH>"),
    ("dob-birthplace", "I was born in London in 1975", "I was born in London in <DATE_OF_BIRTH>"),
    # addresses
    ("address-uk", "I live at 221B Baker Street, London NW1 6XE", "I live at <ADDRESS>"),
    ("address-us", "mail it to 123 Main St, Springfield, IL 62704 please", "mail it to <ADDRESS> please"),
    ("address-fr-cue", "my new address is 5 rue de Rivoli, 75001 Paris", "my new address is <ADDRESS>"),
    ("postcode-lower", "my postcode is sw1a 1aa", "my postcode is <ADDRESS>"),
    ("po-box", "send it to PO Box 1234, Springfield", "send it to <ADDRESS>"),
    # credentials
    ("password", "my password is Hunter2 and it stopped working", "my password is <CREDENTIAL> and it stopped working"),
    ("otp", "the code you sent me is 482913", "the code you sent me is <CREDENTIAL>"),
    ("memorable-word", "my memorable word is Rosebud", "my memorable word is <CREDENTIAL>"),
    ("password-pw", "pw: Tr0ub4dor&3", "pw: <CREDENTIAL>"),
    ("login-and-password", "my login is jsmith84 and password is Summer2024", "my login is <CREDENTIAL> and password is <CREDENTIAL>"),
    ("sec-code", "sec code 123", "sec code <CARD_SECRET>"),
    ("maiden-name", "my mother's maiden name is Smith", "my mother's maiden name is <CREDENTIAL>"),
    ("security-answer", "security question answer: Fluffy", "security question answer: <CREDENTIAL>"),
    ("ssn-last-four", "the last 4 of my ssn are 1234", "the last 4 of my ssn are <ID_NUMBER>"),
    # where the customer is, and a device of theirs
    ("coordinates-shared", "I'm at 51.5074, -0.1278 and my card is gone", "I'm at <COORDINATES> and my card is gone"),
    ("coordinates-map-link", "https://maps.google.com/?q=51.507351,-0.127758", "https://maps.google.com/?q=<COORDINATES>"),
    ("coordinates-dms", "51°30'26\"N 0°7'39\"W is where it happened", "<COORDINATES> is where it happened"),
    ("what3words", "meet me at ///filled.count.soap.", "meet me at <COORDINATES>."),
    ("mac-colons", "my phone's mac is 3c:22:fb:9a:01:7e", "my phone's mac is <MAC_ADDRESS>"),
    ("mac-dashes-device", "device 3C-22-FB-9A-01-7E was blocked", "device <MAC_ADDRESS> was blocked"),
]  # fmt: skip

# Clean banking text that must come back unchanged.
CLEAN = [
    "I paid £1,250.00 on 12.05.2024 at 10:30",
    "reference 1234-5678-9012 was on my statement",
    "I have been a customer since 1995. 12 days later it arrived",
    "balance is 10 000 EUR, fee 2.5%",
    "transaction id 20240512123456",
    "I sent 200 to 3 people on 05/06/2023 at 14:00",
    "Thanks, I will try again",
    "Nothing here works",
    "Why wasn't my payment to beneficiary X approved?",
    "I need one or two new cards",
    "app version 4.2.1 crashed at 09:15",
    "I was charged 3 times for 12.50",
    "EUR/USD was 1.0850, then 1.0912 by the afternoon",
    "I paid 1.250 KWD, 2.500 KWD and 3.750 KWD",
    "Order A1-B2-C3-D4-E5-F6 never arrived",
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_masks_format(guard: PIIGuard, case: str, text: str, expected: str) -> None:
    assert guard.scan(text).text == expected


@pytest.mark.parametrize("text", CLEAN)
def test_leaves_clean_text_alone(guard: PIIGuard, text: str) -> None:
    result = guard.scan(text)
    assert (result.text, result.findings) == (text, [])


def test_findings_index_the_original_text(guard: PIIGuard) -> None:
    text = "my card ４４５８\u200b５６３０７４０７７５２６ ok"
    [finding] = guard.scan(text).findings
    assert text[finding.start : finding.end] == "４４５８\u200b５６３０７４０７７５２６"


# ---------------------------------------------------------------- properties


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


@st.composite
def luhn_numbers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["4", "51", "55", "2221", "2720", "34", "37", "6011", "65"]))
    length = 15 if prefix in ("34", "37") else draw(st.sampled_from([16, 16, 16, 13, 19]))
    body = prefix + draw(
        st.text(alphabet="0123456789", min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1)
    )
    number = _luhn_complete(body)
    if len(set(number)) == 1:
        number = _luhn_complete("4" + "1" * (length - 2))
    return number


SEPARATORS = [" ", "-", ".", "/", " . ", " - ", "  ", "\u00a0", "\u2013", "\u200b", ""]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    number=luhn_numbers(),
    sep=st.sampled_from(SEPARATORS),
    size=st.sampled_from([4, 4, 3, 5, 1]),
    script=st.sampled_from([0x30, 0xFF10, 0x0660, 0x0966]),
    before=st.sampled_from(["my card is ", "card: ", "I paid with ", ""]),
    after=st.sampled_from([" thanks", ", it was declined", ".", ""]),
)
def test_any_luhn_number_in_any_separator_scheme_is_masked(
    guard: PIIGuard, number: str, sep: str, size: int, script: int, before: str, after: str
) -> None:
    grouped = sep.join(number[i : i + size] for i in range(0, len(number), size))
    written = "".join(chr(script + int(c)) if c.isdigit() else c for c in grouped)
    text = f"{before}{written}{after}"
    result = guard.scan(text)
    assert result.text == f"{before}<CREDIT_CARD>{after}"


_AMOUNT = st.one_of(
    st.builds(lambda a, b: f"£{a:,}.{b:02d}", st.integers(0, 999_999), st.integers(0, 99)),
    st.builds(lambda a: f"${a}", st.integers(1, 99_999)),
    st.builds(lambda a, b: f"{a}.{b:02d} EUR", st.integers(1, 9_999), st.integers(0, 99)),
)
_DATE = st.one_of(
    st.builds(
        lambda d, m, y: f"{d:02d}/{m:02d}/{y}",
        st.integers(1, 28),
        st.integers(1, 12),
        st.integers(2000, 2030),
    ),
    st.builds(
        lambda d, m, y: f"{y}-{m:02d}-{d:02d}",
        st.integers(1, 28),
        st.integers(1, 12),
        st.integers(2000, 2030),
    ),
    st.builds(lambda d, m, y: f"{d}.{m}.{y}", st.integers(1, 28), st.integers(1, 12), st.integers(0, 99)),
)
_TIME = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
_SENTENCES = [
    "I was charged {a} on {d} at {t} and I don't recognise it.",
    "The transfer of {a} from {d} has not arrived.",
    "Why is there a fee of {a}? It was on {d}.",
    "I topped up {a} at {t} on {d}, then another {a2}.",
    "My card was declined on {d} for {a}.",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sentences=st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=3),
    a=_AMOUNT,
    a2=_AMOUNT,
    d=_DATE,
    t=_TIME,
)
def test_clean_banking_text_with_amounts_and_dates_is_not_altered(
    guard: PIIGuard, sentences: list[str], a: str, a2: str, d: str, t: str
) -> None:
    text = " ".join(s.format(a=a, a2=a2, d=d, t=t) for s in sentences)
    assert guard.scan(text).findings == []
