"""Shared helpers for the chart and manifest tests: the real tools (helm, kubectl, checkov,
hadolint, promtool), chart rendering and Kubernetes schema validation.

Tools come from .tools/ (scripts/install-tools.sh, run by `make tools`) or PATH. A missing tool
skips the test with the command that installs it, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "finserve"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Every install must name a credential source (or consent to none): renders start from this keys Secret,
# under whatever values a test passes; auth=() renders the chart's bare defaults.
AUTH_VALUES = (Path(__file__).with_name("auth-values.yaml"),)
TOOLS = REPO / ".tools"
SHARED = REPO.parent / "shared"

# The Kubernetes version manifests are validated against (kind's current node image line).
KUBERNETES_VERSION = "1.33.0"
RELEASE = "finserve"
NAMESPACE = "finserve"

INSTALL_HINT = {
    "helm": "run `make tools` (scripts/install-tools.sh)",
    "kubectl": "run `make tools` (scripts/install-tools.sh)",
    "checkov": "run `make tools` (scripts/install-tools.sh)",
    "hadolint": "run `make tools` (scripts/install-tools.sh)",
    "promtool": "run `make system-deps` (Debian's prometheus package ships promtool)",
}
_LOCATIONS = {
    "helm": [TOOLS / "bin" / "helm"],
    "kubectl": [TOOLS / "bin" / "kubectl"],
    "checkov": [TOOLS / "checkov-venv" / "bin" / "checkov"],
    "hadolint": [TOOLS / "checkov-venv" / "bin" / "hadolint"],
    "promtool": [],
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def tool(name: str) -> str:
    """Path of a real tool; skip (fail in CI) when it is not installed."""
    for candidate in _LOCATIONS[name]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: {INSTALL_HINT[name]}"
    if in_ci():
        pytest.fail(message + " (CI=true: the tool is required)")
    pytest.skip(message)


def run(args: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    # Tools run from / so nothing picks up the repository's operator/ folder as a Python module.
    proc = subprocess.run(args, capture_output=True, text=True, cwd=kwargs.pop("cwd", "/"), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("helm"), *args], check=check)


@functools.lru_cache(maxsize=64)
def _render_text(values: tuple[str, ...], sets: tuple[str, ...], release: str, namespace: str) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values:
        args += ["-f", path]
    for item in sets:
        args += ["--set", item]
    return helm(*args).stdout


def render_text(
    values: tuple[str | Path, ...] = (),
    sets: tuple[str, ...] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    auth: tuple[Path, ...] = AUTH_VALUES,
) -> str:
    return _render_text(tuple(str(v) for v in (*auth, *values)), tuple(sets), release, namespace)


def render(
    values: tuple[str | Path, ...] = (),
    sets: tuple[str, ...] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    auth: tuple[Path, ...] = AUTH_VALUES,
) -> list[dict[str, Any]]:
    """The chart rendered by `helm template`, as a list of objects (fresh copies each call)."""
    return [d for d in yaml.safe_load_all(render_text(values, sets, release, namespace, auth)) if d]


def render_fails(
    *sets: str, values: tuple[str | Path, ...] = (), auth: tuple[Path, ...] = AUTH_VALUES
) -> str:
    """Render that must fail; returns helm's error output."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in (*auth, *values):
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, f"helm template {' '.join(sets)} rendered, expected a failure"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name!r} in {[c['name'] for c in pod_spec.get('containers', [])]}")


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


# Kinds without a schema in kubernetes-validate; each has its own checks in the tests.
CUSTOM_KINDS = {"RayService", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ModelRollout"}


def k8s_validate(doc: dict[str, Any]) -> str | None:
    """Strict schema validation for a pinned Kubernetes version; returns an error text or None.

    kubernetes-validate's CLI exits 0 on some failures (unknown kinds, versions), so the library
    is called directly and every outcome is explicit.
    """
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError:
        if doc.get("kind") in CUSTOM_KINDS:
            return None
        return f"{doc.get('apiVersion')}/{doc.get('kind')}: no schema in Kubernetes {KUBERNETES_VERSION}"
    except kubernetes_validate.utils.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        return f"{doc['kind']}/{doc['metadata'].get('name')} at {where}: {exc.message}"
    return None


def pod_as_object(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A pod template as a Pod, so kubernetes-validate checks it (e.g. inside a RayService)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **template.get("metadata", {})},
        "spec": template["spec"],
    }


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)
