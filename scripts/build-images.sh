#!/usr/bin/env bash
# Builds the finserve images with podman or docker (whichever is present; see container-env.sh):
#   finserve-serving (CPU), finserve-operator, finserve-training, and finserve-serving-gpu when
#   IMAGES_GPU=1 (it downloads vLLM and a CUDA torch, several GB; skipped otherwise, with a message).
# Usage: scripts/build-images.sh [serving|operator|training|gpu ...]   (default: all of them)
# Environment:
#   BASE_IMAGE       base of every image (default python:3.11-slim-bookworm; made locally by
#                    scripts/make-base-image.sh when no registry has it)
#   TORCH_INDEX_URL  where the CPU torch wheel comes from (default: a local wheel folder from pip's
#                    find-links when it holds the locked torch, else the PyTorch CPU index)
#   TAG              image tag (default: the package version in pyproject.toml)
# Prints each image's build time and size (podman/docker image inspect .Size, bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
PY="${PYTHON:-python3}"
TAG="${TAG:-$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')}"
BASE="$(scripts/make-base-image.sh "${BASE_IMAGE:-python:3.11-slim-bookworm}")"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(serving operator training gpu)

args=(--build-arg "BASE_IMAGE=$BASE")
if [ "$ENGINE" = podman ]; then
  # Build steps reach PyPI through whatever TLS proxy the host trusts: lend them the host's CA bundle.
  ca=/etc/ssl/certs/ca-certificates.crt
  [ -f "$ca" ] && args+=(--volume "$ca:$ca:ro")
  # Local wheel folders and file:// indexes from the host's pip configuration, mounted read-only at
  # the same paths and passed on to pip; the locked CPU torch wheel usually lies in one of them.
  torch_pin="$(grep -E '^torch==' requirements/serving.lock | cut -d= -f3)"
  find_links=() extra_index=()
  for d in $(pip config get global.find-links 2>/dev/null || true) ${PIP_FIND_LINKS:-}; do
    [ -d "$d" ] && find_links+=("$d") && args+=(--volume "$d:$d:ro")
  done
  for u in $(pip config get global.extra-index-url 2>/dev/null || true) ${PIP_EXTRA_INDEX_URL:-}; do
    d="${u#file://}"; d="${d%/simple}"
    if [ "$u" != "$d" ] && [ -d "$d" ]; then extra_index+=("$u"); args+=(--volume "$d:$d:ro"); fi
  done
  [ ${#find_links[@]} -gt 0 ] && args+=(--build-arg "PIP_FIND_LINKS=${find_links[*]}")
  [ ${#extra_index[@]} -gt 0 ] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=${extra_index[*]}")
  if [ -z "${TORCH_INDEX_URL+x}" ]; then
    for d in "${find_links[@]}"; do
      if compgen -G "$d/torch-${torch_pin/+/[+]}-*.whl" >/dev/null; then TORCH_INDEX_URL=""; break; fi
    done
  fi
fi
[ -n "${TORCH_INDEX_URL+x}" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

summary=()
build() {  # name, then engine build arguments
  local name="$1"; shift
  local start=$SECONDS
  echo "== building $name:$TAG ($ENGINE, base $BASE)" >&2
  "$ENGINE" build "${args[@]}" "$@" -t "$name:$TAG" .
  local size; size="$("$ENGINE" image inspect --format '{{.Size}}' "$name:$TAG")"
  summary+=("$(printf '%-24s %6d s  %5d MB' "$name:$TAG" $((SECONDS - start)) $((size / 1000000)))")
}

for t in "${targets[@]}"; do
  case "$t" in
    serving)  build finserve-serving -f docker/serving.Dockerfile --target cpu ;;
    operator) build finserve-operator -f docker/operator.Dockerfile ;;
    training) build finserve-training -f docker/training.Dockerfile --build-arg "SERVING_IMAGE=finserve-serving:$TAG" ;;
    gpu)
      if [ "${IMAGES_GPU:-0}" = 1 ]; then
        build finserve-serving-gpu -f docker/serving.Dockerfile --target gpu
      else
        echo "== skipping finserve-serving-gpu: IMAGES_GPU=1 builds it (vLLM + CUDA torch from the package index, several GB)" >&2
      fi ;;
    *) echo "unknown image $t (serving, operator, training, gpu)" >&2; exit 2 ;;
  esac
done
printf '%s\n' "${summary[@]}"
