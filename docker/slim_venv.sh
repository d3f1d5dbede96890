#!/bin/sh
# Removes from a finished venv what never runs in an image: bytecode caches (Python writes them
# at run time under PYTHONPYCACHEPREFIX), test suites, torch's C++ headers and test binaries,
# and pip (nothing installs into a running image).  Usage: slim_venv.sh /opt/venv
set -eu
venv="$1"
site="$(echo "$venv"/lib/python3*/site-packages)"
find "$venv" -depth -type d -name __pycache__ -exec rm -rf {} +
find "$site" -depth -type d -name tests -exec rm -rf {} +
rm -rf "$site/torch/include" "$site/torch/test" "$site/onnx/backend/test/data" \
  "$site"/torch/bin/test_* "$site"/torch/bin/*Test "$site"/torch/bin/protoc*
"$venv/bin/python" -m pip uninstall -q -y pip
