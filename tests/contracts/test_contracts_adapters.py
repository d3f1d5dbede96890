"""Adapter references: the NAME@VERSION spelling every part shares."""

from __future__ import annotations

import pytest

from finserve.contracts import AdapterRef
from finserve.contracts.adapters import semver_key


def test_parse_and_print_round_trip():
    ref = AdapterRef.parse("banking77-intent@1.2.0")
    assert (ref.name, ref.version, str(ref)) == ("banking77-intent", "1.2.0", "banking77-intent@1.2.0")


@pytest.mark.parametrize(
    "bad", ["banking", "@1.0.0", "banking@", "Banking@1.0.0", "banking@1.0", "banking@v1.0.0"]
)
def test_bad_refs_are_rejected_with_a_message(bad):
    with pytest.raises(ValueError):
        AdapterRef.parse(bad)


def test_base_pseudo_adapter():
    assert AdapterRef.base().is_base and not AdapterRef.parse("a@1.0.0").is_base


def test_semver_order_puts_prereleases_first():
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9"]
    assert sorted(versions, key=semver_key) == ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0"]


def test_refs_are_hashable_and_equal_by_value():
    assert {AdapterRef.parse("a@1.0.0"), AdapterRef.parse("a@1.0.0")} == {AdapterRef.parse("a@1.0.0")}
