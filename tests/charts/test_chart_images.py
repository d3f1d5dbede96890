"""The Dockerfiles: hadolint-clean, non-root, every copied path exists and passes the ignore
file, and the operator image's dependency subset covers everything the operator imports."""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest
from k8s_tooling import REPO, SHARED, in_ci, run, tool

DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            current = ""
    return out


def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    result, name = {}, None
    for word, rest in instructions(dockerfile):
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE)
            name = m.group(1) if m else f"stage{len(result)}"
            result[name] = []
        elif name:
            result[name].append((word, rest))
    return result


def test_there_are_images_for_serving_operator_and_training():
    assert {p.name for p in DOCKERFILES} == {
        "serving.Dockerfile",
        "operator.Dockerfile",
        "training.Dockerfile",
    }
    assert {"cpu", "gpu"} <= set(stages(DOCKER / "serving.Dockerfile"))


def test_hadolint_is_clean():
    out = run([tool("hadolint"), *map(str, DOCKERFILES)], check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_non_root_user(dockerfile: Path):
    final_stages = [s for s in stages(dockerfile).values() if s and any(w == "CMD" for w, _ in s)]
    assert final_stages
    for stage in final_stages:
        users = [rest for word, rest in stage if word == "USER"]
        assert users and users[-1] == "10001:10001"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_exist_and_pass_the_ignore_file(dockerfile: Path):
    ignore = (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
                keep = negate
        return keep

    stage_names = set(stages(dockerfile))
    for word, rest in instructions(dockerfile):
        if word != "COPY":
            continue
        args = [a for a in rest.split() if not a.startswith("--chown")]
        source_from = next((a.split("=", 1)[1] for a in args if a.startswith("--from=")), None)
        sources = [a for a in args if not a.startswith("--")][:-1]
        if source_from in stage_names:
            continue
        if source_from == "shared":  # the named build context: ../shared
            if SHARED.is_dir() or in_ci():
                for src in sources:
                    assert (SHARED / src).exists(), f"{dockerfile.name}: ../shared/{src} missing"
            continue
        for src in sources:
            assert (REPO / src).exists(), f"{dockerfile.name}: {src} does not exist"
            assert included(src.rstrip("/")), f"{dockerfile.name}: {src} is excluded by its .dockerignore"


def pick_deps(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-P", str(DOCKER / "pick_deps.py"), str(REPO / "pyproject.toml"), *args],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def operator_deps() -> list[str]:
    (arg,) = [
        rest
        for word, rest in instructions(DOCKER / "operator.Dockerfile")
        if word == "ARG" and rest.startswith("OPERATOR_DEPS=")
    ]
    return arg.split("=", 1)[1].strip('"').split()


def test_pick_deps_keeps_pyproject_versions():
    everything = pick_deps()
    assert any(d.startswith("torch") for d in everything)
    assert any(d.startswith("vllm") for d in pick_deps("--extra", "gpu"))
    subset = pick_deps("--only", *operator_deps())
    assert len(subset) == len(operator_deps())
    assert set(subset) <= set(everything)
    assert not any(re.match(r"(torch|ray|presidio|transformers|vllm)\b", d) for d in subset)
    bad = subprocess.run(
        [
            sys.executable,
            "-P",
            str(DOCKER / "pick_deps.py"),
            str(REPO / "pyproject.toml"),
            "--only",
            "no-such-package",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert bad.returncode != 0 and "no-such-package" in bad.stderr


# Distribution name -> import name, for the operator image's packages.
IMPORT_NAMES = {
    "pyyaml": "yaml",
    "prometheus-client": "prometheus_client",
    "opentelemetry-api": "opentelemetry",
}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    roots = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_operator_image_has_every_module_the_operator_imports():
    """The operator image installs finserve without its heavy dependencies: everything the operator,
    the contracts and the CLI's start-up import must come from OPERATOR_DEPS or the standard library."""
    available = {IMPORT_NAMES.get(d, d.replace("-", "_")) for d in operator_deps()} | {"finserve"}
    needed = set()
    for folder in ("operator", "contracts"):
        for path in (REPO / folder).rglob("*.py"):
            if "examples" not in path.parts:
                needed |= _imports(path, top_level_only=False)
    for path in [REPO / "finserve" / "cli.py", *(REPO / "finserve" / "commands").glob("*.py")]:
        needed |= _imports(path, top_level_only=True)  # other commands import their heavy modules lazily
    needed |= _imports(REPO / "finserve" / "commands" / "operator.py", top_level_only=False)
    missing = {m for m in needed - available if m not in sys.stdlib_module_names and m != "__future__"}
    assert not missing, f"add to OPERATOR_DEPS in docker/operator.Dockerfile: {sorted(missing)}"


def test_training_image_builds_on_the_serving_image():
    froms = [rest for word, rest in instructions(DOCKER / "training.Dockerfile") if word == "FROM"]
    assert froms == ["${SERVING_IMAGE}"]
    cmd = [rest for word, rest in instructions(DOCKER / "training.Dockerfile") if word == "CMD"][-1]
    assert "training_jobs/configs/default.yaml" in cmd
