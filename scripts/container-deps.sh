#!/usr/bin/env bash
# Installs what `make images` needs from Debian's packages: podman (with runc, its network stack and
# iptables), buildah, skopeo, and mmdebstrap for a local base image where no registry is reachable.
# Idempotent: does nothing when podman and mmdebstrap are present, or a Docker engine answers
# (then only mmdebstrap matters, and only without a registry).
set -euo pipefail
if command -v podman >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 && command -v iptables >/dev/null 2>&1; then
  exit 0
fi
if ! command -v podman >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# iptables: netavark sets up bridge networking (-p publishing) with it; without it `podman run`
# fails with "netavark: No such file or directory".
$SUDO apt-get install -y -qq --no-install-recommends podman buildah skopeo mmdebstrap runc conmon \
  netavark aardvark-dns slirp4netns uidmap iptables golang-github-containers-common >/dev/null
