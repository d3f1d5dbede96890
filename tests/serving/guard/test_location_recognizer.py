"""Where a customer is: coordinates as map apps share them, what3words, Plus Codes; numbers that only look alike stay."""

from __future__ import annotations

import pytest

from finserve.serving.guard.location_recognizer import find_locations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm at 51.5074, -0.1278 right now", ["51.5074, -0.1278"]),
        ("I'm@51.5074-0.1278", ["51.5074-0.1278"]),  # the guard's view: spoken "at", no blank before a minus
        ("my location 40.7128 N, 74.0060 W", ["40.7128 N, 74.0060 W"]),
        ("coordinates: 48.8584° N, 2.2945° E", ["48.8584° N, 2.2945° E"]),
        ("https://www.google.com/maps/@51.5073509,-0.1277583,15z", ["51.5073509,-0.1277583"]),
        (
            "-33.868820 151.209290 is the hotel",
            ["-33.868820 151.209290"],
        ),  # six decimals: a map's, no word needed
        ("51°30'26\"N 0°7'39\"W", ["51°30'26\"N 0°7'39\"W"]),
        ("my what3words is filled.count.soap", ["filled.count.soap"]),
        ("meet me at ///index.home.raft.", ["///index.home.raft"]),
        ("plus code 9C3XGV4C+2V", ["9C3XGV4C+2V"]),
    ],
)
def test_finds_locations(text: str, expected: list[str]) -> None:
    assert [text[a:b] for a, b in find_locations(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "EUR/USD 1.0850, GBP/USD 1.2710",  # four decimals and no location word: rates
        "rates 1.08501, 1.27104 today",  # five: a quote's pipette
        "I paid 1.250, 2.500 and 3.750 KWD",
        "my location is 95.1234, 10.1234",  # no latitude is over 90
        "my ip is 192.168.1.24",
        "version 2.10.3 of the app",
        "the fee is 2.999 % and 1.500 %",
        "see section filled.count.soap",  # three dotted words without /// or the word what3words
        "promo SAVE+10",
    ],
)
def test_ignores_numbers_that_are_no_location(text: str) -> None:
    assert find_locations(text) == []
