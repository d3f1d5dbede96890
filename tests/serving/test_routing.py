"""The serving side of a rollout: weights -> adapter per request (pure choose + file reloading)."""

from __future__ import annotations

import random

import pytest

from finserve.contracts import AdapterRef, Route, RoutingTable
from finserve.serving.errors import Forbidden, InvalidRequest, ModelNotFound
from finserve.serving.routing import RouteChoice, Router, RouterConfig, bucket, choose, mirror

STABLE = AdapterRef.parse("banking@1.0.0")
CANARY = AdapterRef.parse("banking@1.1.0")


def route(weight: int, canary: AdapterRef | None = CANARY, shadow: float = 0.0) -> Route:
    return Route(
        base_model="smollm2", stable=STABLE, canary=canary, canary_weight=weight, shadow_percent=shadow
    )


@pytest.mark.parametrize(
    ("name", "weight", "key", "override", "rand", "expected", "role"),
    [
        ("no canary weight -> stable", 0, None, None, 0.0, STABLE, "stable"),
        ("full weight -> canary", 100, None, None, 0.99, CANARY, "canary"),
        ("random below weight -> canary", 25, None, None, 0.10, CANARY, "canary"),
        ("random above weight -> stable", 25, None, None, 0.30, STABLE, "stable"),
        ("override wins over weights", 0, None, "banking@1.1.0", 0.0, CANARY, "override"),
        ("override of the stable at full canary weight", 100, None, "banking@1.0.0", 0.5, STABLE, "override"),
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


@pytest.mark.parametrize("override", ["banking@9.9.9", "other@1.0.0"])
def test_override_of_a_version_the_route_does_not_serve_is_forbidden(override):
    # A rolled-back canary has left the route (the operator writes stable only): it can no longer be forced.
    with pytest.raises(Forbidden) as err:
        choose("m", route(0, canary=None), None, override, 0.0)
    assert err.value.param == "x-finserve-adapter"
    with pytest.raises(Forbidden):
        choose("m", route(25), None, override, 0.0)


def test_in_process_callers_may_override_with_any_version():
    choice = choose("m", route(0, canary=None), None, "banking@9.9.9", 0.0, any_version=True)
    assert (choice.adapter, choice.role) == (AdapterRef.parse("banking@9.9.9"), "override")


def test_bad_override_is_a_400_naming_the_header():
    with pytest.raises(InvalidRequest) as err:
        choose("m", route(0), None, "not-a-ref", 0.0)
    assert err.value.param == "x-finserve-adapter"


def test_router_reads_mounted_configmap_folder_and_falls_back(tmp_path):
    folder = tmp_path / "routing"
    folder.mkdir()
    fallback = {"default": route(0, canary=None)}
    router = Router(
        RouterConfig(table_path=str(folder), reload_interval_s=0.1, routes=fallback), rng=random.Random(1)
    )
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


STABLE_CHOICE = RouteChoice("m", STABLE, "stable")


@pytest.mark.parametrize(
    ("name", "weight", "shadow", "choice", "key", "rand", "mirrored"),
    [
        ("no shadow percent -> not mirrored", 0, 0.0, STABLE_CHOICE, None, 0.0, False),
        ("stable request, rand under the percent -> mirrored", 0, 10.0, STABLE_CHOICE, None, 0.05, True),
        ("stable request, rand over the percent -> not mirrored", 0, 10.0, STABLE_CHOICE, None, 0.15, False),
        ("fractional percent is honoured", 0, 0.5, STABLE_CHOICE, None, 0.004, True),
        ("fractional percent, just above", 0, 0.5, STABLE_CHOICE, None, 0.006, False),
        ("full shadow mirrors every stable request", 25, 100.0, STABLE_CHOICE, None, 0.999, True),
        (
            "a canary answer is never mirrored",
            25,
            100.0,
            RouteChoice("m", CANARY, "canary"),
            None,
            0.0,
            False,
        ),
        ("an override is never mirrored", 0, 100.0, RouteChoice("m", STABLE, "override"), None, 0.0, False),
    ],
)
def test_mirror_table(name, weight, shadow, choice, key, rand, mirrored):
    assert mirror(route(weight, shadow=shadow), choice, key, rand) == (CANARY if mirrored else None), name


def test_mirror_needs_a_canary():
    assert mirror(route(0, canary=None), STABLE_CHOICE, None, 0.0) is None


def test_sticky_key_is_mirrored_always_or_never_and_apart_from_the_canary_split():
    keys = [f"user-{i}" for i in range(4000)]
    r = route(25, shadow=20.0)
    mirrored = [mirror(r, STABLE_CHOICE, k, rand=0.0) is not None for k in keys]
    assert mirrored == [mirror(r, STABLE_CHOICE, k, rand=0.99) is not None for k in keys]  # rand ignored
    assert 0.17 < sum(mirrored) / len(keys) < 0.23
    # Its own salt: among users the weights keep on stable, about the same share is mirrored (a shared
    # bucket would mirror none of them, since stable users are exactly those above the canary weight).
    on_stable = [
        m for k, m in zip(keys, mirrored, strict=True) if choose("m", r, k, None, 0.0).role == "stable"
    ]
    assert 0.17 < sum(on_stable) / len(on_stable) < 0.23


def test_router_pick_carries_the_shadow_target():
    r = route(0, shadow=100.0)
    router = Router(RouterConfig(routes={"m": r}), rng=random.Random(7))
    choice = router.pick("m")
    assert (choice.adapter, choice.role, choice.shadow) == (STABLE, "stable", CANARY)
    assert router.pick("m", override="banking@1.0.0").shadow is None
    quiet = Router(RouterConfig(routes={"m": route(0)}), rng=random.Random(7))
    assert quiet.pick("m").shadow is None
