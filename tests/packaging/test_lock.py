"""requirements/serving.lock (what the CPU serving image installs) pins every runtime dependency of
pyproject.toml at a version its range admits, and torch at the CPU build."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "serving.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[normalize(name)] = version
    return pins


def test_the_lock_pins_every_dependency_inside_its_range():
    pins = lock()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = normalize(dep.name)
        assert name in pins, f"{dep.name} is not in requirements/serving.lock: run make lock"
        assert dep.specifier.contains(Version(pins[name]), prereleases=True), (
            f"{dep.name}=={pins[name]} in the lock is outside pyproject's {dep.specifier}: run make lock"
        )


def test_the_lock_pins_the_cpu_torch():
    assert lock()["torch"].endswith("+cpu")
