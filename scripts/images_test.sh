#!/usr/bin/env bash
# `make images-test`: runs the built images the way the Helm chart runs them, and checks they work.
#   serving   non-root, read-only root filesystem (--read-only; /tmp, /dev/shm and the data dir
#             writable, as the chart mounts emptyDirs / claims there), a separate audit volume and a
#             read-only checkpoint key, all capabilities dropped. `finserve model convert` (the chart's
#             init container), then `finserve up` (the image's CMD): waits for /readyz, sends a chat
#             completion with a card number and checks the answer and the audit log in the volume
#             carry it masked, then `finserve audit verify` inside the container.
#   operator  same restrictions: `finserve --help`, `finserve rollout simulate` on the examples the
#             package ships.
#   training  same restrictions: a tiny real LoRA run (tests/training_jobs/tiny_configs.py) publishing
#             into a registry volume.
# Environment: TAG (default: pyproject version), IMAGES_TEST_PORT (default: a free port),
# READY_TIMEOUT (seconds for the serving stack to become ready, default 1200).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
PY="${PY:-.venv/bin/python -P}"
TAG="${TAG:-$($PY -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')}"
# A free port unless one is asked for: a fixed one can be held by anything else on a CI machine, and
# the readiness probe would then talk to that instead of this run's container.
PORT="${IMAGES_TEST_PORT:-$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
READY_TIMEOUT="${READY_TIMEOUT:-1200}"
CARD="4111 1111 1111 1111"
SERVING="finserve-serving:$TAG" OPERATOR="finserve-operator:$TAG" TRAINING="finserve-training:$TAG"
NAME="finserve-images-test-$$"
started=$SECONDS

work="$(mktemp -d /var/tmp/finserve-images-test.XXXXXX)"
cleanup() {
  "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "images-test FAILED: $*" >&2
  if "$ENGINE" container exists "$NAME" 2>/dev/null || "$ENGINE" inspect "$NAME" >/dev/null 2>&1; then
    echo "--- last lines of the serving container's log:" >&2
    "$ENGINE" logs --tail 60 "$NAME" >&2 || true
  fi
  exit 1
}
step() { echo "== [$((SECONDS - started)) s] $*"; }

# A run that was killed (its trap never ran) leaves its container behind, still holding its port and
# its CPU: remove those whose script (the PID in the name) is gone; a concurrent run's stays.
for stale in $("$ENGINE" ps -a --format '{{.Names}}' | grep '^finserve-images-test-[0-9]*$' || true); do
  kill -0 "${stale##*-}" 2>/dev/null || { echo "removing $stale, left by a killed run"; "$ENGINE" rm -f "$stale" >/dev/null; }
done
if curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT/"; then
  fail "port $PORT already answers on 127.0.0.1: set IMAGES_TEST_PORT to a free one"
fi

for image in "$SERVING" "$OPERATOR" "$TRAINING"; do
  "$ENGINE" image inspect "$image" >/dev/null 2>&1 || fail "image $image is missing: run make images first"
done

# The chart's securityContext: runAsNonRoot (the image's USER), readOnlyRootFilesystem, no privilege
# escalation, capabilities dropped; /tmp is an emptyDir, /dev/shm a memory emptyDir.
secure=(--read-only --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp:rw,size=2g,mode=1777)
# Volumes stand in for claims: the pod's fsGroup makes them writable for uid 10001; here, mode 0777.
mkdir -p "$work/data" "$work/audit" "$work/registry" "$work/key" "$work/etc"
chmod 0777 "$work/data" "$work/audit" "$work/registry"
$PY -c 'import secrets; print(secrets.token_hex(32))' > "$work/key/checkpoint.key"
chmod 0444 "$work/key/checkpoint.key"
# A serving config like the chart's ConfigMap: embedded defaults, short answers.
# auth mode none, as the chart renders it without a credential source (without it, finserve up listens
# on loopback only inside the container, which the published port cannot reach).
printf 'gateway:\n  max_tokens_default: 24\nauth:\n  mode: none\n' > "$work/etc/serving.yaml"
volumes=(-v "$work/data:/var/lib/finserve" -v "$work/audit:/var/lib/finserve/audit"
         -v "$work/etc/serving.yaml:/etc/finserve/serving.yaml:ro" -v "$work/key:/etc/finserve/audit-key:ro"
         -e FINSERVE_AUDIT_KEY_FILE=/etc/finserve/audit-key/checkpoint.key)

for image in "$SERVING" "$OPERATOR" "$TRAINING"; do
  step "$image runs as a non-root user on a read-only root filesystem"
  uid="$("$ENGINE" run --rm "${secure[@]}" "$image" id -u)" || fail "$image: cannot run id -u"
  [ "$uid" = 10001 ] || fail "$image runs as uid $uid, not 10001 (the chart's runAsUser)"
  if "$ENGINE" run --rm "${secure[@]}" "$image" sh -c 'touch /opt/venv/probe' 2>/dev/null; then
    fail "$image: /opt/venv is writable with --read-only"
  fi
done

# ---- operator
step "operator: finserve --help and finserve rollout simulate"
help="$("$ENGINE" run --rm "${secure[@]}" "$OPERATOR" finserve --help)" || fail "operator: finserve --help exited non-zero"
grep -q rollout <<<"$help" || fail "operator: finserve --help lists no rollout command"
sim="$("$ENGINE" run --rm "${secure[@]}" "$OPERATOR" sh -c \
  'ex="$(python -c "import finserve.operator as o; print(list(o.__path__)[0])")/examples"
   finserve rollout simulate --rollout "$ex/rollout.yaml" --metrics "$ex/healthy.yaml"')" \
  || fail "operator: finserve rollout simulate exited non-zero: $sim"
grep -q '"result": "Succeeded"' <<<"$sim" || fail "operator: the healthy example did not succeed: $(tail -2 <<<"$sim")"

# ---- serving
step "serving: finserve model convert (the chart's init container)"
"$ENGINE" run --rm "${secure[@]}" "${volumes[@]}" "$SERVING" finserve model convert \
  || fail "serving: finserve model convert failed"
step "serving: finserve up (the image's CMD) on 127.0.0.1:$PORT"
"$ENGINE" run -d --name "$NAME" "${secure[@]}" --shm-size 1g "${volumes[@]}" -p "127.0.0.1:$PORT:8000" "$SERVING" >/dev/null \
  || fail "serving: the container did not start"
deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
  running="$("$ENGINE" inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null || echo false)"
  # (Ray's fixed node-start wait running out on a busy machine is retried by finserve up itself:
  # serving/ray_start.py.) Any exit before ready fails.
  [ "$running" = true ] || fail "serving: the container exited before it was ready"
  [ $SECONDS -lt $deadline ] || fail "serving: not ready within ${READY_TIMEOUT}s"
  sleep 5
done
step "serving: ready; a chat completion with a card number"
body="$(printf '{"model": "finserve-banking", "max_tokens": 24, "messages": [{"role": "user", "content": "My card %s never arrived"}]}' "$CARD")"
resp="$(curl -sS -w '\n%{http_code}' -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$PORT/v1/chat/completions")" \
  || fail "serving: the chat completion request failed"
code="$(tail -1 <<<"$resp")" resp="$(sed '$d' <<<"$resp")"
[ "$code" = 200 ] || fail "serving: chat completion answered $code: $resp"
grep -q "${CARD// /}" <<<"${resp// /}" && fail "serving: the answer carries the card number: $resp"
request_id="$($PY -c '
import json, sys
data = json.loads(sys.argv[1])
assert data["choices"][0]["message"]["content"].strip(), "empty answer"
assert data["finserve"]["pii"]["input"] == {"CREDIT_CARD": 1}, data["finserve"]["pii"]
print(data["finserve"]["request_id"])' "$resp")" || fail "serving: unexpected answer: $resp"

step "serving: the audit log in its volume holds the request, masked"
logs=("$work"/audit/*.jsonl)
[ -f "${logs[0]}" ] || fail "serving: no audit log (*.jsonl) in the audit volume: $(ls -la "$work/audit")"
grep -q "$request_id" "${logs[@]}" || fail "serving: request $request_id is not in the audit log"
grep -q -e "$CARD" -e "${CARD// /}" "${logs[@]}" && fail "serving: the audit log carries the card number unmasked"
step "serving: finserve audit verify inside the container"
verify="$("$ENGINE" exec "$NAME" finserve audit verify --config /etc/finserve/serving.yaml 2>&1)" \
  || fail "serving: finserve audit verify failed: $verify"
"$ENGINE" stop -t 60 "$NAME" >/dev/null || fail "serving: did not stop on SIGTERM within 60 s"

# ---- training
step "training: a tiny real LoRA run publishing into the registry volume"
$PY -c '
import sys
sys.path.insert(0, "tests/training_jobs")
from pathlib import Path
from tiny_configs import tiny_config, write_config
write_config(Path(sys.argv[1]), tiny_config(name="images-test", version="0.0.1"))' "$work/etc/training.yaml"
"$ENGINE" run --rm "${secure[@]}" "${volumes[@]}" -v "$work/registry:/mnt/registry" -e FINSERVE_REGISTRY=/mnt/registry \
  -v "$work/etc/training.yaml:/etc/finserve/training/training.yaml:ro" "$TRAINING" \
  finserve train --config /etc/finserve/training/training.yaml || fail "training: finserve train failed"
[ -n "$(find "$work/registry" -path '*images-test*' -name manifest.json)" ] \
  || fail "training: no images-test adapter manifest in the registry volume: $(find "$work/registry" | head)"

step "all image checks passed in $((SECONDS - started)) s"
