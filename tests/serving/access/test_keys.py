"""API keys: format, salted hash at rest, verification, revocation and reloading of the keys file."""

from __future__ import annotations

import json
import os
import stat

import pytest

from finserve.serving.access.keys import KeysFile, KeyStore, new_key, parse_key, read_keys, write_keys
from finserve.serving.errors import Unauthorized


def store_with(tmp_path, *specs):
    path = tmp_path / "keys.json"
    keys, made = KeysFile(), []
    for name, tenants, scopes in specs:
        key, record = new_key(name, tenants, scopes)
        keys.keys.append(record)
        made.append(key)
    write_keys(path, keys)
    return path, made


def test_key_has_a_public_id_and_only_its_salted_hash_is_stored(tmp_path):
    path, [key] = store_with(tmp_path, ("app", ["retail"], ["infer"]))
    kid, secret = parse_key(key)
    text = path.read_text()
    assert kid in text and secret not in text and key not in text
    [record] = json.loads(text)["keys"]
    assert record["hash"] and record["salt"] and record["id"] == kid
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Two keys never share a salt, so equal secrets (impossible in practice) would still hash apart.
    _, r2 = new_key("b", ["retail"], ["infer"])
    assert r2.salt != record["salt"]


def test_verify_gives_the_principal(tmp_path):
    path, [key] = store_with(tmp_path, ("app", ["retail", "business"], ["infer", "adapter:override"]))
    p = KeyStore(path).verify(key)
    assert p.id == f"key:{parse_key(key)[0]}" and p.kind == "key"
    assert set(p.tenants) == {"retail", "business"} and p.scopes == {"infer", "adapter:override"}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # wrong secret
        lambda k: "fsk_000000000000_" + k.split("_", 2)[2],  # unknown id
        lambda k: k + "x",  # malformed
        lambda k: "fsk_",
    ],
)
def test_wrong_unknown_or_malformed_keys_are_refused(tmp_path, mangle):
    path, [key] = store_with(tmp_path, ("app", ["retail"], ["infer"]))
    with pytest.raises(Unauthorized) as err:
        KeyStore(path).verify(mangle(key))
    assert 'error="invalid_token"' in err.value.challenge
    assert key.split("_", 2)[2] not in err.value.message


def test_revoked_key_stops_verifying_after_the_file_changes(tmp_path):
    path, [key, other] = store_with(tmp_path, ("a", ["retail"], ["infer"]), ("b", ["retail"], ["infer"]))
    store = KeyStore(path, reload_interval_s=0.1)
    store.verify(key)
    keys = read_keys(path)
    from datetime import UTC, datetime

    keys.keys[0].revoked_at = datetime.now(UTC)
    write_keys(path, keys)
    store._checked = float("-inf")  # the next call re-reads (instead of waiting out the interval)
    with pytest.raises(Unauthorized, match="revoked"):
        store.verify(key)
    assert store.verify(other).id.startswith("key:")
    assert store.configured() and store.active() == 1


def test_a_broken_keys_file_keeps_the_last_good_keys(tmp_path):
    path, [key] = store_with(tmp_path, ("a", ["retail"], ["infer"]))
    store = KeyStore(path)
    path.write_text("{not json")
    store._checked = float("-inf")
    assert store.verify(key).tenants == ("retail",)


@pytest.mark.parametrize(
    ("tenants", "scopes", "needle"),
    [
        (["retail"], ["root"], "scope 'root'"),
        (["re tail"], ["infer"], "tenant 're tail'"),
    ],
)
def test_new_key_refuses_unknown_scopes_and_bad_tenants(tenants, scopes, needle):
    with pytest.raises(ValueError, match=needle):
        new_key("x", tenants, scopes)
