"""RetrievalConfig: strict, with environment-driven defaults resolved when used."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from finserve.serving.retrieval import RetrievalConfig


def test_defaults_point_at_milvus_lite_in_the_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FINSERVE_REDIS_URL", raising=False)
    config = RetrievalConfig()
    assert config.resolved_milvus_uri() == str(tmp_path / "index" / "milvus.db")
    assert (tmp_path / "index").is_dir()
    assert (config.collection, config.top_k, config.example_k, config.redis_url) == (
        "finserve_kb",
        3,
        10,
        None,
    )


def test_redis_url_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("FINSERVE_REDIS_URL", "redis://cache:6379/1")
    assert RetrievalConfig().redis_url == "redis://cache:6379/1"
    assert RetrievalConfig(redis_url=None).redis_url is None


def test_a_server_uri_is_used_as_given() -> None:
    assert RetrievalConfig(milvus_uri="http://milvus:19530").resolved_milvus_uri() == "http://milvus:19530"


@pytest.mark.parametrize("bad", [{"topk": 3}, {"top_k": 0}, {"collection": "bad-name"}, {"l2_ttl_s": 0}])
def test_typos_and_out_of_range_values_are_rejected(bad) -> None:
    with pytest.raises(ValidationError):
        RetrievalConfig(**bad)


def test_every_field_is_described() -> None:
    assert all(field.description for field in RetrievalConfig.model_fields.values())
