#!/usr/bin/env bash
# Placeholder until the chart work lands: installs helm into .tools/bin (see charts issue).
set -euo pipefail
exit 0
