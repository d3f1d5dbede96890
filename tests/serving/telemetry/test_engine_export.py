"""The Generator replica's engine figures as Ray Serve metrics: the counter arithmetic here; the export through
Ray's metrics agent end to end in tests/serving/openai_compat/test_openai_sdk.py (the Ray graph)."""

from __future__ import annotations

from finserve.serving.inference.types import EngineStats
from finserve.serving.telemetry.engine_export import COUNTERS, GAUGES, counter_increments


def test_counters_grow_by_what_the_engine_added_since_the_last_export() -> None:
    assert counter_increments({}, {"a": 5.0}) == {"a": 5.0}
    assert counter_increments({"a": 5.0, "b": 1.0}, {"a": 7.5, "b": 1.0}) == {"a": 2.5, "b": 0.0}


def test_a_counter_that_went_down_started_over_and_counts_whole() -> None:
    """A new engine in the replica (a restart) starts its counters at zero: Prometheus counters must not go down."""
    assert counter_increments({"a": 40.0}, {"a": 3.0}) == {"a": 3.0}


def test_every_exported_figure_is_a_field_of_the_engine_snapshot() -> None:
    fields = set(EngineStats.model_fields)
    assert set(GAUGES) <= fields and set(COUNTERS) <= fields
    assert all(name.endswith("_total") for name, _ in COUNTERS.values())  # Ray appends it; we strip it first
