"""Builds gru_infer._core: the C core in src_c/ plus its Cython wrapper.

The core carries one kernel set per instruction set (src_c/isa_*.c); the x86
ones are compiled with target pragmas inside their own files and chosen at run
time, so the build itself stays baseline (no -march): a wheel runs on any
x86-64.  GRU_INFER_NATIVE=1 adds -march=native for local experiments.
GRU_NO_DISPATCH=1 builds the portable kernel set only (what non-x86 CPUs get).
Threads come from the core's own pthread pool (no OpenMP).
"""

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# -fno-trapping-math lets the compiler vectorise the branchless clamps in the
# activations (we never rely on floating-point exception flags).
compile_args = ["-O3", "-std=gnu99", "-fno-trapping-math", "-pthread", "-Wall", "-Wextra",
                "-Wno-unused-function"]
link_args = ["-pthread"]
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
if os.environ.get("GRU_INFER_NATIVE") == "1":
    compile_args.append("-march=native")
if os.environ.get("GRU_NO_DISPATCH") == "1":
    macros.append(("GRU_NO_DISPATCH", "1"))

C_SOURCES = ["src_c/gru.c", "src_c/threads.c", "src_c/isa_generic.c", "src_c/isa_avx2.c",
             "src_c/isa_avx512.c"]
C_HEADERS = ["src_c/gru.h", "src_c/isa.h", "src_c/threads.h", "src_c/activations.h",
             "src_c/elementwise_impl.h", "src_c/panel_kernels_impl.h"]

extension = Extension(
    "gru_infer._core",
    sources=["src/gru_infer/_core.pyx"] + C_SOURCES,
    include_dirs=["src_c", np.get_include()],
    depends=C_HEADERS,
    define_macros=macros,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(ext_modules=cythonize([extension], language_level=3), package_dir={"": "src"})
