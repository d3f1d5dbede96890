"""FINSERVE_<SECTION>__<FIELD> environment overrides over the YAML file over the defaults, and the
redaction `finserve config show` applies."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from finserve.serving.config import load_serving_config
from finserve.serving.settings import REDACTED, env_overrides, merge, redacted, with_env


def test_env_overrides_nest_on_double_underscores_and_ignore_other_variables():
    env = {
        "FINSERVE_GATEWAY__MAX_TOKENS_LIMIT": "256",
        "finserve_retrieval__hold_back__min_score": "0.9",
        "FINSERVE_HTTP_PORT": "9000",
        "FINSERVE_POOL": "cpu",
        "OTHER__X": "1",
        "FINSERVE_GATEWAY__METRIC_TENANTS": '["a", "b"]',
    }
    found = env_overrides(env)
    assert set(found) == {"gateway", "retrieval"} and set(found["gateway"]) == {
        "max_tokens_limit",
        "metric_tenants",
    }
    assert float(found["retrieval"]["hold_back"]["min_score"]) == 0.9
    cfg = with_env({}, env)
    assert (cfg.gateway.max_tokens_limit, cfg.gateway.metric_tenants) == (256, ["a", "b"])
    assert cfg.retrieval.hold_back.min_score == 0.9


def test_env_wins_over_the_file_which_wins_over_the_defaults(tmp_path, monkeypatch):
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"gateway": {"max_tokens_limit": 300, "max_messages": 8}}))
    assert load_serving_config(path).gateway.max_tokens_limit == 300
    monkeypatch.setenv("FINSERVE_GATEWAY__MAX_TOKENS_LIMIT", "128")
    cfg = load_serving_config(path)
    assert (cfg.gateway.max_tokens_limit, cfg.gateway.max_messages) == (128, 8)  # the rest of the file stays
    assert load_serving_config(None).gateway.max_tokens_limit == 128


def test_a_bad_override_fails_validation_naming_the_field():
    with pytest.raises(ValidationError) as err:
        with_env({}, {"FINSERVE_GATEWAY__MAX_TOKENS_LIMIT": "lots"})
    assert err.value.errors()[0]["loc"] == ("gateway", "max_tokens_limit")
    with pytest.raises(ValidationError):
        with_env({}, {"FINSERVE_GATEWAY__NO_SUCH_FIELD": "1"})  # the config stays strict (extra="forbid")


def test_merge_keeps_siblings():
    assert merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}


def test_redaction_hides_credentials_not_names():
    data = {
        "retrieval": {"redis_url": "redis://user:s3cret@cache:6379/0", "milvus_uri": "http://milvus:19530"},
        "gateway": {"api_key_env": "FINSERVE_API_KEY", "api_key": "sk-1"},
        "x": {"token": None},
    }
    out = redacted(data)
    assert out["retrieval"]["redis_url"] == f"redis://user:{REDACTED}@cache:6379/0"
    assert out["retrieval"]["milvus_uri"] == "http://milvus:19530"
    assert out["gateway"] == {"api_key_env": "FINSERVE_API_KEY", "api_key": REDACTED}
    assert out["x"]["token"] is None
    assert redacted({"url": "redis://:pw@h:1"})["url"] == f"redis://:{REDACTED}@h:1"
