"""Passwords, memorable words, security answers, one-time codes and user names: the value after its keyword;
social-network handles ("@jane_doe_88").

A customer who types "my password is Hunter2!" or "the code you sent is 482913" has handed over a
credential; it must reach neither the model nor the logs. The keyword alone is common in banking
chat ("I forgot my password", "my password is not working"), so the value must look like one:
- after "is", ":", "=" or a quote, any word but the ones that describe a password instead of being
  one ("wrong", "not", "expired", "case sensitive", ...: a list, and lower-case words shaped like
  adjectives and participles, "temporary", "shown", "available");
- right after the keyword with nothing between, only a word holding a digit ("password Hunter2!");
- after "what/how ... password is", only a word holding a digit ("I don't know what my password is anymore");
- one-time codes (OTP, verification, authentication, SMS codes) must hold digits.
"""

from __future__ import annotations

import regex as re

from .finder_recognizer import DIGIT, IS_CONTRACTED, IS_OTHER_LANGUAGES, FinderRecognizer

ENTITY = "CREDENTIAL"
SCORE = 0.85

_SECRET = (
    # the word in other languages: German, Spanish, French, Portuguese, Dutch, Polish, Swedish, Finnish, Italian
    r"passwort|kennwort|contraseña|contrasena|mot\s+de\s+passe|senha|wachtwoord|hasło|haslo|lösenord|salasana|parola"
    r"|password|passwd|pwd|pw|p/w|pass\s?phrase|pass\s?word|pass(?=\s*[:=])|log[\s\-]?in(?:\s+password)?|memorable\s+(?:word|information|info|answer|phrase)"
    r"|security\s+(?:answer|word|phrase)|secret\s+(?:answer|word|phrase|question\s+answer)"
    r"|user\s?name|user\s?id|log[\s\-]?in\s+(?:id|name)|customer\s+id"
    r"|(?:security\s+)?question(?:['’]s)?\s+answer|answer\s+to\s+(?:my|the)\s+(?:security\s+)?question"
    r"|maiden\s+name|(?:first\s+)?pet['’]?s?\s+name|name\s+of\s+(?:my|the)\s+first\s+pet"
)
_CODE = (
    r"one[\s\-]?time\s+(?:pass(?:code|word)?|code|pin)|otp|verification\s+code|confirmation\s+code"
    r"|auth(?:entication|orisation|orization)?\s+code|2fa\s+code|sms\s+code|log[\s\-]?in\s+code|access\s+code"
    r"|(?:the\s+)?code\s+(?:you|u)\s+(?:just\s+)?(?:sent|texted|emailed|gave)(?:\s+(?:me|to\s+me))?"
    r"|(?:the|a|my)\s+code(?=\s+(?:that\s+)?(?:i|we)\s)"
)
# "the password I set was ...", "the code I received is ...".
_CLAUSE = (
    r"(?:\s+(?:that\s+)?(?:i|we)\s+(?:set|use|used|chose|picked|created|entered|typed|have|had|got|received"
    r"|was\s+sent|was\s+given)(?:\s+(?:up|in|today|earlier|yesterday))?)?"
)
# Where the credential is used, between the keyword and its "is": "my username on your app is jdoe_1987". The value
# must then follow a link word ("my password for the app keeps failing" names none).
_WHERE = (
    r"(?P<where>\s+(?:on|for|in|at|with|to)\s+(?:(?:your|the|my|this|our|their|a)\s+)?[\w\-]+"
    r"(?:\s+(?:app|account|site|website|portal|banking))?)?"
)
# A messenger's user name written without an "@" ("my skype is jane.doe.88"): only a value shaped like a user name
# (a digit, an underscore or an inner dot) counts, since "my telegram is down" names none.
_MESSENGER = re.compile(
    r"(?i)\b(?:skype|discord|telegram|instagram|insta|twitter|tiktok|snapchat|snap|reddit|github|signal|wechat|kik"
    r"|threads)(?:\s+(?:id|name|account))?(?:\s+(?:is|was|" + IS_OTHER_LANGUAGES + r")|['’]s|\s*:)\s*"
    r"(?P<value>[A-Za-z][\w.\-]{1,30}[A-Za-z0-9_](?:#\d{4})?)(?![\w@]|[.\-]\w)"  # Discord's old "mike#1234"
)
_USER_NAME_SHAPE = re.compile(r"[\d_#]|\w\.\w")
_LINK = rf"(?P<link>(?:\s+(?:is|was|is\s+now|will\s+be|would\s+be|should\s+be|{IS_OTHER_LANGUAGES})|{IS_CONTRACTED})?\s*[:=]?\s*[\"'“‘`]?|\s+)"
# An apostrophe between letters is part of the value ("O'Reilly"); before or after it, a quote.
_VALUE = r"(?P<value>[^\s\"'”’`.,;:?](?:[^\s\"'”’`]|['’](?=\w)){2,63})"
_QUOTED = r"[:=]?\s*[\"'“‘`](?P<quoted>[^\"'”’`\n]{1,64})[\"'”’`]"  # spaces and all, between quotes
_SECRET_VALUE = re.compile(
    rf"(?i)\b(?:{_SECRET})\b{_CLAUSE}{_WHERE}(?:(?:\s+(?:is|was)|{IS_CONTRACTED})?\s*{_QUOTED}|{_LINK}{_VALUE})"
)
_CODE_VALUE = re.compile(
    # a code in two groups ("5521 9938") is one code
    rf"(?i)\b(?:{_CODE})\b{_CLAUSE}{_LINK}(?P<value>[A-Za-z]{{0,3}}[\-]?\d[\dA-Za-z\-]{{2,11}}(?:[ ]\d{{2,8}})?)(?![\w])"
)
# Words that say something about a password rather than being one.
_DESCRIBING = frozenset(
    """wrong incorrect not no invalid expired locked blocked correct right too very weak strong case the a an my
    your our their same different working broken forgotten forgot lost stolen compromised required needed missing
    reset changed change new old long short sensitive secure safe being still now also just really fine ok okay
    accepted rejected asking showing saying always never unknown unavailable empty blank hidden visible
    there here it this that what which mine yours for and or but to of in on at with by from please field
    box page link email e-mail sent been gone got like about""".split()
)
# Lower-case words shaped like adjectives and participles describe a credential ("temporary", "shown",
# "case-sensitive", "available"); a lower-case password of that shape is the price of not masking them.
_DESCRIBING_SHAPE = re.compile(
    r"^[a-z\-]*(?:ed|en|wn|ive|able|ible|ful|less|ous|al|ary|ory|ing|ly|ent|ant|ate|ure|ic)$"
)
# "I don't know what my password is anymore": a question about the value, not the value.
_ASKING = re.compile(r"(?i)\b(?:what|which|how|whether|where|if)\b(?:\s+\S+){0,3}\s*$")
_TRAILING = ".,;:!?)]}"
# A word every keyword above holds: texts without one are skipped at the cost of one search.
# A user name on a social network ("my twitter is @jane_doe_88"): after the network's name or "handle", or on
# its own when it holds a digit or an underscore, as a handle does and a mention of a brand ("@Revolut") rarely does.
# Never inside an e-mail address.
# A handle starts with a letter or an underscore: "@3.99 each" is a price, "@2pm" a time.
_HANDLE = re.compile(r"(?<![\w.@+\-])@(?P<value>[^\W\d](?:[\w.\-]{0,28}\w)?)(?![\w@]|[.\-]\w)")
_NETWORK = (
    r"twitter|instagram|insta|ig|tiktok|snapchat|snap|telegram|threads|discord|facebook|fb|linkedin|reddit|x"
)
_SOCIAL = re.compile(rf"(?i)\b(?:{_NETWORK}|handle|dm|dm\s+me|message\s+me|follow\s+me)\b[^@\n]{{0,20}}$")
_SOCIAL_AFTER = re.compile(rf"(?i)\s+(?:on|at|via)\s+(?:{_NETWORK})\b")
_HINT = re.compile(
    r"(?i)pass|kennwort|contrase|mot\s+de|senha|wachtwoord|has[lł]o|lösenord|salasana|parola|p/?wd?|word|memorable|answer|user|log[\s\-]?in|customer|otp|code|maiden|name|@|skype|discord|telegram|insta|twitter|tiktok|snap|reddit|github|signal|wechat|kik|threads"
)


def find_credentials(text: str) -> list[tuple[int, int]]:
    """(start, end) of each password, memorable word, one-time code or user name in `text`."""
    found = []
    for m in _SECRET_VALUE.finditer(text):
        if m.group("quoted") is not None:
            found.append((m.start("quoted"), m.end("quoted")))
            continue
        value = m.group("value").rstrip(_TRAILING) or m.group("value")
        link = m.group("link").strip()
        if (
            value.lower() in _DESCRIBING
            or _DESCRIBING_SHAPE.match(value)
            or (not link and (m.group("where") or not DIGIT.search(value)))
        ):
            continue
        if link.isalpha() and _ASKING.search(text, 0, m.start()) and not DIGIT.search(value):
            continue
        found.append((m.start("value"), m.start("value") + len(value)))
    found += [(m.start("value"), m.end("value")) for m in _CODE_VALUE.finditer(text)]
    found += [
        (m.start("value"), m.end("value"))
        for m in _MESSENGER.finditer(text)
        if _USER_NAME_SHAPE.search(m.group("value"))
    ]
    for m in _HANDLE.finditer(text):
        handle = m.group("value")
        social = _SOCIAL.search(text, 0, m.start()) or _SOCIAL_AFTER.match(text, m.end())
        if "_" in handle or DIGIT.search(handle) or social:
            found.append((m.start(), m.end()))
    return sorted(set(found))


class CredentialRecognizer(FinderRecognizer):
    """Presidio recognizer for passwords, memorable words, one-time codes and user names; see module docstring."""

    def __init__(self, supported_language: str = "en") -> None:
        why = "a credential after its keyword"
        super().__init__(
            ENTITY, find_credentials, SCORE, why, "CredentialRecognizer", supported_language, hint=_HINT
        )
