#!/usr/bin/env bash
# Installs the system services the test suite runs for real (Debian packages): redis-server and
# prometheus. Idempotent: does nothing when both are present.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the prometheus exporters out; policy-rc.d is not needed because
# nothing here runs an init system, the postinst start attempts fail harmlessly.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
