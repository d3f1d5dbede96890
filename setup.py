"""The CPU engine's C kernels, built with the package; everything else is declared in pyproject.toml.

serving/inference/csrc/cpu_kernels.c is compiled into ``finserve/serving/inference/_kernels.abi3.so`` (a plain
C library, no Python API, opened with ctypes) when the wheel or an editable install is built: a serving process
never compiles anything. The source names its instruction sets per function (target attributes), so no -m flag
is passed and one binary loads on every x86-64 CPU. Its two parallel loops use a thread pool of its own (pthreads), not
OpenMP (csrc/cpu_kernels.c says why). Without a working
C compiler the package still installs, without the kernels (the engine then serves float16-packed or float32
weights and says why), unless FINSERVE_REQUIRE_KERNELS=1, which the CPU image build sets so that image never
ships without them.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -ffp-contract=off: no implicit fused multiply-adds (the explicit ones are the same in every tile shape,
# so a row's result never depends on its batch size).
FLAGS = ["-O3", "-g0", "-ffp-contract=off"]  # -g0: no debug info (sysconfig adds -g)
kernels = Extension(
    "finserve.serving.inference._kernels",
    sources=["serving/inference/csrc/cpu_kernels.c"],
    extra_compile_args=[*FLAGS, "-pthread"],
    extra_link_args=["-pthread"],
    libraries=["m"],
    # A plain C library that uses no Python API, loaded with ctypes: named and tagged for the stable ABI,
    # so one wheel serves every CPython the package supports (3.11 and 3.12).
    py_limited_api=True,
)


class BuildKernels(build_ext):
    """Builds the kernels; without a compiler, warns (or fails if required)."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - distutils raises several unrelated error types
            if os.environ.get("FINSERVE_REQUIRE_KERNELS") == "1":
                raise
            print(
                f"finserve: WARNING: the CPU kernels were not built ({exc}). The package works "
                "without them, slower: install a C compiler (gcc) and reinstall to get them.",
                file=sys.stderr,
            )


setup(
    ext_modules=[kernels],
    cmdclass={"build_ext": BuildKernels},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
