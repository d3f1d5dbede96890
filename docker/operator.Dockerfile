# syntax=docker/dockerfile:1.7
# finserve operator image: the finserve package with only the dependencies the operator imports
# (kopf, the Kubernetes client, pydantic, httpx, ...), so it stays small: no torch, ray or presidio.
# The CLI imports each command's heavy modules inside the command, so `finserve operator run`
# starts without them. Names come from pyproject.toml, versions from requirements/serving.lock (the
# versions the test suite ran against), never repeated here. `make images` builds it:
#   docker build -f docker/operator.Dockerfile -t finserve-operator:0.1.0 .
# checkov:skip=CKV_DOCKER_2: liveness is probed by Kubernetes on kopf's /healthz
# checkov:skip=CKV_DOCKER_7: FROM takes an ARG whose default pins a tag (python:3.11-slim-bookworm)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md docker/pick_deps.py requirements/serving.lock ./
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
ARG OPERATOR_DEPS="pydantic pydantic-settings pyyaml typer rich kopf kubernetes_asyncio httpx fsspec prometheus-client opentelemetry-api opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-httpx"
# Word splitting of OPERATOR_DEPS is intended: one argument per package name.
# hadolint ignore=SC2086
RUN python pick_deps.py pyproject.toml --only $OPERATOR_DEPS > requirements.txt \
 && pip install -c serving.lock -r requirements.txt
COPY finserve finserve
COPY contracts contracts
COPY serving serving
COPY operator operator
COPY training_jobs training_jobs
COPY docker/slim_venv.sh ./
RUN pip install --no-deps . \
 && sh slim_venv.sh /opt/venv

FROM ${BASE_IMAGE}
RUN groupadd --gid 10001 finserve \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin finserve
COPY --from=build /opt/venv /opt/venv
# Bytecode goes to the writable /tmp (the chart mounts an emptyDir there; the root filesystem is read-only).
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pycache HOME=/tmp
USER 10001:10001
EXPOSE 8080
CMD ["finserve", "operator", "run", "--all-namespaces"]
