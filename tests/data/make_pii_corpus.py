"""Generate tests/data/pii_corpus.jsonl: PII in the formats and obfuscations customers use.

    python -P tests/data/make_pii_corpus.py [--seed 16] [--per-format 40] [--out tests/data/pii_corpus.jsonl]

Every value is random and valid for its kind (Luhn cards of several brands, IBANs of eleven
countries with their mod-97 digits, phone numbers of the US/Canada, the UK and eight EU countries,
SSNs in the issued ranges, names from many cultures, NI and passport numbers, dates of birth, UK
and US postal addresses, passwords, one-time codes, account numbers), written in one format, inside a sentence
drawn at random from several templates and padded with random banking sentences that hold amounts,
dates and references. Nothing here is read back from the guard: the corpus describes what
customers write, and the guard is measured against it (tests/serving/guard/test_guard_corpus.py).

Each JSON line: id, kind (structured | name | spelled | clean), format, turns (the texts of one
conversation; most cases have one), pii (list of [turn, start, end]: the characters that must not
survive; empty for clean cases).
"""

from __future__ import annotations

import argparse
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "pii_corpus.jsonl"
SEED = 16

# ---------------------------------------------------------------- digits and separators

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SCRIPTS = {
    "fullwidth": 0xFF10,
    "arabic_indic": 0x0660,
    "persian": 0x06F0,
    "devanagari": 0x0966,
    "bengali": 0x09E6,
}
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def in_script(text: str, script: str, ideographic_space: bool = False) -> str:
    base = SCRIPTS[script]
    out = "".join(chr(base + int(c)) if c.isdigit() else c for c in text)
    return out.replace(" ", "\u3000") if ideographic_space else out


def with_zero_width(text: str, rng: random.Random) -> str:
    chars = list(text)
    digit_positions = [i for i, c in enumerate(chars) if c.isalnum()][1:]
    for i in sorted(
        rng.sample(digit_positions, k=min(len(digit_positions), rng.randint(1, 4))), reverse=True
    ):
        chars.insert(i, rng.choice(ZERO_WIDTH))
    return "".join(chars)


def spelled(digits: str, rng: random.Random, group_sep: str = " ") -> str:
    """Digits as words; 'oh' for zero and 'double' for repeats now and then."""
    words: list[str] = []
    i = 0
    while i < len(digits):
        d = digits[i]
        if not d.isdigit():
            i += 1
            if group_sep.strip() and words and words[-1] != group_sep.strip():
                words.append(group_sep.strip())
            continue
        if i + 1 < len(digits) and digits[i + 1] == d and rng.random() < 0.3:
            words.append(f"double {WORDS[int(d)]}")
            i += 2
            continue
        words.append("oh" if d == "0" and rng.random() < 0.3 else WORDS[int(d)])
        i += 1
    text = " ".join(w for w in words if w)
    return text.replace(" , ", ", ").replace(" - ", ", ")


def group(digits: str, sizes: list[int], sep: str) -> str:
    parts, pos = [], 0
    for size in sizes:
        parts.append(digits[pos : pos + size])
        pos += size
    if pos < len(digits):
        parts.append(digits[pos:])
    return sep.join(p for p in parts if p)


# ---------------------------------------------------------------- values


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


CARD_BRANDS = [
    (lambda r: "4", 16), (lambda r: str(r.randint(51, 55)), 16), (lambda r: str(r.randint(2221, 2720)), 16),
    (lambda r: r.choice(["34", "37"]), 15), (lambda r: r.choice(["6011", "65"]), 16),
    (lambda r: str(r.randint(3528, 3589)), 16), (lambda r: "62", 16), (lambda r: "4", 13),
]  # fmt: skip


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(CARD_BRANDS)
    return luhn_complete(prefix(rng), length, rng)


def card_groups(number: str) -> list[int]:
    return [4, 6, 5] if len(number) == 15 else [4, 4, 4, 4]


IBAN_BBAN: dict[str, str] = {  # A = capital letter, 9 = digit
    "GB": "AAAA99999999999999", "DE": "999999999999999999", "FR": "99999999999999999999999",
    "ES": "99999999999999999999", "IT": "A9999999999999999999999", "NL": "AAAA9999999999",
    "IE": "AAAA99999999999999", "BE": "999999999999", "PL": "999999999999999999999999",
    "AT": "9999999999999999", "PT": "999999999999999999999",
}  # fmt: skip


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_BBAN))
    bban = "".join(
        rng.choice(string.ascii_uppercase) if c == "A" else rng.choice(string.digits)
        for c in IBAN_BBAN[country]
    )
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


def digits(n: int, rng: random.Random, first: str = string.digits) -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def nanp(rng: random.Random) -> tuple[str, str, str]:
    return digits(3, rng, "23456789"), digits(3, rng, "23456789"), digits(4, rng)


PHONE_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "phone_us_parens": lambda r: "({}) {}-{}".format(*nanp(r)),
    "phone_us_parens_tight": lambda r: "({}){}-{}".format(*nanp(r)),
    "phone_us_dots": lambda r: "{}.{}.{}".format(*nanp(r)),
    "phone_us_dashes": lambda r: "{}-{}-{}".format(*nanp(r)),
    "phone_us_spaces": lambda r: "{} {} {}".format(*nanp(r)),
    "phone_us_plus1": lambda r: r.choice(
        ["+1 {} {} {}", "+1-{}-{}-{}", "+1 ({}) {}-{}", "1-{}-{}-{}", "+1.{}.{}.{}"]
    ).format(*nanp(r)),
    "phone_uk_mobile_intl": lambda r: r.choice(
        ["+44 7{} {}", "+447{}{}", "+44 (0)7{} {}", "0044 7{} {}"]
    ).format(digits(3, r), digits(6, r)),
    "phone_uk_mobile_national": lambda r: r.choice(["07{} {}", "07{}{}", "07{}-{}"]).format(
        digits(3, r), digits(6, r)
    ),
    "phone_uk_fiction_range": lambda r: r.choice(
        ["+44 7700 900{}", "07700 900{}", "+44 (0)7700 900{}"]
    ).format(digits(3, r)),
    "phone_uk_landline": lambda r: r.choice(
        ["020 {} {}", "+44 20 {} {}", "(020) {} {}", "0161 {} {}", "+44 161 {} {}"]
    ).format(digits(4, r), digits(4, r))[:17],
    "phone_fr": lambda r: r.choice(["0{} {} {} {} {}", "+33 {} {} {} {} {}", "0{}.{}.{}.{}.{}"]).format(
        r.choice("1234567"), *[digits(2, r) for _ in range(4)]
    ),
    "phone_de": lambda r: r.choice(
        ["030 {}{}", "+49 30 {}{}", "0151 {}{}", "+49 151 {} {}", "(089) {} {}"]
    ).format(digits(4, r), digits(4, r)),
    "phone_es": lambda r: r.choice(["+34 6{} {} {}", "+34 9{} {} {}", "6{} {} {}", "6{}{}{}"]).format(
        digits(2, r), digits(3, r), digits(3, r)
    ),
    "phone_it": lambda r: r.choice(["+39 3{} {} {}", "3{} {} {}", "+39 06 {} {}"]).format(
        digits(2, r), digits(3, r), digits(4, r)
    ),
    "phone_nl_ie_be_pl": lambda r: r.choice(
        ["06 {}{}", "+31 6 {}{}", "+353 8{} {}", "+32 4{} {}", "+48 {} {}"]
    ).format(digits(4, r), digits(4, r)),
}
# Formats that look like any other number: customers say what they are.
PHONE_NEEDS_CONTEXT = {"phone_es", "phone_it", "phone_us_spaces"}


def ssn(rng: random.Random) -> tuple[str, str, str]:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


# ---------------------------------------------------------------- names

GIVEN = {
    "english": ["Oliver", "Charlotte", "James", "Amelia", "Harry", "Sophie", "Thomas", "Emily", "Daniel", "Hannah"],
    "irish": ["Siobhán", "Niamh", "Cillian", "Aoife", "Seán", "Ciarán"],
    "nigerian": ["Chukwuemeka", "Adaeze", "Oluwaseun", "Ngozi", "Babajide", "Funmilayo", "Chidi", "Yetunde"],
    "ghanaian_kenyan": ["Kwame", "Akosua", "Kofi", "Wanjiru", "Otieno", "Njeri"],
    "indian": ["Priya", "Arjun", "Ananya", "Rohan", "Lakshmi", "Vikram", "Deepika", "Sanjay"],
    "pakistani_bangladeshi": ["Ayesha", "Imran", "Farhan", "Nusrat", "Tanvir", "Sadia"],
    "chinese": ["Wei", "Xiuying", "Jun", "Mei", "Haoran", "Yuxin", "Zhiwei", "Lihua"],
    "japanese_korean": ["Haruto", "Yui", "Sakura", "Ren", "Min-jun", "Seo-yeon", "Ji-hoon"],
    "vietnamese": ["Nguyễn Thị", "Trần Văn", "Phạm Minh", "Lê Thu"],
    "arabic_turkish_persian": ["Fatima", "Ahmed", "Omar", "Layla", "Yusuf", "Mehmet", "Elif", "Dariush", "Shirin"],
    "european": ["Łukasz", "Agnieszka", "Jürgen", "Anneliese", "François", "Élodie", "Giulia", "Matteo",
                 "Lars", "Ingrid", "Dimitrios", "Eleni", "João", "Inês", "Sergei", "Olena"],
    "hispanic": ["María José", "Alejandro", "Lucía", "Javier", "Guadalupe", "Santiago", "Ximena"],
}  # fmt: skip
FAMILY = {
    "english": ["Smith", "Thompson", "Walker", "Hughes", "Clarke", "Bennett", "Fletcher", "Harris"],
    "irish": ["O'Brien", "O'Sullivan", "McCarthy", "Ní Bhriain", "Fitzgerald", "Ó Súilleabháin"],
    "nigerian": ["Okafor", "Adeyemi", "Okonkwo", "Balogun", "Eze", "Adebayo", "Nwosu"],
    "ghanaian_kenyan": ["Mensah", "Boateng", "Kamau", "Odhiambo", "Wambui"],
    "indian": ["Ramanathan", "Sharma", "Iyer", "Patel", "Venkatesh", "Chatterjee", "Reddy"],
    "pakistani_bangladeshi": ["Chaudhry", "Rahman", "Hussain", "Siddiqui", "Akhtar"],
    "chinese": ["Wang", "Li", "Zhang", "Chen", "Liu", "Huang", "Zhao"],
    "japanese_korean": ["Sato", "Takahashi", "Yamamoto", "Kim", "Park", "Choi"],
    "vietnamese": ["Hoa", "Minh", "Lan", "Dung"],
    "arabic_turkish_persian": ["al-Hassan", "Al-Sayed", "El-Amin", "Yılmaz", "Demir", "Hosseini", "Karimi"],
    "european": ["Wójcik", "Kowalska", "Müller", "Schneider", "Dubois", "Lefèvre", "Rossi", "Esposito",
                 "Andersson", "Papadopoulos", "Gonçalves", "Ivanenko", "van der Berg", "De Vries"],
    "hispanic": ["García-López", "Fernández", "Rodríguez", "Martínez Soto", "Hernández", "de la Cruz"],
}  # fmt: skip


def person(rng: random.Random) -> str:
    culture = rng.choice(sorted(GIVEN))
    given = rng.choice(GIVEN[culture])
    family = rng.choice(FAMILY[culture])
    if culture in ("chinese", "japanese_korean") and rng.random() < 0.4:
        return f"{family} {given}"  # family name first
    if culture == "vietnamese":
        return f"{given} {family}"
    if rng.random() < 0.15:
        return f"{given} {rng.choice(string.ascii_uppercase)}. {family}"
    if rng.random() < 0.1:
        other = rng.choice(FAMILY[rng.choice(sorted(FAMILY))])
        if not other[0].islower() and " " not in other and " " not in family:
            return f"{given} {family}-{other}"
    return f"{given} {family}"


# ---------------------------------------------------------------- sentences around the values

FILLERS = [
    "I was charged £{amount} on {date} and I don't recognise it.",
    "The transfer of ${amount} I made on {date} still hasn't arrived.",
    "My balance showed {amount} EUR yesterday but now it is lower.",
    "There is a pending payment of {amount} from {date}.",
    "Reference {ref} was on my statement twice.",
    "The ATM kept {amount} pounds at {time} today.",
    "I topped up {amount} on {date} at {time} and it failed.",
    "Can you explain the {pct}% fee on my last transfer?",
    "The app (version {version}) says my card is frozen.",
    "My card ending {last4} was declined at {time}.",
    "Order {ref} was refunded on {date}, but not the {amount} fee.",
    "I have been a customer since {year}.",
    "Please help, this is urgent.",
    "Thanks in advance.",
    "I called twice already.",
    "Why is my exchange rate different?",
]


def filler(rng: random.Random) -> str:
    return rng.choice(FILLERS).format(
        amount=rng.choice([f"{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}", f"{rng.randint(1, 99)},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d}", str(rng.randint(5, 5000))]),
        date=rng.choice([f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2019, 2026)}", f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", f"{rng.randint(1, 28)}.{rng.randint(1, 12)}.{rng.randint(19, 26)}", f"{rng.randint(1, 28)} March"]),
        time=f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        ref=rng.choice([f"TX-{rng.randint(100000, 999999)}", f"{rng.randint(2019, 2026)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-{rng.randint(1, 999):03d}", f"#{rng.randint(10000, 99999999)}", "".join(rng.choice("ABCDEF0123456789") for _ in range(10))]),
        pct=rng.choice(["0.5", "1.5", "2", "3.99"]),
        version=f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        last4=digits(4, rng),
        year=rng.randint(1990, 2025),
    )  # fmt: skip


TEMPLATES = {
    "card": ["my card number is {v}", "card {v} was charged twice", "Please block {v} now", "the card {v} doesn't work abroad",
             "I used {v} to pay", "Card no: {v}", "{v} is the card that got declined", "visa {v}, expiry soon"],
    "iban": ["please send it to IBAN {v}", "my iban: {v}", "refund to {v} please", "Transfer to account {v} failed",
             "{v} is my new account", "the IBAN {v} was rejected"],
    "phone": ["call me on {v}", "my phone number is {v}", "you can reach me at {v}", "my mobile: {v}",
              "ring {v} after 5pm", "text me at {v}", "{v} is my new number", "Tel. {v}"],
    "phone_bare": ["please update my details to {v}", "new contact details {v}", "I changed it to {v} last week",
                   "it's {v} now", "use {v} from today"],
    "ssn": ["my SSN is {v}", "social security number {v}", "SSN: {v}", "here is my social security number: {v}",
            "my ssn {v} for the form"],
    "email": ["email me at {v}", "my email is {v}", "contact: {v}", "send the statement to {v} please", "{v} is my address"],
    "ip": ["login from {v} was not me", "my IP is {v}", "the ip {v} is unknown", "someone at {v} accessed my account"],
}  # fmt: skip


def sentence(kind: str, value: str, rng: random.Random) -> tuple[str, int, int]:
    """value in a template, with 0-2 filler sentences around it; returns text and the value's span."""
    head, tail = rng.choice(TEMPLATES[kind]).split("{v}")
    if head and rng.random() < 0.6:
        head = head[0].upper() + head[1:]
    before = " ".join(filler(rng) for _ in range(rng.randint(0, 2)))
    after = " ".join(filler(rng) for _ in range(rng.randint(0, 1)))
    prefix = f"{before} {head}" if before else head
    text = f"{prefix}{value}{tail}{rng.choice(['.', '', '!', '?', '.'])} {after}".rstrip()
    return text, len(prefix), len(prefix) + len(value)


# ---------------------------------------------------------------- formats

Case = dict[str, object]


def single(
    kind: str, fmt: str, template: str, value: str, rng: random.Random, pii_kind: str = "structured"
) -> Case:
    text, start, end = sentence(template, value, rng)
    return {"kind": pii_kind, "format": fmt, "turns": [text], "pii": [[0, start, end]]}


def card_formats() -> dict[str, Callable[[random.Random], str]]:
    def fmt(sep: str) -> Callable[[random.Random], str]:
        return lambda r: (lambda n: group(n, card_groups(n), sep))(card(r))

    return {
        "card_plain": lambda r: card(r),
        "card_spaces": fmt(" "),
        "card_dashes": fmt("-"),
        "card_dots": fmt("."),
        "card_slashes": fmt("/"),
        "card_spaced_dots": fmt(" . "),
        "card_spaced_dashes": fmt(" - "),
        "card_double_spaces": fmt("  "),
        "card_single_digits": lambda r: " ".join(card(r)),
        "card_nbsp": fmt("\u00a0"),
        "card_en_dash": fmt("\u2013"),
        "card_fullwidth": lambda r: in_script(
            group(card(r), [4, 4, 4, 4], " "), "fullwidth", r.random() < 0.5
        ),
        "card_arabic_indic": lambda r: in_script(group(card(r), [4, 4, 4, 4], " "), "arabic_indic"),
        "card_persian": lambda r: in_script(card(r), "persian"),
        "card_devanagari": lambda r: in_script(group(card(r), [4, 4, 4, 4], "-"), "devanagari"),
        "card_bengali": lambda r: in_script(group(card(r), [4, 4, 4, 4], " "), "bengali"),
        "card_zero_width": lambda r: with_zero_width(
            group(card(r), [4, 4, 4, 4], r.choice([" ", "-", ""])), r
        ),
    }


def iban_formats() -> dict[str, Callable[[random.Random], str]]:
    return {
        "iban_compact": lambda r: iban(r),
        "iban_spaces": lambda r: group(iban(r), [4] * 8, " "),
        "iban_lower": lambda r: iban(r).lower(),
        "iban_lower_spaces": lambda r: group(iban(r), [4] * 8, " ").lower(),
        "iban_dashes": lambda r: group(iban(r), [4] * 8, "-"),
        "iban_lower_dashes": lambda r: group(iban(r), [4] * 8, "-").lower(),
        "iban_dots": lambda r: group(iban(r), [4] * 8, "."),
        "iban_zero_width": lambda r: with_zero_width(group(iban(r), [4] * 8, " "), r),
    }


def ssn_formats() -> dict[str, Callable[[random.Random], str]]:
    return {
        "ssn_dashes": lambda r: "-".join(ssn(r)),
        "ssn_spaces": lambda r: " ".join(ssn(r)),
        "ssn_dots": lambda r: ".".join(ssn(r)),
        "ssn_compact": lambda r: "".join(ssn(r)),
        "ssn_fullwidth": lambda r: in_script("-".join(ssn(r)), "fullwidth"),
        "ssn_zero_width": lambda r: with_zero_width("-".join(ssn(r)), r),
    }


def email_value(rng: random.Random) -> tuple[str, str, str]:
    """(local part, domain, tld) from a random person."""
    name = person(rng).split()
    first = "".join(c for c in name[0].lower() if c.isascii() and c.isalpha()) or "user"
    last = "".join(c for c in name[-1].lower() if c.isascii() and c.isalpha()) or "name"
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}_{last}",
            f"{first[0]}{last}{rng.randint(1, 99)}",
            f"{first}{rng.randint(70, 99)}",
            f"{first}.{last}+bank",
        ]
    )
    domain = rng.choice(
        [
            "gmail",
            "outlook",
            "yahoo",
            "proton",
            "mail",
            "example",
            "fastmail",
            "icloud",
            "acme-corp",
            "uni-leeds",
        ]
    )
    tld = rng.choice(["com", "co.uk", "org", "de", "fr", "net", "ie", "es", "nl"])
    return local, domain, tld  # fmt: skip


def spell_email(local: str, domain: str, tld: str, rng: random.Random) -> str:
    at = rng.choice([" at ", " AT ", " [at] ", " (at) ", "(at)", " {at} "])
    dot_style = rng.choice([" dot ", " DOT ", " [dot] ", " (dot) ", "."])

    def dots(s: str) -> str:
        return s.replace(".", dot_style)

    return (
        f"{dots(local)}{at}{domain}{dot_style if dot_style != '.' or rng.random() < 0.5 else '.'}{dots(tld)}"
    )


def ip_value(fmt: str, rng: random.Random) -> str:
    if fmt == "ipv4":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if fmt == "ipv6_full":
        return ":".join(groups)
    return f"{rng.choice(['2001', '2a02', 'fe80'])}:{groups[1]}::{groups[6]}:{groups[7]}"


def uk_bank(fmt: str, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    sort = [f"{rng.randint(1, 99):02d}", f"{rng.randint(0, 99):02d}", f"{rng.randint(0, 99):02d}"]
    account = digits(8, rng)
    if fmt == "uk_sort_account":
        sep = rng.choice(["-", "", " "])
        s = sep.join(sort)
        text = rng.choice(
            [
                "sort code {s} account {a}",
                "Sort code: {s}, account number: {a}",
                "{s} {a} is my account",
                "pay into {s} / {a}",
                "sort code {s} acc no {a}",
            ]
        ).format(s=s, a=account)
        return text, [
            (text.index(s), text.index(s) + len(s)),
            (text.index(account), text.index(account) + len(account)),
        ]
    if fmt == "uk_sort_code_only":
        s = rng.choice(["-", ""]).join(sort)
        text = rng.choice(["my sort code is {s}", "Sort code: {s}", "sort-code {s}, thanks"]).format(s=s)
        return text, [(text.index(s), text.index(s) + len(s))]
    a = rng.choice([account, f"{account[:4]} {account[4:]}"])
    text = rng.choice(["account number {a}", "my account no. {a}", "Acct: {a}", "a/c {a} please"]).format(a=a)
    return text, [(text.index(a), text.index(a) + len(a))]  # fmt: skip


def with_fillers(
    core: str, spans: list[tuple[int, int]], rng: random.Random
) -> tuple[str, list[tuple[int, int]]]:
    before = " ".join(filler(rng) for _ in range(rng.randint(0, 2)))
    shift = len(before) + 1 if before else 0
    text = (
        f"{before} {core}. {filler(rng) if rng.random() < 0.5 else ''}".strip()
        if before
        else f"{core}. {filler(rng) if rng.random() < 0.5 else ''}".strip()
    )
    return text, [(s + shift, e + shift) for s, e in spans]


NAME_CUES = [
    ("strong", "My name is {n}"), ("strong", "name on account {n}"), ("strong", "Name on the account: {n}"),
    ("strong", "The account holder is {n}"), ("strong", "Account holder: {n}"), ("strong", "Beneficiary name: {n}"),
    ("strong", "please pay the beneficiary {n}"), ("strong", "the payee is {n}"), ("strong", "Full name: {n}"),
    ("signoff", "Regards,\n{n}"), ("signoff", "Kind regards, {n}"), ("signoff", "Thanks,\n{n}"), ("signoff", "Best,\n{n}"),
    ("signoff", "Many thanks, {n}"), ("signoff", "Cheers,\n{n}"), ("weak", "I am {n}"), ("weak", "I'm {n}"),
    ("weak", "This is {n}"), ("here", "{n} here"), ("here", "Hi, {n} here"),
]  # fmt: skip


def name_case(fmt: str, rng: random.Random) -> Case:
    cues = [c for c in NAME_CUES if fmt != "name_allcaps" or c[0] != "here"]
    _, cue = rng.choice(cues)
    name = person(rng)
    if fmt == "name_allcaps":
        name = name.upper()
    elif fmt == "name_titled":
        name = f"{rng.choice(['Mr', 'Mrs', 'Ms', 'Dr', 'Mr.', 'Mrs.'])} {name}"
    core = cue.format(n=name)
    rest = rng.choice(
        [
            ", my card was blocked",
            " and I need a new card",
            "",
            ", please call me back",
            " from the Leeds branch",
        ]
    )
    if cue.startswith(("Regards", "Kind", "Thanks", "Best", "Many", "Cheers")):
        body = f"{filler(rng)} {filler(rng) if rng.random() < 0.5 else ''}".strip()
        text = f"{body}\n{core}"
    else:
        text = f"{core}{rest}. {filler(rng) if rng.random() < 0.5 else ''}".strip()
    value = name.split(" ", 1)[1] if fmt == "name_titled" else name
    start = text.index(value)
    return {"kind": "name", "format": fmt, "turns": [text], "pii": [[0, start, start + len(value)]]}


def split_case(fmt: str, rng: random.Random) -> Case:
    """A value split over two texts of one conversation."""
    if fmt == "split_card_user_turns":
        n = card(rng)
        a, b = group(n[:8], [4, 4], " "), group(n[8:], [4, 4, 4], " ")
        turns = [
            f"my card number is {a}",
            rng.choice(["ok, go on", "Thanks. Could you send the rest?", "and the rest?"]),
            b,
        ]
        pii = [[0, turns[0].index(a), turns[0].index(a) + len(a)], [2, 0, len(b)]]
    elif fmt == "split_card_system_user":
        n = card(rng)
        a, b = group(n[:8], [4, 4], " "), group(n[8:], [4, 4, 4], " ")
        turns = [f"You are a banking assistant. The customer's card starts {a}", f"{b} and it was declined"]
        pii = [[0, turns[0].index(a), turns[0].index(a) + len(a)], [1, 0, len(b)]]
    elif fmt == "split_iban_user_turns":
        v = group(iban(rng), [4] * 8, " ")
        cut = 10
        a, b = v[:cut].strip(), v[cut:].strip()
        turns = [f"my IBAN is {a}", b]
        pii = [[0, turns[0].index(a), turns[0].index(a) + len(a)], [1, 0, len(b)]]
    elif fmt == "split_phone_user_turns":
        x, y, z = nanp(rng)
        turns = [f"call me on ({x}) {y}", f"-{z} please"]
        pii = [[0, turns[0].index("("), len(turns[0])], [1, 0, 5]]
    else:  # split_name_user_turns
        name = person(rng)
        turns = [rng.choice(["the account holder is", "My name is", "Beneficiary name:"]), f"{name}, thanks"]
        pii = [[1, 0, len(name)]]
    return {"kind": "structured" if "name" not in fmt else "name", "format": fmt, "turns": turns, "pii": pii}


def clean_case(fmt: str, rng: random.Random) -> Case:
    text = " ".join(filler(rng) for _ in range(rng.randint(1, 3)))
    return {"kind": "clean", "format": fmt, "turns": [text], "pii": []}


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"  # never D, F, I, Q, U, V
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"  # never D, F, I, O, Q, U, V
NINO_BARRED = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip
STREETS = ["High", "Station", "Church", "Victoria", "Green", "Manor", "Park", "Queen's", "Mill", "Oak Tree",
           "Kings", "Albert", "Elm", "Maple", "Cedar", "Sunset", "Lakeview", "Washington"]  # fmt: skip
STREET_TYPES = [
    "Street",
    "Road",
    "Avenue",
    "Lane",
    "Drive",
    "Close",
    "Way",
    "St",
    "Rd",
    "Ave",
    "Crescent",
    "Court",
]
TOWNS = ["London", "Leeds", "Bristol", "Glasgow", "Cardiff", "Manchester", "Springfield", "Austin", "Portland",
         "Dublin", "York"]  # fmt: skip
US_STATES = ["IL", "TX", "OR", "CA", "NY", "WA", "MA", "FL"]
PASSWORD_CHARS = string.ascii_letters + string.digits + "!#$%&*@"
TEMPLATES.update(
    {
        "nino": ["my NI number is {v}", "National Insurance number: {v}", "NINO {v} for the form",
                 "here is my national insurance number {v}"],
        "passport": ["my passport number is {v}", "Passport no. {v}", "passport: {v}, issued last year",
                     "I can verify with passport {v}"],
        "dob": ["my date of birth is {v}", "DOB: {v}", "I was born on {v}", "date of birth {v}",
                "{v} is my date of birth", "birthday {v}"],
        "address": ["I live at {v}", "my new address is {v}", "please send the card to {v}", "Address: {v}",
                    "I moved to {v} last month", "{v} is where I live now"],
        "password": ["my password is {v}", "password: {v}", "my online banking password is {v}",
                     "the password I set was {v}"],
        "otp": ["the code you sent me is {v}", "my OTP is {v}", "verification code {v}", "one-time passcode: {v}"],
        "account": ["my account number is {v}", "acct {v}", "account no. {v}", "customer number {v}"],
    }
)  # fmt: skip


# Session 20's formats (appended: the cases above stay byte for byte as they were).
TEMPLATES.update(
    {
        "expiry": ["my card expires {v}", "expiry date: {v}", "exp {v}", "it is valid until {v}",
                   "the card expires in {v}"],
        "cvv": ["the 3 digits on the back are {v}", "CVV {v}", "security code: {v}",
                "the code on the back of my card is {v}"],
        "wallet": ["my wallet is {v}", "send the crypto to {v}", "ETH address: {v}", "{v} is my wallet"],
        "nino_short": ["my NI is {v}", "NI: {v}", "My NI is {v} if you need it"],
    }
)  # fmt: skip
LOWER_NAME_CUES = ["my name is {n}", "name: {n}", "this is mr {n}", "My full name is {n}", "hi, this is mrs. {n}",
                   "my name's {n}"]  # fmt: skip


def lower_name_case(fmt: str, rng: random.Random) -> Case:
    """A name typed in lower case after a cue that leaves no doubt, or surname first after a comma."""
    if fmt == "name_lowercase":
        name = person(rng).lower()
        text = rng.choice(LOWER_NAME_CUES).format(n=name)
    else:
        culture = rng.choice(sorted(GIVEN))
        name = f"{rng.choice(FAMILY[culture])}, {rng.choice(GIVEN[culture])}"
        text = rng.choice(["My name is {n}", "Name: {n}", "the account holder is {n}"]).format(n=name)
    rest = rng.choice([", my card was blocked", " and I need a new card", "", ". Please call me back"])
    text = f"{text}{rest}. {filler(rng) if rng.random() < 0.5 else ''}".strip()
    start = text.index(name)
    return {"kind": "name", "format": fmt, "turns": [text], "pii": [[0, start, start + len(name)]]}


def session_20_formats() -> dict[str, tuple[str, Callable[[random.Random], str]]]:
    def expiry(rng: random.Random) -> str:
        month = MONTHS[rng.randint(0, 11)]
        year = rng.randint(2026, 2032)
        return rng.choice([f"{month} {year}", f"{month[:3]} {year}", f"{month[:3]} '{year % 100}"])

    def spaced_nino(rng: random.Random) -> str:
        n = nino(rng)
        return f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:8]} {n[8]}"

    return {
        "expiry_words": ("expiry", expiry),
        "cvv_after_keyword": ("cvv", lambda rng: digits(3, rng)),
        "otp_grouped": ("otp", lambda rng: f"{digits(3, rng)} {digits(3, rng)}"),
        "crypto_eth": (
            "wallet",
            lambda rng: "0x" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(40)),
        ),
        "nino_short_keyword": ("nino_short", spaced_nino),
    }


# Session 21's formats (appended: the cases above stay byte for byte as they were): keywords with the
# contracted "is", vehicle plates, tax and licence numbers after short keywords, names on sign-off and
# header lines.
TEMPLATES.update(
    {
        "secret_contracted": ["my password's {v}", "my memorable word's {v}", "my username's {v}",
                              "the password's {v}"],
        "pin_contracted": ["my pin's {v}", "my cvv's {v}", "the OTP's {v}", "my PIN’s {v}"],
        "plate": ["my car reg is {v}", "licence plate {v}", "number plate: {v}", "vehicle registration number {v}",
                  "the fine was for reg {v}"],
        "short_id": ["TFN {v}", "my tax file number's {v}", "DL number {v}", "EIN {v}", "DL: {v}"],
        "card_word": ["my card number is {v}", "card {v} was charged twice", "Card no: {v}", "{v} is the card that got declined",
                      "visa {v}, expiry soon", "my debit card {v} is blocked"],
    }
)  # fmt: skip
SIGN_OFF_LINES = ["{body}\nThank you!\n- {n}", "{body}\nSigned: {n}", "From: {n}\nSubject: {body}",
                  "{body}\nCheers!\n{n}", "{body}\n\nBest wishes.\n{n}"]  # fmt: skip


def session_21_formats() -> dict[str, tuple[str, Callable[[random.Random], str]]]:
    def secret(rng: random.Random) -> str:
        return "".join(rng.choice(PASSWORD_CHARS) for _ in range(rng.randint(6, 12))) + digits(2, rng)

    def plate(rng: random.Random) -> str:
        letters = "ABCDEFGHJKLMNPRSTVWXYZ"
        pick = lambda n: "".join(rng.choice(letters) for _ in range(n))  # noqa: E731
        return rng.choice(
            [
                f"{pick(2)}{rng.randint(10, 79)} {pick(3)}",  # UK
                f"{rng.randint(1, 9)}{pick(3)}{digits(3, rng)}",  # California
                f"{pick(1)}-{pick(2)} {rng.randint(100, 9999)}",  # Germany
                f"{pick(2)} {rng.randint(10, 99)} {pick(2)} {digits(4, rng)}",  # India
            ]
        )

    def short_id(rng: random.Random) -> str:
        return rng.choice(
            [f"{digits(3, rng)} {digits(3, rng)} {digits(3, rng)}", f"{digits(2, rng)}-{digits(7, rng)}",
             f"{rng.choice('ABCDS')}{digits(3, rng)}-{digits(4, rng)}-{digits(4, rng)}"]
        )  # fmt: skip

    def mistyped_card(rng: random.Random) -> str:
        """A card number with its last digit changed: fails Luhn, is still fifteen digits of a card."""
        number = card(rng)
        return number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)

    def mistyped_iban(rng: random.Random) -> str:
        """An IBAN with wrong check digits: fails mod-97, keeps its country's format."""
        value = iban(rng)
        check = rng.choice([f"{c:02d}" for c in range(2, 99) if f"{c:02d}" != value[2:4]])
        return group(value[:2] + check + value[4:], [4] * 8, rng.choice(["", " "]))

    def refused_ssn(rng: random.Random) -> str:
        """An SSN in a range never issued (000, 666, 9xx: a typo or a made-up example) after its keyword."""
        area = rng.choice(["000", "666", f"{rng.randint(900, 999)}"])
        return rng.choice(["-", " "]).join([area, f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"])

    return {
        "iban_failing_checksum": ("iban", mistyped_iban),
        "ssn_never_issued": ("ssn", refused_ssn),
        "card_failing_luhn_grouped": (
            "card",
            lambda rng: (lambda n: group(n, card_groups(n), rng.choice([" ", "-"])))(mistyped_card(rng)),
        ),
        "card_failing_luhn_after_word": ("card_word", mistyped_card),
        "secret_contracted": ("secret_contracted", secret),
        "pin_contracted": ("pin_contracted", lambda rng: digits(4, rng)),
        "plate": ("plate", plate),
        "short_id_keyword": ("short_id", short_id),
    }


def sign_off_line_case(rng: random.Random) -> Case:
    """A name on a sign-off or header line: "Thank you!\\n- Ken", "Signed: ...", "From: ..."."""
    name = person(rng) if rng.random() < 0.7 else rng.choice(GIVEN[rng.choice(sorted(GIVEN))])
    body = filler(rng)
    text = rng.choice(SIGN_OFF_LINES).format(n=name, body=body)
    start = text.index(name)
    return {
        "kind": "name",
        "format": "name_sign_off_line",
        "turns": [text],
        "pii": [[0, start, start + len(name)]],
    }


# Session 22: identifiers after keywords the guard did not know, handles, a surname with an apostrophe after its
# keyword, and a street line in lower case that only its postcode vouches for.
TEMPLATES.update(
    {
        "vin": ["my VIN is {v}", "vehicle identification number {v}", "VIN: {v}", "the chassis number is {v}"],
        "national_more": ["my PESEL is {v}", "RRN {v}", "CNP: {v}", "my TC kimlik no is {v}", "cedula {v}",
                          "iqama number {v}", "my NIK is {v}", "PAN card {v}"],
        "member_id": ["my employee id is {v}", "policy number {v}", "membership no. {v}", "staff number: {v}",
                      "my patient ID is {v}", "pension number {v}"],
        "handle": ["my twitter is {v}", "find me on instagram: {v}", "dm me {v} on telegram", "my tiktok is {v}",
                   "my handle is {v}"],
        "maiden_apostrophe": ["my mother's maiden name is {v}", "maiden name: {v}", "mum's maiden name is {v}"],
        "address_lower": ["{v} is where I live now", "new home - {v}", "my details: {v}", "it's {v}, flat at the back"],
    }
)  # fmt: skip


def session_22_formats() -> dict[str, tuple[str, Callable[[random.Random], str]]]:
    def vin(rng: random.Random) -> str:
        chars = "ABCDEFGHJKLMNPRSTUVWXYZ"
        return (
            "".join(rng.choice(chars) for _ in range(3))
            + digits(5, rng)
            + "".join(rng.choice(chars + "0123456789") for _ in range(3))
            + digits(6, rng)
        )

    def national(rng: random.Random) -> str:
        caps = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return rng.choice(
            [digits(11, rng), f"{digits(6, rng)}-{digits(7, rng)}", digits(13, rng), digits(16, rng),
             "".join(rng.choice(caps) for _ in range(5)) + digits(4, rng) + rng.choice(caps)]
        )  # fmt: skip

    def member(rng: random.Random) -> str:
        return rng.choice(
            [f"E-{digits(5, rng)}", f"POL-{digits(4, rng)}-{digits(4, rng)}", f"M{digits(7, rng)}", digits(8, rng),
             f"{rng.choice('ABCDEFGH')}{rng.choice('ABCDEFGH')}{digits(6, rng)}"]
        )  # fmt: skip

    def handle(rng: random.Random) -> str:
        culture = rng.choice(sorted(GIVEN))
        given = rng.choice(GIVEN[culture]).split()[0].lower()
        return "@" + rng.choice(
            [given, f"{given}_{rng.randint(1, 99)}", f"{given}.{rng.randint(70, 99)}", f"the_{given}"]
        )

    def apostrophe_surname(rng: random.Random) -> str:
        return rng.choice(
            ["O'Reilly", "D'Angelo", "N'Diaye", "O'Brien", "D'Souza", "O'Sullivan", "Dell'Acqua"]
        )

    def lower_address(rng: random.Random) -> str:
        street = f"{rng.randint(1, 999)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}".lower()
        if rng.random() < 0.5:
            outward = rng.choice(["sw1a", "nw1", "ls1", "m4", "b33", "eh1", "cf10", "g2"])
            code = f"{outward} {rng.randint(1, 9)}{rng.choice('abdefghjlnpqrstuwxyz')}{rng.choice('abdefghjlnpqrstuwxyz')}"
            return f"{street}, {rng.choice(TOWNS).lower()} {code}"
        return f"{street}, {rng.choice(TOWNS).lower()}, {rng.choice(US_STATES).lower()} {digits(5, rng, '123456789')}"

    return {
        "vin_keyword": ("vin", vin),
        "national_id_more_keywords": ("national_more", national),
        "member_policy_number": ("member_id", member),
        "social_handle": ("handle", handle),
        "maiden_name_apostrophe": ("maiden_apostrophe", apostrophe_surname),
        "address_lower_with_postcode": ("address_lower", lower_address),
    }


# Session 23: where the customer is (map coordinates as apps share them, what3words, Plus Codes) and a device's
# MAC address.
TEMPLATES.update(
    {
        "location": ["I'm at {v} and my card was just stolen", "my location is {v}", "stuck at {v}, can you help",
                     "current location: {v}", "here's my location {v}", "my gps says {v}", "pinned: {v}",
                     "we are near {v}, the atm ate my card"],
        "mac": ["my phone's MAC address is {v}", "the router mac {v} keeps getting blocked", "wifi mac: {v}",
                "device {v} was flagged by your app", "hardware address {v}"],
    }
)  # fmt: skip
W3W_WORDS = ["filled", "count", "soap", "index", "home", "raft", "table", "chair", "lamp", "river", "stone", "apple",
             "green", "quiet", "fox", "jumps", "blue", "sky", "bread", "milk"]  # fmt: skip
PLUS_CODE_ALPHABET = "23456789CFGHJMPQRVWX"


def session_23_formats() -> dict[str, tuple[str, Callable[[random.Random], str]]]:
    def point(rng: random.Random) -> tuple[float, float]:
        return rng.uniform(-60, 70), rng.uniform(-179, 179)

    def decimal(rng: random.Random) -> str:
        lat, lon = point(rng)
        places = rng.choice([4, 5, 6, 7])
        sep = rng.choice([", ", ",", " "])
        return f"{lat:.{places}f}{sep}{lon:.{places}f}"

    def hemisphere(rng: random.Random) -> str:
        lat, lon = point(rng)
        ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        deg = rng.choice(["", "°", "° "])
        return f"{abs(lat):.4f}{deg}{' ' if not deg.endswith(' ') else ''}{ns}, {abs(lon):.4f}{deg}{' ' if not deg.endswith(' ') else ''}{ew}"

    def dms(rng: random.Random) -> str:
        lat, lon = point(rng)

        def one(v: float, pos: str, neg: str) -> str:
            d = abs(v)
            m = (d - int(d)) * 60
            sec = (m - int(m)) * 60
            return f"{int(d)}°{int(m)}'{int(sec)}\"{pos if v >= 0 else neg}"

        return f"{one(lat, 'N', 'S')} {one(lon, 'E', 'W')}"

    def what3words(rng: random.Random) -> str:
        return "///" + ".".join(rng.sample(W3W_WORDS, 3))

    def plus_code(rng: random.Random) -> str:
        pick = lambda n: "".join(rng.choice(PLUS_CODE_ALPHABET) for _ in range(n))  # noqa: E731
        return f"{pick(8)}+{pick(rng.choice([2, 3]))}"

    def mac(rng: random.Random) -> str:
        octets = [rng.randint(0, 255) for _ in range(6)]
        octets[0] &= 0xFE  # unicast
        if rng.random() < 0.25:
            hexes = "".join(f"{o:02x}" for o in octets)
            return ".".join(hexes[i : i + 4] for i in (0, 4, 8))
        text = rng.choice([":", "-"]).join(f"{o:02X}" for o in octets)
        return text.lower() if rng.random() < 0.5 else text

    return {
        "location_decimal": ("location", decimal),
        "location_hemisphere": ("location", hemisphere),
        "location_dms": ("location", dms),
        "location_what3words": ("location", what3words),
        "location_plus_code": ("location", plus_code),
        "mac_address": ("mac", mac),
    }


# Names as customers type them: lower case after a casual cue, or a full name with no cue at all.
CASUAL_NAME_CUES = ["hi im {n} and {body}", "hey its {n}, {body}", "hello, this is {n}, {body}", "i'm {n}. {body}",
                    "my wife {n} says {body}", "it is {n} again, {body}", "my brother {n} thinks {body}"]  # fmt: skip
UNCUED_NAMES = ["Please update the account for {n}, {body}", "Could you check why {n} was charged twice?",
                "I want to add {n} as a joint holder", "{n} is my flatmate and {body}",
                "Is {n} allowed to use my card?", "The refund for {n} never came through",
                "Can I share my account with {n}?"]  # fmt: skip


def casual_name_case(fmt: str, rng: random.Random) -> Case:
    """A casual cue and a lower-case name ("hey its priya sharma"), or a cased full name with no cue."""
    culture = rng.choice(sorted(GIVEN))
    given, family = rng.choice(GIVEN[culture]), rng.choice(FAMILY[culture])
    body = filler(rng).rstrip(".?!")
    body = body[0].lower() + body[1:]
    if fmt == "name_casual_lowercase":
        name = (given if rng.random() < 0.25 else f"{given} {family}").lower()
        text = rng.choice(CASUAL_NAME_CUES).format(n=name, body=body)
    else:
        name = f"{given} {family}"
        text = rng.choice(UNCUED_NAMES).format(n=name, body=body)
    start = text.index(name)
    return {"kind": "name", "format": fmt, "turns": [text], "pii": [[0, start, start + len(name)]]}


def nino(rng: random.Random) -> str:
    while (prefix := rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)) in NINO_BARRED:
        pass
    return prefix + digits(6, rng) + rng.choice("ABCD")


def birth_date(fmt: str, rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1940, 2006)
    return {
        "dob_slashes": f"{day:02d}/{month:02d}/{year}",
        "dob_dots": f"{day}.{month}.{year}",
        "dob_iso": f"{year}-{month:02d}-{day:02d}",
        "dob_words": rng.choice([f"{day} {MONTHS[month - 1]} {year}", f"{MONTHS[month - 1]} {day}, {year}"]),
    }[fmt]


def postal_address(fmt: str, rng: random.Random) -> str:
    street = f"{rng.randint(1, 999)}{rng.choice(['', '', 'A', 'B'])} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}"
    if fmt == "address_uk":
        outward = rng.choice(["SW1A", "NW1", "LS1", "M4", "B33", "EH1", "CF10", "G2"])
        postcode = f"{outward} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        return f"{street}, {rng.choice(TOWNS)} {postcode}"
    return f"{street}, {rng.choice(TOWNS)}, {rng.choice(US_STATES)} {digits(5, rng, '123456789')}"


def personal_formats() -> dict[str, tuple[str, Callable[[random.Random], str]]]:
    def spaced_nino(rng: random.Random) -> str:
        n = nino(rng)
        return f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:8]} {n[8]}"

    formats: dict[str, tuple[str, Callable[[random.Random], str]]] = {
        "nino_compact": ("nino", nino),
        "nino_spaced": ("nino", spaced_nino),
        "passport_digits": ("passport", lambda rng: digits(9, rng, "123456789")),
        "password": (
            "password",
            lambda rng: "".join(rng.choice(PASSWORD_CHARS) for _ in range(rng.randint(8, 14))),
        ),
        "otp": ("otp", lambda rng: digits(6, rng)),
        "account_other_lengths": (
            "account",
            lambda rng: digits(rng.choice([7, 10, 11, 12]), rng, "123456789"),
        ),
    }
    for fmt in ("dob_slashes", "dob_dots", "dob_iso", "dob_words"):
        formats[fmt] = ("dob", lambda rng, f=fmt: birth_date(f, rng))
    for fmt in ("address_uk", "address_us"):
        formats[fmt] = ("address", lambda rng, f=fmt: postal_address(f, rng))
    return formats


def build(per_format: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []

    def add(fmt: str, make: Callable[[], Case]) -> None:
        for i in range(per_format):
            case = make()
            cases.append({"id": f"{fmt}-{i:03d}", **case})

    for fmt, make_value in card_formats().items():
        add(fmt, lambda m=make_value, f=fmt: single("card", f, "card", m(rng), rng))
    for fmt, make_value in iban_formats().items():
        add(fmt, lambda m=make_value, f=fmt: single("iban", f, "iban", m(rng), rng))
    for fmt, make_value in PHONE_FORMATS.items():

        def phone(m: Callable[[random.Random], str] = make_value, f: str = fmt) -> Case:
            template = "phone" if f in PHONE_NEEDS_CONTEXT or rng.random() < 0.7 else "phone_bare"
            return single("phone", f, template, m(rng), rng)

        add(fmt, phone)
    add(
        "phone_fullwidth",
        lambda: single(
            "phone", "phone_fullwidth", "phone", in_script("({}) {}-{}".format(*nanp(rng)), "fullwidth"), rng
        ),
    )
    add(
        "phone_zero_width",
        lambda: single(
            "phone",
            "phone_zero_width",
            "phone",
            with_zero_width(f"+44 7{digits(3, rng)} {digits(6, rng)}", rng),
            rng,
        ),
    )
    for fmt, make_value in ssn_formats().items():
        add(fmt, lambda m=make_value, f=fmt: single("ssn", f, "ssn", m(rng), rng))
    for fmt in ("uk_sort_account", "uk_sort_code_only", "uk_account_only"):

        def bank(f: str = fmt) -> Case:
            core, spans = uk_bank(f, rng)
            text, spans = with_fillers(core, spans, rng)
            return {"kind": "structured", "format": f, "turns": [text], "pii": [[0, s, e] for s, e in spans]}

        add(fmt, bank)
    add(
        "email_plain",
        lambda: single("email", "email_plain", "email", "{}@{}.{}".format(*email_value(rng)), rng),
    )
    add(
        "email_upper",
        lambda: single("email", "email_upper", "email", "{}@{}.{}".format(*email_value(rng)).upper(), rng),
    )
    add(
        "email_fullwidth_at",
        lambda: single(
            "email", "email_fullwidth_at", "email", "{}\uff20{}.{}".format(*email_value(rng)), rng
        ),
    )
    for fmt in ("ipv4", "ipv6_full", "ipv6_compressed"):
        add(fmt, lambda f=fmt: single("ip", f, "ip", ip_value(f, rng), rng))
    for fmt in (
        "split_card_user_turns",
        "split_card_system_user",
        "split_iban_user_turns",
        "split_phone_user_turns",
        "split_name_user_turns",
    ):
        add(fmt, lambda f=fmt: split_case(f, rng))
    # Spelled out: the "at most 10 % leaked" targets.
    add(
        "spelled_card",
        lambda: single(
            "card",
            "spelled_card",
            "card",
            spelled(group(card(rng), [4, 4, 4, 4], rng.choice([" ", ","])), rng, rng.choice([" ", ","])),
            rng,
            "spelled",
        ),
    )
    add(
        "spelled_phone",
        lambda: single(
            "phone",
            "spelled_phone",
            "phone",
            spelled(rng.choice([f"07{digits(3, rng)}{digits(6, rng)}", "".join(nanp(rng))]), rng),
            rng,
            "spelled",
        ),
    )
    add(
        "spelled_ssn",
        lambda: single("ssn", "spelled_ssn", "ssn", spelled("".join(ssn(rng)), rng), rng, "spelled"),
    )
    add(
        "spelled_mixed_card",
        lambda: single(
            "card",
            "spelled_mixed_card",
            "card",
            (lambda n: f"{n[:4]} {spelled(n[4:8], rng)} {n[8:12]} {spelled(n[12:], rng)}")(card(rng)),
            rng,
            "spelled",
        ),
    )
    add(
        "spelled_email",
        lambda: single(
            "email", "spelled_email", "email", spell_email(*email_value(rng), rng), rng, "spelled"
        ),
    )
    for fmt in ("name_cued", "name_allcaps", "name_titled"):
        add(fmt, lambda f=fmt: name_case(f, rng))
    add("clean_banking", lambda: clean_case("clean_banking", rng))
    # Personal details found by their keyword (appended last: the cases above stay as they were).
    for fmt, (template, make_value) in personal_formats().items():
        add(fmt, lambda t=template, m=make_value, f=fmt: single(t, f, t, m(rng), rng))
    for fmt, (template, make_value) in session_20_formats().items():
        add(fmt, lambda t=template, m=make_value, f=fmt: single(t, f, t, m(rng), rng))
    for fmt in ("name_lowercase", "name_surname_first"):
        add(fmt, lambda f=fmt: lower_name_case(f, rng))
    for fmt, (template, make_value) in session_21_formats().items():
        add(fmt, lambda t=template, m=make_value, f=fmt: single(t, f, t, m(rng), rng))
    add("name_sign_off_line", lambda: sign_off_line_case(rng))
    for fmt in ("name_casual_lowercase", "name_no_cue"):
        add(fmt, lambda f=fmt: casual_name_case(f, rng))
    for formats in (session_22_formats(), session_23_formats()):
        for fmt, (template, make_value) in formats.items():
            add(fmt, lambda t=template, m=make_value, f=fmt: single(t, f, t, m(rng), rng))
    return cases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--per-format", type=int, default=40)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cases = build(args.per_format, args.seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for case in cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    formats = {c["format"] for c in cases}
    print(f"{len(cases)} cases, {len(formats)} formats -> {args.out}")


if __name__ == "__main__":
    main()
