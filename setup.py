"""Builds gru_infer.runtime._core: the C core in src_c/ plus its Cython wrapper.

The core carries one kernel set per instruction set (src_c/isa_*.c); the x86
ones are compiled with target pragmas inside their own files and chosen at run
time, so the build itself stays baseline (no -march): a wheel runs on any
x86-64.  GRU_INFER_NATIVE=1 adds -march=native for local experiments.
GRU_NO_DISPATCH=1 builds the portable kernel set only (what non-x86 CPUs get).
Threads come from the core's own pthread pool (no OpenMP: see src_c/README.md).
The extension is stripped of debug symbols (a few MB -> a few hundred KB)
unless GRU_INFER_DEBUG=1.  GRU_INFER_SANITIZE=1 builds with AddressSanitizer
and UBSan (.ci/sanitizers.sh); an -O level in CFLAGS replaces our -O3.

Packaging (what the sdist and wheel carry) is in pyproject.toml and MANIFEST.in.
"""

import os
import sys

import setuptools

# pyproject.toml states its license the PEP 639 way (license = "MIT"), which
# setuptools before 77 rejects with a schema error that does not say this.
# `pip install` fetches a new one itself; an in-place `setup.py build_ext` with
# an older one builds the extension without reading the project metadata.
OLD_SETUPTOOLS = int(setuptools.__version__.split(".")[0]) < 77
if OLD_SETUPTOOLS and sys.argv[1:2] != ["build_ext"]:
    sys.exit(f"gru_infer needs setuptools>=77 to build (found {setuptools.__version__}): "
             "`pip install .` fetches it by itself; otherwise run "
             "`python3 -m pip install 'setuptools>=77'` first")

import numpy as np  # noqa: E402
from Cython.Build import cythonize  # noqa: E402
from setuptools import Extension, setup  # noqa: E402

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
if os.environ.get("GRU_INFER_DEBUG") == "1":
    compile_args.append("-g")
elif sys.platform.startswith("linux"):
    link_args.append("-Wl,--strip-debug")  # Python's own CFLAGS carry -g
# extra_compile_args come after CFLAGS on the command line: an optimisation level
# the user chose in CFLAGS must not be overridden by ours.
if any(flag.startswith("-O") for flag in os.environ.get("CFLAGS", "").split()):
    compile_args = [a for a in compile_args if not a.startswith("-O")]
if os.environ.get("GRU_INFER_SANITIZE") == "1":
    # AddressSanitizer + UndefinedBehaviorSanitizer (.ci/sanitizers.sh); -O1 and debug
    # symbols keep the reports readable, and any undefined behaviour aborts.
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer", "-g"]
    compile_args = [a for a in compile_args if not a.startswith("-O")] + ["-O1"] + sanitize
    link_args = [a for a in link_args if a != "-Wl,--strip-debug"] + sanitize

C_SOURCES = ["src_c/gru.c", "src_c/threads.c", "src_c/isa_generic.c", "src_c/isa_avx2.c",
             "src_c/isa_avx512.c", "src_c/isa_avx512bf16.c", "src_c/isa_neon.c"]
C_HEADERS = ["src_c/gru.h", "src_c/isa.h", "src_c/threads.h", "src_c/activations.h",
             "src_c/elementwise_impl.h", "src_c/panel_kernels_impl.h", "src_c/panel_reduced_impl.h",
             "src_c/template_end.h"]

extension = Extension(
    "gru_infer.runtime._core",
    sources=["src/gru_infer/runtime/_core.pyx"] + C_SOURCES,
    include_dirs=["src_c", np.get_include()],
    depends=C_HEADERS + ["src/gru_infer/runtime/_core.pxd"],
    define_macros=macros,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

ext_modules = cythonize([extension], language_level=3)
if OLD_SETUPTOOLS:  # build_ext only (above): no pyproject.toml, same extension
    from setuptools.dist import Distribution

    dist = Distribution({"name": "gru_infer", "ext_modules": ext_modules,
                         "package_dir": {"": "src"}, "script_name": sys.argv[0],
                         "script_args": sys.argv[1:]})
    dist.parse_command_line()
    dist.run_commands()
else:
    setup(ext_modules=ext_modules)
