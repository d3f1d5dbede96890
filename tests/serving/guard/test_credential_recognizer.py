"""Passwords, memorable words, one-time codes and user names: the value after its keyword."""

from __future__ import annotations

import pytest

from finserve.serving.guard.credential_recognizer import find_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my password is sunshine", ["sunshine"]),
        ("username jsmith84 password Hunter2!", ["jsmith84", "Hunter2"]),
        ('password: "p@ss w0rd"', ["p@ss w0rd"]),
        ("my password is 'letmein'", ["letmein"]),
        ("my login password=Abc123", ["Abc123"]),
        ("my memorable word is Rosebud", ["Rosebud"]),
        ("the code you sent me is 482913", ["482913"]),
        ("my OTP is 123456.", ["123456"]),
        ("verification code: 99812", ["99812"]),
        ("The code you texted me is 5521 9938", ["5521 9938"]),
        ("my user ID is jsmith", ["jsmith"]),
        ("my mother's maiden name is Smith", ["Smith"]),
        ("my first pet's name was Rex", ["Rex"]),
        ("the answer to my security question is blue42", ["blue42"]),
        ("The password I set was !7UFkUImbpksev", ["!7UFkUImbpksev"]),
        ("the code I received is 482913", ["482913"]),
        ("pw: Tr0ub4dor&3", ["Tr0ub4dor&3"]),
        ("pass: hello123", ["hello123"]),
        ("my login is jsmith84 and password is Summer2024!", ["jsmith84", "Summer2024"]),
        # the contracted "is"
        ("my password's Tr0ub4dor&3", ["Tr0ub4dor&3"]),
        ("my memorable word's Rosebud", ["Rosebud"]),
        ("the OTP’s 123456", ["123456"]),
        ("my username's jdoe99", ["jdoe99"]),
        # an apostrophe between letters belongs to the value
        ("my mother's maiden name is O'Reilly", ["O'Reilly"]),
        # social-network handles: after the network or "handle", or holding a digit or an underscore
        ("my twitter is @jane_doe_88", ["@jane_doe_88"]),
        ("find me on instagram: @janedoe", ["@janedoe"]),
        ("dm me @mike.smith on telegram", ["@mike.smith"]),
        ("my handle is @seán", ["@seán"]),
        ("cc @jdoe1987 please", ["@jdoe1987"]),
        # the keyword and its "is" in other European languages
        ("mein Passwort ist Sommer2024!", ["Sommer2024"]),
        ("mi contraseña es Verano2024", ["Verano2024"]),
        ("mon mot de passe est soleil123", ["soleil123"]),
        ("a minha senha é Praia2024", ["Praia2024"]),
        # where the credential is used, between the keyword and its "is"
        ("my username on your app is jdoe_1987", ["jdoe_1987"]),
        ("my password for online banking is Tr0ub4dor", ["Tr0ub4dor"]),
        ("my user id for the portal: JSMITH42", ["JSMITH42"]),
        # a messenger's user name without an "@", shaped like one
        ("my skype is jane.doe.88", ["jane.doe.88"]),
        ("my github: octocat_99", ["octocat_99"]),
        ("my discord is mike#1234", ["mike#1234"]),
    ],
)
def test_finds_credentials(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_credentials(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "I forgot my password",
        "my password is wrong",
        "my password is not working",
        "password is case sensitive",
        "password reset link",
        "follow @Revolut for updates",  # a brand's handle: no digit, no underscore, no network named
        "email me at jane_doe@mail.com",  # an e-mail address, not a handle
        "I paid @ the shop 5 times",
        "I bought 2 of them @3.99 each",  # a price, not a handle
        "meet me @2pm at the branch",
        "password change failed",
        "What is my username?",
        "I don't know what my password is anymore",
        "Not sure what my password is.",
        "the verification code never arrived",
        "what is a maiden name?",
        "the password I use is not working",
        "my login is not working",
        "I want to pass the test",
        "login to the app 3 times",
        "Your login ID is shown on the app",
        "Your password is case-sensitive",
        "The password is temporary",
        "username is available",
        "my password's been reset twice",
        "my password's not working",
        "my password's expired",
        "my username's wrong",
        "my password for the app keeps failing",  # a place, then no "is"
        "my password in the app is expired",
        "my login on the website is blocked",
        "my telegram is down again",  # a messenger, and no user name after it
        "my instagram is private",
        "signal is the app I use",
    ],
)
def test_ignores_talk_about_credentials(text: str) -> None:
    assert find_credentials(text) == []
