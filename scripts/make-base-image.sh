#!/usr/bin/env bash
# Makes sure the base image of the finserve images exists locally, and prints its name.
#   scripts/make-base-image.sh [IMAGE]     (default python:3.11-slim-bookworm)
# 1. already present locally: done.  2. a registry answers a pull within PULL_TIMEOUT seconds: pulled.
# 3. otherwise (no registry reachable, as on these build machines): built from Debian's packages
#    with mmdebstrap and imported as localhost/<IMAGE>. Debian 12's python3 is 3.11, the version the
#    upstream python:3.11-slim-bookworm carries; python-is-python3 gives `python`, passwd `useradd`.
#    About 2 minutes, ~180 MB.
set -euo pipefail
source "$(dirname "$0")/container-env.sh"
IMAGE="${1:-python:3.11-slim-bookworm}"
LOCAL="localhost/${IMAGE#localhost/}"
PULL_TIMEOUT="${PULL_TIMEOUT:-20}"

exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

for name in "$IMAGE" "$LOCAL" "docker.io/library/$IMAGE"; do
  if exists "$name"; then echo "$name"; exit 0; fi
done
if timeout "$PULL_TIMEOUT" "$ENGINE" pull -q "docker.io/library/$IMAGE" >/dev/null 2>&1; then
  echo "docker.io/library/$IMAGE"; exit 0
fi
echo "no registry answered within ${PULL_TIMEOUT}s: building $LOCAL from Debian packages (mmdebstrap)" >&2
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run make container-deps" >&2; exit 3; }
case "$IMAGE" in
  *bookworm*) suite=bookworm ;;
  *) echo "make-base-image.sh builds Debian bookworm bases only, not $IMAGE" >&2; exit 2 ;;
esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources="deb http://deb.debian.org/debian $suite main"
# Drop docs (but keep the copyright files), man pages, locales and apt caches: the image carries
# only what runs. docker-clean: apt-get in later layers writes no package cache (about 70 MB a
# layer otherwise), as in the official Debian images.
mmdebstrap --variant=minbase --quiet \
  --include=ca-certificates,python3,python3-venv,python-is-python3,passwd \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --aptopt='Acquire::Languages "none"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  --customize-hook='printf "%s\n" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" > "$1"/etc/apt/apt.conf.d/docker-clean' \
  "$suite" "$tmp/base.tar" "$sources"
"$ENGINE" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tmp/base.tar" "$LOCAL" >/dev/null
echo "$LOCAL"
