"""The recognizers a GuardConfig asks for: Presidio's own, made offline and cheap, plus finserve's.

They all read the normalised view (normalise.py). Cards and IBANs are found by Presidio's own
checksums over any separator (checksum_recognizers.py); phones by python-phonenumbers and, for
numbers no numbering plan lists, by shape and context (phone_shape_recognizer.py).

Four changes to Presidio's stock recognizers:
- e-mail validation uses tldextract's bundled public-suffix snapshot; the stock recognizer fetches
  the list over the network on first use and logs a failure where there is none. A private or reserved
  top-level label (`.internal`, `.local`, `.example`) counts too, and an undotted address right after an
  e-mail keyword.
- SSNs: the published sample numbers count (Presidio drops them), and so does any SSN-shaped value right
  after its keyword, whatever its range (a typo or a made-up example is still what was typed as one).
- UK NINOs score 0.6 instead of 0.5, so the type is named over ID_NUMBER's keyword rule.
- phone, IP, MAC and SSN recognizers are skipped for texts that cannot hold their entity (too few
  digits, no dot or colon). python-phonenumbers costs about 1 ms per region per text, and most
  chat messages hold no number at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import regex as re
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)

from .account_number_recognizer import AccountNumberRecognizer
from .address_recognizer import AddressRecognizer
from .birth_date_recognizer import BirthDateRecognizer
from .card_secret_recognizer import CardSecretRecognizer
from .checksum_recognizers import SeparatedCardRecognizer, SeparatedIbanRecognizer
from .config import GuardConfig
from .credential_recognizer import CredentialRecognizer
from .finder_recognizer import IS_CONTRACTED
from .hits import CONTEXT_SCORE, make_result
from .id_document_recognizer import IdDocumentRecognizer
from .known_name_recognizer import KnownNameRecognizer
from .location_recognizer import LocationRecognizer
from .name_recognizer import IntroducedNameRecognizer
from .phone_shape_recognizer import PhoneShapeRecognizer
from .uk_bank_recognizer import UkBankDetailsRecognizer

# Snapshot only: no fetch, no cache directory written.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


# A private or reserved top-level label ("jane@corp.internal", "ops@bank.local"; RFC 2606 / 6761 and the
# usual intranet names): a company's own mail is still somebody's. A list, not any letters: the view spells
# "at home dot five" as "@home.five", which must stay a phrase.
_PRIVATE_TLD = re.compile(
    r"(?i)\.(?:internal|local|localdomain|corp|lan|intranet|private|example|test|invalid)$"
)
# After its keyword an address without a dot counts too ("my email is bob@gmail": a slip of the customer's).
_EMAIL_AFTER_KEYWORD = re.compile(
    rf"(?i)\be-?mail(?:\s+address)?(?:\s+(?:is|was)|{IS_CONTRACTED})?[\s:=\-]*(?P<value>[\w.+\-]+@[\w\-]+)(?![\w.@\-])"
)


def _with_keyword_values(
    recognizer: EntityRecognizer, found: list[RecognizerResult], pattern: re.Pattern[str], text: str, why: str
) -> list[RecognizerResult]:
    """``found`` plus each ``value`` of ``pattern`` (a value right after its keyword that the stock rules refuse)
    that no result in ``found`` overlaps, as the recognizer's own entity."""
    entity = recognizer.supported_entities[0]
    for m in pattern.finditer(text):
        start, end = m.span("value")
        if not any(r.start < end and start < r.end for r in found):
            found.append(make_result(recognizer, entity, start, end, CONTEXT_SCORE, why))
    return found


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer validating the domain against the bundled suffix list, or a private
    top-level label; plus undotted addresses right after an e-mail keyword."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != "" or bool(_PRIVATE_TLD.search(pattern_text))

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        found = super().analyze(text, entities, nlp_artifacts, regex_flags)
        if "@" not in text or "EMAIL_ADDRESS" not in entities:
            return found
        return _with_keyword_values(self, found, _EMAIL_AFTER_KEYWORD, text, "an address after its keyword")


# Seven digits, possibly split by separators: the least any phone number has.
_PHONE_HINT = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6}")
_IP_HINT = re.compile(r"\d\.\d|[0-9a-fA-F]:[0-9a-fA-F:]|::")
_SSN_HINT = re.compile(r"\d{3}")
_SAMPLE_SSNS = frozenset({"123456789", "987654320", "078051120"})
# An SSN-shaped value right after its keyword is an SSN even where Presidio's range rules refuse it
# ("my ssn is 000-12-3456": a typo or a made-up example is still what the customer typed as their SSN).
_SSN_AFTER_KEYWORD = re.compile(
    rf"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?|social)(?:\s+(?:is|was)|{IS_CONTRACTED})?[\s:#=\-]*"
    r"(?P<value>(?<!\d)\d{3}([ .\-]?)\d{2}\2\d{4})(?![\d])"
)


class PrefilteredPhoneRecognizer(PhoneRecognizer):
    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if not _PHONE_HINT.search(text):
            return []
        return super().analyze(text, entities, nlp_artifacts)


class PrefilteredIpRecognizer(IpRecognizer):
    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        if not _IP_HINT.search(text):
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)


# Six hex pairs joined by colons or dashes, or three quads by dots: the separator is the cheap test.
_MAC_HINT = re.compile(r"[0-9a-fA-F]{2}[:\-][0-9a-fA-F]{2}[:\-]|[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.")
# Order and serial numbers are written in dashed pairs too ("A1-B2-C3-D4-E5-F6"), references in dotted quads:
# those count only near a word about a device or its network. Colon pairs are a MAC's alone.
_DEVICE_WORD = re.compile(
    r"(?i)(?<![\p{L}])(?:mac|hardware\s+address|physical\s+address|ethernet|wi-?fi|wlan|bluetooth|router|device"
    r"|network|adapter|laptop|phone|tablet)(?![\p{L}])"
)
_MAC_CONTEXT = 48


class PrefilteredMacRecognizer(MacAddressRecognizer):
    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        if not _MAC_HINT.search(text):
            return []
        found = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [r for r in found if self._reads_as_a_mac(text, r.start, r.end)]

    @staticmethod
    def _reads_as_a_mac(text: str, start: int, end: int) -> bool:
        if ":" in text[start:end]:
            return True
        near = text[max(0, start - _MAC_CONTEXT) : end + _MAC_CONTEXT]
        return _DEVICE_WORD.search(near) is not None


class PrefilteredSsnRecognizer(UsSsnRecognizer):
    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        if not _SSN_HINT.search(text):
            return []
        found = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return _with_keyword_values(
            self, found, _SSN_AFTER_KEYWORD, text, "an SSN-shaped value after its keyword"
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        # Presidio also drops the published sample numbers (123-45-6789, 078-05-1120); a customer who
        # types one still typed an SSN-shaped value, and masking a placeholder costs nothing.
        digits = "".join(c for c in pattern_text if c.isdigit())
        if digits in _SAMPLE_SSNS:
            return False
        return bool(super().invalidate_result(pattern_text))


class EthereumAddressRecognizer(PatternRecognizer):
    """Ethereum (and EVM chain) wallet addresses: 0x and 40 hex digits, which Presidio's CRYPTO (Bitcoin) misses.

    No checksum: EIP-55's needs Keccak-256, which hashlib lacks, and lower-case addresses carry none.
    0x and exactly 40 hex digits is specific enough (transaction hashes have 64).
    """

    def __init__(self, supported_language: str = "en") -> None:
        pattern = Pattern("ethereum address", r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{40}(?![0-9A-Za-z])", 0.85)
        super().__init__(
            supported_entity="CRYPTO",
            patterns=[pattern],
            name="EthereumAddressRecognizer",
            supported_language=supported_language,
        )


# Presidio scores its NINO shape 0.5; its prefix and suffix rules make it specific enough to name the type over
# ID_NUMBER's keyword rule (0.55) when both fire.
_NINO_PATTERNS = [Pattern(p.name, p.regex, 0.6) for p in UkNinoRecognizer.PATTERNS]

Factory = Callable[[GuardConfig], EntityRecognizer]

# Entity type -> the recognizers that find it. One recognizer may serve several types.
FACTORIES: dict[str, Factory | tuple[Factory, ...]] = {
    "CREDIT_CARD": lambda c: SeparatedCardRecognizer(supported_language=c.language),
    "IBAN_CODE": lambda c: SeparatedIbanRecognizer(supported_language=c.language),
    "US_SSN": lambda c: PrefilteredSsnRecognizer(supported_language=c.language),
    "EMAIL_ADDRESS": lambda c: OfflineEmailRecognizer(supported_language=c.language),
    "PHONE_NUMBER": (
        lambda c: PrefilteredPhoneRecognizer(
            supported_language=c.language, supported_regions=tuple(c.phone_regions)
        ),
        lambda c: PhoneShapeRecognizer(supported_language=c.language),
    ),
    "IP_ADDRESS": lambda c: PrefilteredIpRecognizer(supported_language=c.language),
    "UK_SORT_CODE": lambda c: UkBankDetailsRecognizer(supported_language=c.language),
    "UK_ACCOUNT_NUMBER": lambda c: UkBankDetailsRecognizer(supported_language=c.language),
    "CARD_SECRET": lambda c: CardSecretRecognizer(supported_language=c.language),
    "PERSON": (
        lambda c: IntroducedNameRecognizer(supported_language=c.language),
        lambda c: KnownNameRecognizer(supported_language=c.language),
    ),
    "ID_NUMBER": lambda c: IdDocumentRecognizer(supported_language=c.language),
    "DATE_OF_BIRTH": lambda c: BirthDateRecognizer(supported_language=c.language),
    "ADDRESS": lambda c: AddressRecognizer(supported_language=c.language),
    "CREDENTIAL": lambda c: CredentialRecognizer(supported_language=c.language),
    "ACCOUNT_NUMBER": lambda c: AccountNumberRecognizer(supported_language=c.language),
    "US_BANK_NUMBER": lambda c: UsBankRecognizer(supported_language=c.language),
    "US_ITIN": lambda c: UsItinRecognizer(supported_language=c.language),
    "US_PASSPORT": lambda c: UsPassportRecognizer(supported_language=c.language),
    "UK_NHS": lambda c: NhsRecognizer(supported_language=c.language),
    "UK_NINO": lambda c: UkNinoRecognizer(patterns=_NINO_PATTERNS, supported_language=c.language),
    "URL": lambda c: UrlRecognizer(supported_language=c.language),
    "CRYPTO": (
        lambda c: CryptoRecognizer(supported_language=c.language),
        lambda c: EthereumAddressRecognizer(supported_language=c.language),
    ),
    "DATE_TIME": lambda c: DateRecognizer(supported_language=c.language),
    "COORDINATES": lambda c: LocationRecognizer(supported_language=c.language),
    "MAC_ADDRESS": lambda c: PrefilteredMacRecognizer(supported_language=c.language),
}


def build_recognizers(config: GuardConfig) -> list[EntityRecognizer]:
    """One instance per recognizer class needed by `config.entities` (NER is added by nlp.py)."""
    built: dict[type, EntityRecognizer] = {}
    for entity in config.entities:
        factories = FACTORIES.get(entity, ())  # NER-only types: found by the spaCy model's recognizer
        for factory in factories if isinstance(factories, tuple) else (factories,):
            recognizer = factory(config)
            built.setdefault(type(recognizer), recognizer)
    return list(built.values())
