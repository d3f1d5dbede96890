"""The routing table format the operator writes and serving reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from finserve.contracts import AdapterRef, Route, RoutingTable

STABLE = AdapterRef.parse("banking@1.0.0")


def test_configmap_round_trip():
    table = RoutingTable(
        revision=4,
        routes={
            "m": Route(
                base_model="b", stable=STABLE, canary=AdapterRef.parse("banking@1.1.0"), canary_weight=25
            )
        },
    )
    again = RoutingTable.from_configmap_data(table.to_configmap_data())
    assert again == table


def test_empty_configmap_is_an_empty_table():
    assert RoutingTable.from_configmap_data({}).routes == {}


def test_weight_without_canary_is_invalid():
    with pytest.raises(ValidationError, match="canary_weight"):
        Route(base_model="b", stable=STABLE, canary_weight=10)


@pytest.mark.parametrize("weight", [-1, 101])
def test_weight_bounds(weight):
    with pytest.raises(ValidationError):
        Route(base_model="b", stable=STABLE, canary=STABLE, canary_weight=weight)


def test_unknown_keys_are_rejected():
    with pytest.raises(ValidationError):
        RoutingTable.model_validate({"revision": 1, "routes": {}, "extra": True})


def test_save_is_atomic_and_load_reads_folder(tmp_path):
    table = RoutingTable(revision=1, routes={"m": Route(base_model="b", stable=STABLE)})
    table.save(tmp_path / "routes.json")
    assert not list(tmp_path.glob("*.tmp"))
    assert RoutingTable.load(tmp_path) == table


def test_with_route_bumps_revision_and_keeps_others():
    table = RoutingTable(revision=1, routes={"a": Route(base_model="b", stable=STABLE)})
    new = table.with_route("c", Route(base_model="b", stable=STABLE))
    assert new.revision == 2 and set(new.routes) == {"a", "c"} and set(table.routes) == {"a"}
