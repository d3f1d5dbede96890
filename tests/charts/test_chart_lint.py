"""The chart passes helm's own checks: lint --strict, package, install --dry-run=client."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import yaml
from k8s_tooling import AUTH_VALUES, CHART, CI_VALUES, helm, render

# The chart's defaults name no credential source, which the chart refuses: "defaults" adds the keys Secret.
VALUES_CASES = [AUTH_VALUES[0], *CI_VALUES]
IDS = ["defaults", *[p.stem for p in CI_VALUES]]
OPEN = ("--set", "serving.auth.allowUnauthenticated=true")


def test_ci_values_cover_the_documented_setups():
    # The list: defaults, rayservice, gpu, external redis/milvus, monitoring on.
    assert {p.stem for p in CI_VALUES} >= {
        "rayservice-values",
        "gpu-values",
        "external-values",
        "monitoring-values",
        "jobs-values",
    }


@pytest.mark.parametrize("values", VALUES_CASES, ids=IDS)
def test_lint_strict(values: Path):
    out = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in out.stdout + out.stderr


@pytest.mark.parametrize("case", ["auto without credentials", "mode none"])
def test_an_install_without_authentication_is_refused_unless_the_installer_consents(case: str):
    """No credential source, or auth.mode none, fails the install with a message that says what to set;
    serving.auth.allowUnauthenticated=true is the operator saying so explicitly."""
    sets = ("--set", "serving.auth.mode=none") if case == "mode none" else ()
    base = ["install", "finserve", str(CHART), "--dry-run=client", "--namespace", "finserve", *sets]
    refused = helm(*base, check=False)
    assert refused.returncode != 0
    assert "refusing to serve the API without authentication" in refused.stderr
    for what in (
        "serving.auth.keys.existingSecret",
        "serving.auth.jwt.jwksUrl",
        "serving.apiKey.existingSecret",
        "serving.auth.allowUnauthenticated=true",
    ):
        assert what in refused.stderr
    opened = helm(*base, *OPEN)
    assert "STATUS: pending-install" in opened.stdout
    assert (
        "no authentication: serving.auth.allowUnauthenticated is set" in opened.stdout.split("NOTES:", 1)[1]
    )


@pytest.mark.parametrize("values", VALUES_CASES, ids=IDS)
def test_install_dry_run_client(values: Path):
    args = ["install", "finserve", str(CHART), "--dry-run=client", "--namespace", "finserve"]
    out = helm(*args, "-f", str(values))
    assert "STATUS: pending-install" in out.stdout
    # NOTES.txt tells the user how to call the API and watch a rollout.
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "curl -s http://127.0.0.1:8000/v1/chat/completions" in notes
    assert "kubectl -n finserve get mro -w" in notes


def test_notes_show_the_api_key_header_only_when_a_credential_source_is_set():
    base = ["install", "finserve", str(CHART), "--dry-run=client", "--namespace", "finserve"]
    without = helm(*base, *OPEN).stdout.split("NOTES:", 1)[1]
    with_key = helm(*base, "--set", "serving.apiKey.existingSecret=api").stdout.split("NOTES:", 1)[1]
    with_keys = helm(*base, "-f", str(AUTH_VALUES[0])).stdout.split("NOTES:", 1)[1]
    assert "Authorization: Bearer" not in without
    assert "get secret api -o jsonpath='{.data.api-key}'" in with_key
    assert "Authorization: Bearer $FINSERVE_KEY" in with_keys and "finserve auth keys create" in with_keys


def test_package_holds_crds_schema_and_no_ci_values(tmp_path: Path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    archive = tmp_path / f"finserve-{chart_meta['version']}.tgz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "finserve/crds/modelrollouts.finserve.dev.yaml" in names
    assert "finserve/values.schema.json" in names
    assert "finserve/dashboards/finserve.json" in names
    assert not any(n.startswith("finserve/ci/") for n in names), ".helmignore must keep ci/ out"
    # The packaged chart renders like the source tree.
    assert helm("template", "finserve", str(archive), *OPEN).stdout.count("kind: Deployment") == 2


def test_no_dependency_that_cannot_be_fetched_offline():
    # A declared dependency missing from charts/ breaks lint/template/package/install offline,
    # whatever its `condition:`; Milvus is an external URI instead (see docs/kubernetes.md).
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for dep in meta.get("dependencies", []):
        assert (CHART / "charts").is_dir() and any((CHART / "charts").glob(f"{dep['name']}-*.tgz")), dep


def test_every_template_renders_something_for_some_ci_values():
    # A template that no values file exercises is a template no test covers.
    rendered_sources = set()
    for values in [AUTH_VALUES, *[(p,) for p in CI_VALUES]]:
        text = helm("template", "finserve", str(CHART), *sum((["-f", str(v)] for v in values), [])).stdout
        rendered_sources |= {
            line.split("# Source: finserve/", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("# Source: finserve/")
        }
    templates = {str(p.relative_to(CHART)) for p in (CHART / "templates").rglob("*.yaml")}
    assert templates - rendered_sources == set()
    assert render()  # defaults render too
