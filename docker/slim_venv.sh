#!/bin/sh
# Removes from a finished venv what never runs in an image: bytecode caches (Python writes them
# at run time under PYTHONPYCACHEPREFIX), test suites, torch's C++ headers and test binaries,
# pip (nothing installs into a running image), and the static symbol tables of shared libraries
# (strip --strip-unneeded, as Debian ships its own: the dynamic symbols stay; ~250 MB, 85 of them
# torch's). Stripping is skipped where the stage has no binutils.  Usage: slim_venv.sh /opt/venv
set -eu
venv="$1"
site="$(echo "$venv"/lib/python3*/site-packages)"
find "$site" -depth -type d -name tests -exec rm -rf {} +
rm -rf "$site/torch/include" "$site/torch/test" "$site/onnx/backend/test/data" \
  "$site"/torch/bin/test_* "$site"/torch/bin/*Test "$site"/torch/bin/protoc*
"$venv/bin/python" -P -m pip uninstall -q -y pip
if command -v strip >/dev/null 2>&1; then
  # Never a library that auditwheel grafted (in a *.libs folder) or patched to find one (its
  # RPATH names a *.libs folder): patchelf's layout does not survive strip ("ELF load command
  # address/offset not page-aligned" at import). A file strip cannot read is left as it is.
  find "$site" -type f \( -name '*.so' -o -name '*.so.*' \) ! -path '*.libs/*' | while read -r lib; do
    readelf -d "$lib" 2>/dev/null | grep -q -E 'R(UN)?PATH.*\.libs' && continue
    strip --strip-unneeded "$lib" 2>/dev/null || true
  done
fi
find "$venv" -depth -type d -name __pycache__ -exec rm -rf {} +
