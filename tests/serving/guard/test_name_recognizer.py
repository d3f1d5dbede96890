"""Names introduced by the text, without NER: positives, and the capitalised words that are not names."""

from __future__ import annotations

import pytest

from finserve.serving.guard.name_recognizer import STRONG_SCORE, WEAK_SCORE, find_names


def _names(text: str) -> list[tuple[str, float]]:
    return [(text[start:end], score) for start, end, score in find_names(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my name is Jane Doe", [("Jane Doe", STRONG_SCORE)]),
        ("My name's Ana Lucia Souza.", [("Ana Lucia Souza", STRONG_SCORE)]),
        ("I'm John Smith and my card is stuck", [("John Smith", WEAK_SCORE)]),
        ("I’m Chloé Dubois", [("Chloé Dubois", WEAK_SCORE)]),
        ("Hi, this is Maria Garcia.", [("Maria Garcia", WEAK_SCORE)]),
        ("The name on the card is Peter O'Neil-Brown", [("Peter O'Neil-Brown", STRONG_SCORE)]),
        ("account holder is Mr. Tom Jones", [("Tom Jones", STRONG_SCORE)]),
        ("I am Dr. Ann van der Berg", [("Ann van der Berg", WEAK_SCORE)]),
        ("My name is May Chen", [("May Chen", STRONG_SCORE)]),  # a month after a strong phrase
        ("MY NAME IS JOHN SMITH", [("JOHN SMITH", STRONG_SCORE)]),
        ("Regards,\nJames T. Kirk", [("James T. Kirk", STRONG_SCORE)]),
        ("I am Jean-Luc Picard and I need help", [("Jean-Luc Picard", WEAK_SCORE)]),
        ("this is Jane van", [("Jane", WEAK_SCORE)]),  # a trailing particle is not part of the name
        ("please, name on account Hannah Adeyemi", [("Hannah Adeyemi", STRONG_SCORE)]),
        ("Name on the account: Wei Zhang", [("Wei Zhang", STRONG_SCORE)]),
        ("The account holder is Chukwuemeka Okafor.", [("Chukwuemeka Okafor", STRONG_SCORE)]),
        ("Account holder: Priya Iyer", [("Priya Iyer", STRONG_SCORE)]),
        ("Beneficiary name: Hannah Adeyemi", [("Hannah Adeyemi", STRONG_SCORE)]),
        ("pay the beneficiary Anne van der Berg", [("Anne van der Berg", STRONG_SCORE)]),
        ("the payee is Łukasz Wójcik", [("Łukasz Wójcik", STRONG_SCORE)]),
        ("Thanks,\nSiobhán O'Brien", [("Siobhán O'Brien", STRONG_SCORE)]),
        ("Many thanks, Kofi Mensah", [("Kofi Mensah", STRONG_SCORE)]),
        ("Best,\nAhmed al-Hassan", [("Ahmed al-Hassan", STRONG_SCORE)]),
        ("Cheers, Lars Andersson", [("Lars Andersson", STRONG_SCORE)]),
        ("my wife Anna Kowalska will call", [("Anna Kowalska", WEAK_SCORE)]),
        ("my son, Oliver, needs a card", [("Oliver", WEAK_SCORE)]),
        ("I sent £50 to Mark Jones yesterday", [("Mark Jones", WEAK_SCORE)]),
        ("transferred 200 euros to Ana Lucia Souza", [("Ana Lucia Souza", WEAK_SCORE)]),
        ("Kind regards, DEEPIKA A. PATEL", [("DEEPIKA A. PATEL", STRONG_SCORE)]),
        ("Jane Doe here, my card is stuck", [("Jane Doe", STRONG_SCORE)]),
        ("Hi, Mrs Fatima Karimi here", [("Fatima Karimi", STRONG_SCORE)]),
        ("I am Kim Min-jun", [("Kim Min-jun", WEAK_SCORE)]),
        ("Hello I AM JOHN SMITH and my card", [("JOHN SMITH", WEAK_SCORE)]),
        # lower case after the cues that leave no doubt: "my name is", "name:", a title
        ("my name is jane doe and my card was stolen", [("jane doe", STRONG_SCORE)]),
        ("this is mr. david o'brien speaking", [("david o'brien", STRONG_SCORE)]),
        ("name: chen wei", [("chen wei", STRONG_SCORE)]),
        ("Mrs Patel called me yesterday", [("Patel", STRONG_SCORE)]),
        ("my name is jane Doe", [("jane Doe", STRONG_SCORE)]),
        # a surname, then the given name after a comma
        ("My name is O'Connor, Siobhan", [("O'Connor, Siobhan", STRONG_SCORE)]),
        ("Name: Smith, John.", [("Smith, John", STRONG_SCORE)]),
        ("My name is Jane, I lost my card", [("Jane", STRONG_SCORE)]),
        # a dash sign-off ending the text
        ("Please call me back.\n-- Olusegun Adebayo", [("Olusegun Adebayo", STRONG_SCORE)]),
        ("Thanks for your help\n— Mei Ling Tan\n", [("Mei Ling Tan", STRONG_SCORE)]),
        # a sign-off ending the text, in any case
        ("My card is stuck. Regards, jane", [("jane", STRONG_SCORE)]),
        ("please help thanks - Mike", [("Mike", STRONG_SCORE)]),
        ("thank you\nsarah o'neil", [("sarah o'neil", STRONG_SCORE)]),
        # a sign-off with "!", a single-dash sign-off line, "Signed:", a header's "From:", form fields
        ("Thank you!\n- Ken", [("Ken", STRONG_SCORE)]),
        ("Cheers!\nDave Miller", [("Dave Miller", STRONG_SCORE)]),
        ("Signed: Kwame Nkrumah", [("Kwame Nkrumah", STRONG_SCORE)]),
        ("From: Hans Müller\nSubject: card blocked", [("Hans Müller", STRONG_SCORE)]),
        ("first name Jane, last name Doe", [("Jane", STRONG_SCORE), ("Doe", STRONG_SCORE)]),
        ("surname Okonkwo please", [("Okonkwo", STRONG_SCORE)]),
        ("name's Bob Marley btw", [("Bob Marley", STRONG_SCORE)]),
        ("my first name's Priya", [("Priya", STRONG_SCORE)]),
        # a form's fields, "in the name of", "belongs to", and a full name owning an account or a card
        ("Customer: Bruce Wayne", [("Bruce Wayne", STRONG_SCORE)]),
        ("Cardholder name - Ana Souza", [("Ana Souza", STRONG_SCORE)]),
        ("the card is in the name of Peter Parker", [("Peter Parker", STRONG_SCORE)]),
        ("The account belongs to Peter Parker", [("Peter Parker", WEAK_SCORE)]),
        ("Yesterday John Smith's card was stolen", [("John Smith", WEAK_SCORE)]),
        ("Dr. Ada Lovelace's account is frozen", [("Ada Lovelace", WEAK_SCORE)]),
    ],
)
def test_finds_introduced_names(text: str, expected: list[tuple[str, float]]) -> None:
    assert _names(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I'm waiting for my card",
        "I am still waiting on my card?",
        "I'm in America",
        "I am British",
        "this is Visa",
        "It's Monday already",
        "This is Urgent",
        "this is URGENT",
        "I AM MISSING CASH FROM MY BANK ACCOUNT",
        "I am Mr. in a hurry",
        "my name is spelled wrong on my card",
        "My name is just different",
        "my name is not showing in the app",
        "name: ",
        "How do I change my name?",
        "Jane Doe called",  # no introducing phrase: NER territory
        "Thanks, I will try again",
        "Best Regards",
        "Cheers, Visa",
        "Nothing here works",
        "Anyone here?",
        "Why wasn't my payment to beneficiary X approved?",
        "I AM JOHN",
        "I paid to Western Union",
        "sent money to Apple Pay",
        "transfer to John",  # one word after a payment's "to": as likely a brand
        "I want to transfer money to my friend",
        "my mum Visa card",
        "Steps:\n-- Check my balance\n-- Freeze the card",  # dashes that start list items
        "I am Mr. in a hurry, mr. sorry",
        "Can you help? Thanks",
        "thanks so much",
        "thanks again!",
        "Thanks in advance.",
        "thank you very much",
        "cheers mate",
        "Thanks, I will try again",
        "best regards",
        "you can also pay it yourself yourself.",  # a sign-off word inside another word
        "Steps:\n- Check my balance\n- Freeze the card",
        "Thanks!\nCan you also check my limit?",
        "transfer from: Savings",  # "from:" only heads a line
        "my last name is misspelled",
        "update first name please",
        "Apple Pay's card support",
        "Western Union's transfer fee is high",
        "The Bank Of England's rate went up",
        "the account belongs to me",
        "JANE DOE'S CARD",
    ],
)
def test_ignores_non_names(text: str) -> None:
    assert _names(text) == []
