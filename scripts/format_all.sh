#!/usr/bin/env bash
# Applies the formatter and the import order (pyproject.toml [tool.ruff]) to the whole tree, once: run on
# main after the branches that touch many files are merged, commit the result as one "format only" commit,
# and from then on `make lint` keeps it applied (`ruff format --check`, rule I). Safe fixes only: import
# sorting (I) and pyupgrade (UP), then the formatter. Prints how many files changed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF="${RUFF:-.venv/bin/ruff}"
PATHS=(serving contracts finserve operator training_jobs bench tests scripts docker)
before="$(git status --porcelain | wc -l)"
"$RUFF" check --fix --select I,UP --quiet "${PATHS[@]}" || true   # what it cannot fix, `make lint` reports
"$RUFF" format --quiet "${PATHS[@]}"
echo "format_all: $(git status --porcelain | wc -l) files differ from HEAD (before: $before)"
