"""values.schema.json rejects unknown keys and wrong types with a message naming the key, and
values.yaml documents every setting where it lives (`# --` comments)."""

from __future__ import annotations

import json
import re

import pytest
from k8s_tooling import CHART, render, render_fails

SCHEMA = json.loads((CHART / "values.schema.json").read_text())

BAD_VALUES = [
    # (--set arguments, text helm must print)
    (["serving.replicaz=2"], "at '/serving': additional properties 'replicaz' not allowed"),
    (["unknownTopLevel=1"], "additional properties 'unknownTopLevel' not allowed"),
    (["serving.runtime=knative"], "at '/serving/runtime': value must be one of 'deployment', 'rayservice'"),
    (["serving.httpPort=http"], "at '/serving/httpPort': got string, want integer"),
    (["serving.httpPort=70000"], "at '/serving/httpPort': maximum: got 70,000, want 65,535"),
    (["serving.pools[0].name=CPU"], "at '/serving/pools/0/name': 'CPU' does not match pattern"),
    (
        ["serving.pools[0].name=cpu", "serving.pools[0].gpus=-1"],
        "at '/serving/pools/0/gpus': minimum: got -1, want 0",
    ),
    (
        ["serving.pools[0].name=cpu", "serving.pools[0].replicaCount=2"],
        "at '/serving/pools/0': additional properties 'replicaCount' not allowed",
    ),
    (["redis.mode=sentinel"], "at '/redis/mode': value must be one of 'bundled', 'external', 'disabled'"),
    (["redis.mode=external"], "at '/redis/external/url': minLength: got 0, want 1"),
    # Credentials never go into values: a URL carrying user:password is rejected.
    (
        ["redis.mode=external", "redis.external.url=redis://user:hunter2@redis:6379/0"],
        "at '/redis/external/url': 'redis://user:hunter2@redis:6379/0' does not match pattern",
    ),
    (["milvus.uri=http://root:Milvus@milvus:19530"], "at '/milvus/uri'"),
    (["registry.type=objectStorage"], "at '/registry/objectStorage/url': minLength: got 0, want 1"),
    (["registry.type=nfs"], "at '/registry/type': value must be one of 'pvc', 'objectStorage', 'dataDir'"),
    (["evaluation.enabled=true"], "at '/evaluation/dataPath': minLength: got 0, want 1"),
    (
        ["monitoring.prometheusRule.errorRateThreshold=5"],
        "at '/monitoring/prometheusRule/errorRateThreshold': maximum",
    ),
    (["monitoring.serviceMonitor.interval=30 seconds"], "at '/monitoring/serviceMonitor/interval'"),
    (["operator.watchNamespaces[0]=Bad_NS"], "at '/operator/watchNamespaces/0'"),
    (
        ["operator.podDisruptionBudget.maxUnavailable=2"],
        "at '/operator/podDisruptionBudget/maxUnavailable': maximum: got 2, want 1",
    ),
    (
        ["serving.service.httpNodePort=8000"],
        "at '/serving/service/httpNodePort': minimum: got 8,000, want 30,000",
    ),
    (
        ["serving.poolDefaults.resources.requests.cpu=lots"],
        "at '/serving/poolDefaults/resources/requests/cpu'",
    ),
]


@pytest.mark.parametrize("sets,message", BAD_VALUES, ids=[" ".join(s) for s, _ in BAD_VALUES])
def test_bad_values_fail_with_the_schema_message(sets: list[str], message: str):
    err = render_fails(*sets)
    assert "values don't meet the specifications of the schema" in err
    assert message in err, err


TEMPLATE_CHECKS = [
    # Rules a schema cannot say, enforced by the templates with a readable message.
    (
        ["serving.pools[0].name=gpu", "serving.pools[0].gpus=1", "serving.pools[0].autoscaling.enabled=true"],
        "serving.pools[gpu].autoscaling: the CPU HPA is for CPU pools",
    ),
    (["serving.pools[0].name=a", "serving.pools[1].name=a"], 'serving.pools: pool name "a" is used twice'),
    (
        [
            "serving.runtime=rayservice",
            "serving.rayService.workerGroups[0].name=w",
            "serving.rayService.workerGroups[1].name=w",
        ],
        'workerGroups: group name "w" is used twice',
    ),
]


@pytest.mark.parametrize("sets,message", TEMPLATE_CHECKS, ids=[m.split(":")[0] for _, m in TEMPLATE_CHECKS])
def test_template_checks_fail_with_a_clear_message(sets: list[str], message: str):
    assert message in render_fails(*sets)


def test_good_overrides_still_render():
    docs = render(
        sets=(
            "serving.httpPort=9000",
            "redis.mode=external",
            "redis.external.url=redis://cache:6379/1",
            "milvus.uri=http://milvus:19530",
        )
    )
    assert docs


def _walk(node: dict, path: str = ""):
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")


def test_every_schema_object_is_closed_and_every_property_described():
    for path, node in _walk(SCHEMA):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"
        if path and not path.endswith("[]"):  # list items are described by their list
            assert node.get("description"), f"{path} has no description"


KEY = re.compile(r"^(?P<indent> *)(?P<item>- )?(?P<key>[A-Za-z][\w-]*):(?P<rest>.*)$")


def test_values_yaml_documents_every_setting():
    """helm-docs rules: a key preceded by a comment block starting `# --` is documented with its
    whole subtree; a key without one must only group documented keys."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    covered_below: int | None = None  # indent of the documented key whose subtree we are in
    for i, line in enumerate(lines):
        m = KEY.match(line)
        if not m:
            continue
        indent = len(m.group("indent")) + (2 if m.group("item") else 0)
        if covered_below is not None and indent > covered_below:
            continue
        covered_below = None
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        if j >= 0 and lines[j].strip().startswith("# --"):
            covered_below = indent
            continue
        rest = m.group("rest").split("#", 1)[0].strip()
        nxt = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
        groups_keys = (
            rest == "" and not nxt.lstrip().startswith("- ") and len(nxt) - len(nxt.lstrip()) > indent
        )
        if not groups_keys:
            undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "values without a `# --` comment:\n" + "\n".join(undocumented)
