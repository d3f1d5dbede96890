"""skaffold.yaml is valid for skaffold/v4beta14 (the skaffold project's JSON schema, kept in
../shared/schemas/), and what it names exists: Dockerfiles and targets, chart values, profiles,
values files, the kind cluster it activates on."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
from k8s_tooling import CHART, REPO, SHARED, in_ci, load_yaml, render

SCHEMA_PATH = SHARED / "schemas" / "skaffold-v4beta14.json"
SKAFFOLD = load_yaml(REPO / "skaffold.yaml")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA_PATH.is_file():
        message = f"{SCHEMA_PATH} is missing (shared/ must sit beside the repository)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return jsonschema.Draft7Validator(json.loads(SCHEMA_PATH.read_text()))


def test_skaffold_yaml_is_valid_v4beta14(validator: jsonschema.Draft7Validator):
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta14"
    errors = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(SKAFFOLD)]
    assert not errors, "\n".join(errors)


def test_schema_catches_a_misspelt_key(validator: jsonschema.Draft7Validator):
    broken = copy.deepcopy(SKAFFOLD)
    broken["build"]["artifacts"][0]["docker"]["dockerFile"] = broken["build"]["artifacts"][0]["docker"].pop(
        "dockerfile"
    )
    assert list(validator.iter_errors(broken))


def apply_profile(config: dict, name: str) -> dict:
    """The few JSON-patch `add` operations our profiles use, applied as skaffold would."""
    config = copy.deepcopy(config)
    (profile,) = [p for p in config["profiles"] if p["name"] == name]
    for patch in profile.get("patches", []):
        assert patch["op"] == "add"
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in patch["path"].strip("/").split("/")
        ]
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.append(patch["value"]) if last == "-" else node.insert(int(last), patch["value"])
        else:
            node[last] = patch["value"]
    return config


PROFILES = [None, "kind", "minikube", "gpu"]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p or "base")
def test_artifacts_and_helm_values_line_up(profile: str | None):
    config = apply_profile(SKAFFOLD, profile) if profile else SKAFFOLD
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    for image, artifact in artifacts.items():
        dockerfile = REPO / artifact.get("context", ".") / artifact["docker"]["dockerfile"]
        text = dockerfile.read_text()
        if "target" in artifact["docker"]:
            assert re.search(rf"^FROM .* AS {artifact['docker']['target']}$", text, re.MULTILINE), image
        for req in artifact.get("requires", []):
            assert req["image"] in artifacts and f"ARG {req['alias']}" in text, (image, req)
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == CHART
    values = load_yaml(CHART / "values.yaml")
    used_images = set()
    for key, template in release["setValueTemplates"].items():
        node = values
        for part in key.split("."):
            node = node[part]  # KeyError: the chart has no such value
        m = re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG)_(\w+)\}\}", template)
        assert m, template
        (image,) = [i for i in artifacts if re.sub(r"[/-]", "_", i) == m.group(2)]
        used_images.add(image)
        if m.group(1) == "REPO":  # the chart's default repository is the artifact's name
            assert node == image, key
    assert used_images == set(artifacts), "every built image is deployed"
    for values_file in release.get("valuesFiles", []):
        assert render(values=(REPO / values_file,)), values_file


def test_kind_profile_activates_on_the_documented_cluster():
    cluster = load_yaml(REPO / "deploy" / "kind" / "cluster.yaml")
    (kind,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "kind"]
    assert kind["activation"] == [{"kubeContext": f"kind-{cluster['name']}"}]


def test_kind_port_mapping_reaches_the_gateway_node_port():
    cluster = load_yaml(REPO / "deploy" / "kind" / "cluster.yaml")
    (mapping,) = cluster["nodes"][0]["extraPortMappings"]
    node_port = load_yaml(REPO / "deploy" / "kind" / "values.yaml")["serving"]["service"]["httpNodePort"]
    assert mapping["containerPort"] == node_port and mapping["hostPort"] == 8000
    docs = render(values=(REPO / "deploy" / "kind" / "values.yaml",))
    (svc,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "finserve"]
    assert svc["spec"]["type"] == "NodePort"
    assert [p["nodePort"] for p in svc["spec"]["ports"] if p["name"] == "http"] == [node_port]


def test_images_build_from_the_repository_alone():
    # The Banking77 data lives in data/banking77/: no build context outside the repository.
    for artifact in SKAFFOLD["build"]["artifacts"]:
        assert "--build-context" not in artifact["docker"].get("cliFlags", [])
    assert (REPO / "data" / "banking77" / "train.csv").is_file()
