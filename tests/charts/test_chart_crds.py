"""The chart ships the operator's CRD unchanged: crds/ is a copy of manifests/crds/."""

from __future__ import annotations

from k8s_tooling import AUTH_VALUES, CHART, REPO, helm, load_yaml


def test_chart_crds_are_identical_copies_of_manifests_crds():
    source = {p.name: p.read_bytes() for p in (REPO / "manifests" / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "manifests/crds/ holds no CRD"
    assert shipped.keys() == source.keys()
    stale = [name for name in source if shipped[name] != source[name]]
    assert not stale, f"copy again: cp manifests/crds/{{{','.join(stale)}}} charts/finserve/crds/"


def test_crd_is_installed_by_helm_and_matches_the_operator_api():
    from finserve.operator import api

    rendered = helm("template", "finserve", str(CHART), "--include-crds", "-f", str(AUTH_VALUES[0])).stdout
    assert f"name: {api.PLURAL}.{api.GROUP}" in rendered
    crd = load_yaml(CHART / "crds" / f"{api.PLURAL}.{api.GROUP}.yaml")
    assert crd["spec"]["group"] == api.GROUP and crd["spec"]["names"]["kind"] == api.KIND
    assert api.SHORT_NAME in crd["spec"]["names"]["shortNames"]  # `kubectl get mro` in NOTES and docs
    assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == [api.VERSION]
