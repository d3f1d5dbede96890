"""Alerts and dashboard queries, checked with Prometheus' own promtool: the rules parse, fire on
synthetic series that break them and stay quiet on healthy ones; the dashboard's PromQL parses;
every metric they name is one serving or the operator exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from k8s_tooling import CHART, one, render, run, tool

from finserve.contracts import metrics as contract_metrics

EXTERNAL_METRICS = {"DCGM_FI_DEV_GPU_UTIL"}  # NVIDIA DCGM exporter
CONTRACT_METRICS = {
    v
    for k, v in vars(contract_metrics).items()
    if k.isupper() and isinstance(v, str) and v.startswith(contract_metrics.PREFIX + "_")
}
DASHBOARD = json.loads((CHART / "dashboards" / "finserve.json").read_text())


def rule_groups(*sets: str, extra_values: Path | None = None) -> list[dict]:
    values = (CHART / "ci" / "monitoring-values.yaml",) + ((extra_values,) if extra_values else ())
    return one(render(values=values, sets=sets), "PrometheusRule")["spec"]["groups"]


def metric_names(promql: str) -> set[str]:
    names = set(re.findall(r"\b(finserve_[a-z0-9_]+|DCGM_[A-Z0-9_]+)\b", promql))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_rules_pass_promtool_check(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}))
    out = run([tool("promtool"), "check", "rules", str(path)])
    assert "SUCCESS: 5 rules found" in out.stdout


def test_the_four_alerts_exist():
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"]}
    assert alerts == {
        "FinserveHighErrorRate",
        "FinserveHighLatencyP95",
        "FinservePIIInOutput",
        "FinservePIIInInputOrContext",
        "FinserveRolloutFailed",
    }


SERIES = 'namespace="finserve",model="finserve-banking",adapter="banking77"'
UNIT_TESTS = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "1m",
    "tests": [
        {  # Canary 1.1.0 answers 1 in 6 requests with 5xx; stable 1.0.0 none.
            "interval": "1m",
            "input_series": [
                {
                    "series": f'finserve_requests_total{{{SERIES},version="1.1.0",code="200"}}',
                    "values": "0+50x30",
                },
                {
                    "series": f'finserve_requests_total{{{SERIES},version="1.1.0",code="500"}}',
                    "values": "0+10x30",
                },
                {
                    "series": f'finserve_requests_total{{{SERIES},version="1.0.0",code="200"}}',
                    "values": "0+60x30",
                },
                {
                    "series": f'finserve_requests_total{{{SERIES},version="1.0.0",code="500"}}',
                    "values": "0+0x30",
                },
                # Another namespace's release is not this release's business.
                {
                    "series": 'finserve_requests_total{namespace="other",model="m",adapter="a",version="1.0.0",code="500"}',
                    "values": "0+60x30",
                },
                {
                    "series": 'finserve_requests_total{namespace="other",model="m",adapter="a",version="1.0.0",code="200"}',
                    "values": "0+1x30",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "FinserveHighErrorRate", "exp_alerts": []},  # still pending
                {
                    "eval_time": "12m",
                    "alertname": "FinserveHighErrorRate",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "finserve",
                                "model": "finserve-banking",
                                "adapter": "banking77",
                                "version": "1.1.0",
                            }
                        }
                    ],
                },
            ],
        },
        {  # 1.1.0 answers everything in 5-10 s (p95 about 9.75 s); 1.0.0 under a second.
            "interval": "1m",
            "input_series": [
                *[
                    {
                        "series": f'finserve_request_duration_seconds_bucket{{{SERIES},version="1.1.0",le="{le}"}}',
                        "values": v,
                    }
                    for le, v in [("1", "0+0x30"), ("5", "0+0x30"), ("10", "0+60x30"), ("+Inf", "0+60x30")]
                ],
                *[
                    {
                        "series": f'finserve_request_duration_seconds_bucket{{{SERIES},version="1.0.0",le="{le}"}}',
                        "values": "0+60x30",
                    }
                    for le in ("1", "5", "10", "+Inf")
                ],
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "FinserveHighLatencyP95", "exp_alerts": []},  # `for: 10m`
                {
                    "eval_time": "20m",
                    "alertname": "FinserveHighLatencyP95",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "finserve",
                                "model": "finserve-banking",
                                "adapter": "banking77",
                                "version": "1.1.0",
                            }
                        }
                    ],
                },
            ],
        },
        {  # An IBAN leaks in an output at minute 5 on a brand-new series (a counter born at 1);
            # input-stage findings are the guard doing its job and never alert.
            "interval": "1m",
            "input_series": [
                {
                    "series": f'finserve_pii_findings_total{{{SERIES},version="1.1.0",stage="output",entity="IBAN_CODE"}}',
                    "values": "_ _ _ _ _ 1x40",
                },
                {
                    "series": f'finserve_pii_findings_total{{{SERIES},version="1.1.0",stage="input",entity="CREDIT_CARD"}}',
                    "values": "0+5x45",
                },
                # An older series that grows at minute 30 fires through increase().
                {
                    "series": f'finserve_pii_findings_total{{{SERIES},version="1.0.0",stage="output",entity="EMAIL_ADDRESS"}}',
                    "values": "0x29 1x15",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "FinservePIIInOutput", "exp_alerts": []},
                {
                    "eval_time": "6m",
                    "alertname": "FinservePIIInOutput",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "namespace": "finserve",
                                "model": "finserve-banking",
                                "adapter": "banking77",
                                "version": "1.1.0",
                                "entity": "IBAN_CODE",
                            }
                        }
                    ],
                },
                {
                    "eval_time": "25m",
                    "alertname": "FinservePIIInOutput",
                    "exp_alerts": [],
                },  # nothing new since
                {
                    "eval_time": "32m",
                    "alertname": "FinservePIIInOutput",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "namespace": "finserve",
                                "model": "finserve-banking",
                                "adapter": "banking77",
                                "version": "1.0.0",
                                "entity": "EMAIL_ADDRESS",
                            }
                        }
                    ],
                },
            ],
        },
        {  # Input / context PII per tenant, default: more than 5 within 1h. Tenant "retail" sends a card
            # every 10 minutes (6 an hour: fires once 6 are in the window); "other" sends 5 in its first hour, then
            # none (never more than 5 in a window: quiet);
            # retrieved context for "retail" starts on a brand-new series born at 4 and reaching 7 (fires).
            # Findings of one tenant add up across models and replicas.
            "interval": "10m",
            "input_series": [
                {
                    "series": 'finserve_pii_findings_total{namespace="finserve",model="m",adapter="a",version="1.0.0",'
                    'stage="input",entity="CREDIT_CARD",tenant="retail",pod="p1"}',
                    "values": "0+1x20",
                },
                {
                    "series": 'finserve_pii_findings_total{namespace="finserve",model="m",adapter="a",version="1.0.0",'
                    'stage="input",entity="PHONE_NUMBER",tenant="other",pod="p1"}',
                    "values": "0+1x5 5x15",
                },
                {
                    "series": 'finserve_pii_findings_total{namespace="finserve",model="m",adapter="a",version="1.0.0",'
                    'stage="context",entity="EMAIL_ADDRESS",tenant="retail",pod="p2"}',
                    "values": "_x11 4 7 7 7 7 7 7 7 7",
                },
                # Output findings belong to FinservePIIInOutput, another namespace to another release.
                {
                    "series": 'finserve_pii_findings_total{namespace="finserve",model="m",adapter="a",version="1.0.0",'
                    'stage="output",entity="EMAIL_ADDRESS",tenant="retail",pod="p1"}',
                    "values": "0+9x20",
                },
                {
                    "series": 'finserve_pii_findings_total{namespace="elsewhere",model="m",adapter="a",version="1.0.0",'
                    'stage="input",entity="CREDIT_CARD",tenant="retail",pod="p1"}',
                    "values": "0+50x20",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "50m",
                    "alertname": "FinservePIIInInputOrContext",
                    "exp_alerts": [],
                },  # 5 so far
                {
                    "eval_time": "100m",
                    "alertname": "FinservePIIInInputOrContext",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "finserve",
                                "tenant": "retail",
                                "stage": "input",
                            }
                        }
                    ],
                },
                {
                    "eval_time": "130m",
                    "alertname": "FinservePIIInInputOrContext",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "finserve",
                                "tenant": "retail",
                                "stage": "input",
                            }
                        },
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "finserve",
                                "tenant": "retail",
                                "stage": "context",
                            }
                        },
                    ],
                },
            ],
        },
        {  # Rollout r1 fails at minute 3; r2 progresses.
            "interval": "1m",
            "input_series": [
                {
                    "series": 'finserve_rollout_phase{rollout_namespace="finserve",rollout="r1",model="m",phase="Progressing"}',
                    "values": "1 1 1 0 0 0",
                },
                {
                    "series": 'finserve_rollout_phase{rollout_namespace="finserve",rollout="r1",model="m",phase="Failed"}',
                    "values": "0 0 0 1 1 1",
                },
                {
                    "series": 'finserve_rollout_phase{rollout_namespace="finserve",rollout="r2",model="m",phase="Progressing"}',
                    "values": "1 1 1 1 1 1",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "FinserveRolloutFailed", "exp_alerts": []},
                {
                    "eval_time": "4m",
                    "alertname": "FinserveRolloutFailed",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "rollout_namespace": "finserve",
                                "rollout": "r1",
                                "model": "m",
                            }
                        }
                    ],
                },
            ],
        },
    ],
}


def test_alerts_fire_on_bad_series_and_stay_quiet_on_good_ones(tmp_path: Path):
    groups = rule_groups()
    # Annotations hold the human text; their templates are checked by `promtool check rules`.
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(UNIT_TESTS))
    out = run([tool("promtool"), "test", "rules", "tests.yaml"], check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_thresholds_come_from_values(tmp_path: Path):
    # A values file, not --set: helm's --set turns 0.01 into a string, which the schema rejects.
    overrides = tmp_path / "thresholds.yaml"
    overrides.write_text(
        yaml.safe_dump(
            {
                "monitoring": {
                    "prometheusRule": {
                        "errorRateThreshold": 0.01,
                        "latencyP95Seconds": 2.5,
                        "errorRateFor": "2m",
                    }
                }
            }
        )
    )
    groups = rule_groups(extra_values=overrides)
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert rules["FinserveHighErrorRate"]["expr"].rstrip().endswith("> 0.01")
    assert rules["FinserveHighErrorRate"]["for"] == "2m"
    assert rules["FinserveHighLatencyP95"]["expr"].rstrip().endswith("> 2.5")


def dashboard_targets() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] if p["type"] != "row" for t in p["targets"]]


def test_dashboard_has_the_panels_operators_need():
    titles = " | ".join(p["title"] for p in DASHBOARD["panels"]).lower()
    for needed in (
        "per-stage latency",
        "requests per second by adapter version",
        "error rate by adapter version",
        "cache hit rate",
        "gpu utilization",
        "rollout phase",
        "rollout canary weight",
    ):
        assert needed in titles
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    for _, expr in dashboard_targets():
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval"}, expr


def test_dashboard_queries_parse(tmp_path: Path):
    # promtool parses PromQL inside rule files: each query becomes a recording rule.
    rules = []
    for i, (_title, expr) in enumerate(dashboard_targets()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$model", ".*")
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run([tool("promtool"), "check", "rules", str(path)])
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_only_known_metrics_are_used():
    used = set()
    for group in rule_groups():
        for rule in group["rules"]:
            used |= metric_names(rule["expr"])
    for _, expr in dashboard_targets():
        used |= metric_names(expr)
    unknown = used - CONTRACT_METRICS - EXTERNAL_METRICS
    assert not unknown, f"not in finserve.contracts.metrics: {sorted(unknown)}"
    # Every metric of the contract, serving's and the operator's, is on the dashboard or in an alert.
    assert CONTRACT_METRICS <= used


def test_rollout_alert_and_panels_use_the_labels_the_operator_exports():
    labels = set(contract_metrics.ROLLOUT_LABELS)
    (rule,) = [r for g in rule_groups() for r in g["rules"] if r["alert"] == "FinserveRolloutFailed"]
    assert contract_metrics.ROLLOUT_PHASE in rule["expr"]
    assert set(re.findall(r"by \(([^)]*)\)", rule["expr"])[0].replace(" ", "").split(",")) == labels
    for _, expr in dashboard_targets():
        if "finserve_rollout_" in expr:
            assert set(re.findall(r"by \(([^)]*)\)", expr)[0].replace(" ", "").split(",")) <= labels | {
                "phase"
            }
