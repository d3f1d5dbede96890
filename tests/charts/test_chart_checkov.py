"""checkov (offline) finds nothing in the rendered chart or the Dockerfiles that is neither fixed
nor skipped on purpose with a reason in the chart (checkov.io/skipN annotations) or the
Dockerfile (# checkov:skip= comments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from k8s_tooling import CI_VALUES, REPO, render_text, run, tool


def scan(target: Path, framework: str) -> list[dict]:
    out = run(
        [
            tool("checkov"),
            "-d",
            str(target),
            "--framework",
            framework,
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr  # 1 means findings; anything else is a crash
    reports = json.loads(out.stdout)
    return reports if isinstance(reports, list) else [reports]


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    (out / "defaults.yaml").write_text(render_text())
    for values in CI_VALUES:
        (out / f"{values.stem}.yaml").write_text(render_text(values=(values,)))
    return out


def test_rendered_chart_has_no_unexplained_findings(rendered_dir: Path):
    (report,) = scan(rendered_dir, "kubernetes")
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "fix these or skip them with a reason in the chart:\n" + "\n".join(failed)
    assert report["summary"]["passed"] > 500  # the scan really looked at the workloads
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_38"}
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]


def test_dockerfiles_have_no_unexplained_findings():
    (report,) = scan(REPO / "docker", "dockerfile")
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 100
    for check in report["results"]["skipped_checks"]:
        assert check["check_result"].get("suppress_comment"), check["check_id"]
