"""The operator's settings: defaults, then the YAML file, then FINSERVE_OPERATOR__<FIELD>[__<FIELD>] variables;
the flat names of earlier releases still read, below the new ones, with a warning."""

from __future__ import annotations

import logging

import pytest
import yaml
from pydantic import ValidationError

from finserve.operator.settings import (
    CONFIG_FILE_ENV,
    RENAMED,
    OperatorConfig,
    env_overrides,
    load_operator_config,
)


def test_defaults_without_any_variable():
    cfg = load_operator_config(environ={})
    assert cfg == OperatorConfig()
    assert (cfg.prometheus.url, cfg.poll_seconds, cfg.metrics_port, cfg.eval_job_template) == (
        "http://prometheus-operated.monitoring:9090",
        15.0,
        8090,
        None,
    )


def test_nested_and_flat_overrides_case_insensitive_and_typed():
    env = {
        "FINSERVE_OPERATOR__PROMETHEUS__URL": "http://prom:9090",
        "finserve_operator__prometheus__timeout": "2.5",
        "FINSERVE_OPERATOR__POLL_SECONDS": "1",
        "FINSERVE_OPERATOR__METRICS_PORT": "0",
        "FINSERVE_GATEWAY__MAX_TOKENS_LIMIT": "9",
        "FINSERVE_POOL": "cpu",
    }  # serving's: not the operator's
    cfg = load_operator_config(environ=env)
    assert (cfg.prometheus.url, cfg.prometheus.timeout) == ("http://prom:9090", 2.5)
    assert (cfg.poll_seconds, cfg.metrics_port) == (1.0, 0)
    assert set(env_overrides(env)) == {"prometheus", "poll_seconds", "metrics_port"}


def test_env_wins_over_the_file_which_wins_over_the_defaults(tmp_path):
    path = tmp_path / "operator.yaml"
    path.write_text(
        yaml.safe_dump({"prometheus": {"url": "http://file:9090", "timeout": 3}, "poll_seconds": 5})
    )
    env = {"FINSERVE_OPERATOR__PROMETHEUS__URL": "http://env:9090"}
    cfg = load_operator_config(path, environ=env)
    assert (cfg.prometheus.url, cfg.prometheus.timeout, cfg.poll_seconds) == ("http://env:9090", 3.0, 5.0)
    # the file may also come from the environment
    assert load_operator_config(environ={CONFIG_FILE_ENV: str(path)}).prometheus.url == "http://file:9090"


@pytest.mark.parametrize(
    "env,loc",
    [
        ({"FINSERVE_OPERATOR__POLL_SECONDS": "soon"}, ("poll_seconds",)),
        ({"FINSERVE_OPERATOR__METRICS_PORT": "70000"}, ("metrics_port",)),
        ({"FINSERVE_OPERATOR__PROMETHEUS__URLL": "http://x"}, ("prometheus", "urll")),
        ({"FINSERVE_OPERATOR__POLL_SECOND": "1"}, ("poll_second",)),  # a typo is an error, not a no-op
    ],
    ids=["type", "range", "nested-typo", "top-level-typo"],
)
def test_a_bad_variable_fails_naming_the_field(env, loc):
    with pytest.raises(ValidationError) as err:
        load_operator_config(environ=env)
    assert err.value.errors()[0]["loc"] == loc


def test_file_keys_are_strict_too(tmp_path):
    path = tmp_path / "operator.yaml"
    path.write_text("prometheus_url: http://old-style:9090\n")
    with pytest.raises(ValidationError) as err:
        load_operator_config(path, environ={})
    assert err.value.errors()[0]["loc"] == ("prometheus_url",)


def test_deprecated_names_still_read_below_the_new_ones(caplog):
    old = {
        "FINSERVE_PROMETHEUS_URL": "http://old:9090",
        "FINSERVE_PROMETHEUS_TIMEOUT": "4",
        "FINSERVE_ROUTING_CONFIGMAP": "routes-old",
        "FINSERVE_OPERATOR_POLL_SECONDS": "2",
        "FINSERVE_OPERATOR_METRICS_PORT": "9100",
        "FINSERVE_EVAL_JOB_TEMPLATE": "/t/job.yaml",
    }
    assert set(old) == set(RENAMED)
    with caplog.at_level(logging.WARNING, logger="finserve.operator.settings"):
        cfg = load_operator_config(environ=old)
    assert (cfg.prometheus.url, cfg.prometheus.timeout, cfg.routing_configmap) == (
        "http://old:9090",
        4.0,
        "routes-old",
    )
    assert (cfg.poll_seconds, cfg.metrics_port, cfg.eval_job_template) == (2.0, 9100, "/t/job.yaml")
    assert any("FINSERVE_OPERATOR__PROMETHEUS__URL" in r.getMessage() for r in caplog.records)
    newer = load_operator_config(environ={**old, "FINSERVE_OPERATOR__PROMETHEUS__URL": "http://new:9090"})
    assert (newer.prometheus.url, newer.prometheus.timeout) == ("http://new:9090", 4.0)


def test_every_field_is_described():
    def fields(model):
        for name, info in model.model_fields.items():
            yield name, info
            annotation = info.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                yield from fields(annotation)

    assert all(info.description for _, info in fields(OperatorConfig))
