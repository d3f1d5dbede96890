"""REQUIRED_RULES as data: well-formed, least privilege (no wildcards), and `allows` matches like RBAC.
The handler tests check every API call the running operator makes against these rules."""

from __future__ import annotations

from finserve.operator.rbac import CLUSTER_RULES, NAMESPACED_RULES, REQUIRED_RULES, allows


def test_rules_are_well_formed_and_without_wildcards():
    assert REQUIRED_RULES == CLUSTER_RULES + NAMESPACED_RULES
    for rule in REQUIRED_RULES:
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        assert all(rule[key] for key in rule)
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]


def test_allows_matches_group_resource_and_verb():
    assert allows(REQUIRED_RULES, "finserve.dev", "modelrollouts/status", "patch")
    assert allows(REQUIRED_RULES, "", "configmaps", "create")
    assert not allows(REQUIRED_RULES, "", "configmaps", "delete")
    assert not allows(REQUIRED_RULES, "", "secrets", "get")
    assert not allows(REQUIRED_RULES, "apps", "deployments", "patch")  # only through the scale subresource
    assert allows(REQUIRED_RULES, "apps", "deployments/scale", "patch")
