"""The serving side of a rollout: weights -> adapter per request (pure choose + file reloading)."""

from __future__ import annotations

import random

import pytest

from finserve.contracts import AdapterRef, Route, RoutingTable
from finserve.serving.errors import InvalidRequest, ModelNotFound
from finserve.serving.routing import Router, RouterConfig, bucket, choose

STABLE = AdapterRef.parse("banking@1.0.0")
CANARY = AdapterRef.parse("banking@1.1.0")


def route(weight: int, canary: AdapterRef | None = CANARY) -> Route:
    return Route(base_model="smollm2", stable=STABLE, canary=canary, canary_weight=weight)


@pytest.mark.parametrize(
    ("name", "weight", "key", "override", "rand", "expected", "role"),
    [
        ("no canary weight -> stable", 0, None, None, 0.0, STABLE, "stable"),
        ("full weight -> canary", 100, None, None, 0.99, CANARY, "canary"),
        ("random below weight -> canary", 25, None, None, 0.10, CANARY, "canary"),
        ("random above weight -> stable", 25, None, None, 0.30, STABLE, "stable"),
        ("override wins over weights", 0, None, "banking@9.9.9", 0.0, AdapterRef.parse("banking@9.9.9"), "override"),
    ],
)
def test_choose_table(name, weight, key, override, rand, expected, role):
    choice = choose("m", route(weight), key, override, rand)
    assert (choice.adapter, choice.role) == (expected, role), name


def test_sticky_key_keeps_its_side_and_weight_is_respected():
    keys = [f"user-{i}" for i in range(4000)]
    sides = [choose("m", route(25), k, None, rand=0.0).role for k in keys]
    again = [choose("m", route(25), k, None, rand=0.99).role for k in keys]
    assert sides == again  # rand is ignored when a key is given
    share = sides.count("canary") / len(sides)
    assert 0.22 < share < 0.28
    # Raising the weight only moves users stable -> canary, never back.
    wider = [choose("m", route(50), k, None, rand=0.0).role for k in keys]
    assert all(w == "canary" for s, w in zip(sides, wider, strict=True) if s == "canary")


def test_bucket_is_salted_per_canary():
    assert [bucket(f"k{i}", "a@1.0.0") for i in range(50)] != [bucket(f"k{i}", "a@2.0.0") for i in range(50)]


def test_bad_override_is_a_400_naming_the_header():
    with pytest.raises(InvalidRequest) as err:
        choose("m", route(0), None, "not-a-ref", 0.0)
    assert err.value.param == "x-finserve-adapter"


def test_router_reads_mounted_configmap_folder_and_falls_back(tmp_path):
    folder = tmp_path / "routing"
    folder.mkdir()
    fallback = {"default": route(0, canary=None)}
    router = Router(RouterConfig(table_path=str(folder), reload_interval_s=0.1, routes=fallback),
                    rng=random.Random(1))
    assert router.pick("default").adapter == STABLE
    with pytest.raises(ModelNotFound):
        router.pick("other")
    table = RoutingTable(revision=3, routes={"other": route(100)})
    (folder / "routes.json").write_text(table.to_configmap_data()["routes.json"])
    router.reload(force=True)
    assert router.pick("other").adapter == CANARY
    assert router.pick("default").adapter == STABLE  # fallback still there


def test_invalid_table_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "routes.json"
    RoutingTable(revision=1, routes={"m": route(100)}).save(path)
    router = Router(RouterConfig(table_path=str(path)))
    assert router.pick("m").adapter == CANARY
    path.write_text('{"revision": 2, "routes": {"m": {"canary_weight": 50}}}')
    router.reload(force=True)
    assert router.table.revision == 1
    assert router.pick("m").adapter == CANARY
