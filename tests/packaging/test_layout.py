"""The layout tools read: one import root, finserve/, whose symlinks reach the design's top-level folders,
and an operator/ folder that can never shadow the standard library's `operator` (README.md "Layout")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINKS = {"serving": "serving", "operator": "operator", "contracts": "contracts", "training": "training_jobs"}


@pytest.mark.parametrize("name", sorted(LINKS))
def test_finserve_reaches_each_part_through_a_relative_symlink(name: str) -> None:
    link = REPO / "finserve" / name
    assert link.is_symlink(), f"finserve/{name} must be a symlink to ../{LINKS[name]}"
    # Relative, so a clone, an sdist or an image build context resolves it wherever it lies.
    assert os.readlink(link) == f"../{LINKS[name]}"
    assert link.resolve() == (REPO / LINKS[name]).resolve()


def test_imports_resolve_to_the_files_under_the_one_root() -> None:
    import finserve.contracts.routing
    import finserve.operator.spec

    for module, part in ((finserve.contracts.routing, "contracts"), (finserve.operator.spec, "operator")):
        path = Path(module.__file__)
        assert path.parent == REPO / "finserve" / part, path  # by path, as mypy and IDEs resolve it
        assert path.resolve().is_relative_to((REPO / part).resolve())


def test_operator_folder_is_a_namespace_package() -> None:
    # An __init__.py here would make the folder a regular package named `operator` for any Python that
    # has the repo root on sys.path, and regular packages beat the stdlib module on the path.
    assert not (REPO / "operator" / "__init__.py").exists()


def test_the_repo_root_on_sys_path_does_not_shadow_the_stdlib_operator() -> None:
    # -S: no site, so nothing (no .pth hook of an editable install) imports `operator` before the
    # working directory is on sys.path; no -P, so it is (as for `python -c` or `python -m pytest` there).
    out = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import operator; print(operator.__file__, operator.itemgetter(1)('ab'))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(out[0]).name == "operator.py" and not Path(out[0]).is_relative_to(REPO), out
    assert out[1] == "b"
