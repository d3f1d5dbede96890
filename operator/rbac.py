"""The Kubernetes permissions the operator needs, as data: the chart renders its (Cluster)Role from
these, and a test checks every API call the operator makes against them."""

from __future__ import annotations

from typing import TypedDict

from .api import GROUP, PLURAL


class PolicyRule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


CLUSTER_RULES: list[PolicyRule] = [
    # kopf: discover resources and notice CRDs appearing; list namespaces for --namespace globs.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]
"""Cluster-scoped: always a ClusterRole."""

NAMESPACED_RULES: list[PolicyRule] = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
    # Events on the ModelRollout (kopf posts them).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # The routing table.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
    # Pool autoscaling: read and scale the generator workloads, and see other autoscalers.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["ray.io"], "resources": ["rayservices"], "verbs": ["get", "patch"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["list"]},
    {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["list"]},
    # Evaluation gates: run `finserve eval answers` Jobs, stop them, and read their pods' termination
    # messages (the report).
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
]
"""Per served namespace: a Role per namespace, or a ClusterRole with --all-namespaces."""

REQUIRED_RULES: list[PolicyRule] = CLUSTER_RULES + NAMESPACED_RULES


def allows(rules: list[PolicyRule], group: str, resource: str, verb: str) -> bool:
    return any(
        (group in r["apiGroups"] or "*" in r["apiGroups"])
        and (resource in r["resources"] or "*" in r["resources"])
        and (verb in r["verbs"] or "*" in r["verbs"])
        for r in rules
    )
