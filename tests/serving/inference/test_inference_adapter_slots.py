"""Adapter bookkeeping: least recently used goes first, pinned adapters never go."""

from __future__ import annotations

import pytest

from finserve.contracts import AdapterRef
from finserve.serving.inference.adapter_slots import AdapterSlots, internal_name

A1, A2, A3 = (AdapterRef.parse(r) for r in ("a@1.0.0", "a@2.0.0", "b@1.0.0"))


def test_internal_names_are_module_safe_and_distinct() -> None:
    names = {
        internal_name(r) for r in (A1, A2, A3, AdapterRef.parse("a-1@1.0.0"), AdapterRef.parse("a_1@1.0.0"))
    }
    assert len(names) == 5
    assert all("." not in n and "@" not in n and n.isidentifier() for n in names)


def test_base_is_always_present_and_has_no_name() -> None:
    slots = AdapterSlots(1)
    assert AdapterRef.base() in slots
    assert slots.name(AdapterRef.base()) is None
    with pytest.raises(KeyError):
        slots.name(A1)


def test_victims_are_least_recently_used() -> None:
    slots = AdapterSlots(2)
    slots.add(A1)
    slots.add(A2)
    assert slots.victims() == [A1]
    slots.touch(A1)
    assert slots.victims() == [A2]
    assert slots.victims(incoming=2) == [A2, A1]


def test_pinned_adapters_are_never_victims() -> None:
    slots = AdapterSlots(2)
    slots.add(A1)
    slots.add(A2)
    slots.pin(A1)
    slots.pin(A1)
    slots.unpin(A1)
    assert slots.victims(incoming=2) == [A2]  # A1 still has one pin: capacity is exceeded instead
    slots.unpin(A1)
    assert slots.victims(incoming=2) == [A1, A2]


def test_no_victims_below_capacity() -> None:
    slots = AdapterSlots(3)
    slots.add(A1)
    assert slots.victims() == []
    slots.remove(A1)
    assert slots.loaded() == [] and A1 not in slots
