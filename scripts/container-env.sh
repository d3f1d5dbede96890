# Sourced by the image scripts: picks the container engine and its settings.
#   ENGINE   podman or docker (whichever works; podman first), or exits with a message.
# podman reads docker/containers.conf (runc, cgroupfs, file events, ulimits: see that file) unless
# the caller set CONTAINERS_CONF.
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${ENGINE:-}" ]; then
  if command -v podman >/dev/null 2>&1; then
    ENGINE=podman
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    # A docker CLI without a reachable engine is no engine.
    ENGINE=docker
  else
    echo "no container engine: install podman (make container-deps) or start a Docker engine" >&2
    exit 3
  fi
fi
if [ "$ENGINE" = podman ]; then
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$_repo_root/docker/containers.conf}"
fi
export ENGINE
