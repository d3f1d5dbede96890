"""Print requirement lines from pyproject.toml for an image build, so versions live in one place.

python pick_deps.py pyproject.toml                   every runtime dependency
python pick_deps.py pyproject.toml --extra gpu       plus the `gpu` extra
python pick_deps.py pyproject.toml --only kopf httpx just these (by normalized name)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9_.-]*", requirement)
    if not match:
        raise ValueError(f"cannot read a package name from {requirement!r}")
    return normalize(match.group())


def pick(pyproject: dict, extras: list[str], only: list[str]) -> list[str]:
    project = pyproject["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    if not only:
        return deps
    wanted = {normalize(n) for n in only}
    picked = [d for d in deps if requirement_name(d) in wanted]
    missing = wanted - {requirement_name(d) for d in picked}
    if missing:
        raise SystemExit(f"not in pyproject.toml dependencies: {sorted(missing)}")
    return picked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--only", nargs="+", default=[])
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as fh:
        print("\n".join(pick(tomllib.load(fh), args.extra, args.only)))


if __name__ == "__main__":
    main(sys.argv[1:])
