"""Builds gru_infer._core: the C core in src_c/ plus its Cython wrapper.

OpenMP is used when the compiler has it; otherwise the build goes on
single-threaded and says so.  GRU_INFER_NATIVE=1 adds -march=native (off by
default: a wheel must run on other x86-64 CPUs; the kernels pick AVX2+FMA at
run time anyway).  The extension is stripped of debug symbols (1.6 MB -> a
few hundred KB) unless GRU_INFER_DEBUG=1.

Packaging (what the sdist and wheel carry) is in pyproject.toml and MANIFEST.in.
"""

import os
import subprocess
import sys
import sysconfig
import tempfile

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


def compiler_has_openmp() -> bool:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            result = subprocess.run(
                cc.split() + ["-fopenmp", path, "-o", os.path.join(tmp, "probe")],
                capture_output=True,
            )
        except OSError:
            return False
        return result.returncode == 0


# -fno-trapping-math lets the compiler vectorise the branchless clamps in the
# activations (we never rely on floating-point exception flags).
compile_args = ["-O3", "-std=gnu99", "-fno-trapping-math", "-Wall", "-Wextra", "-Wno-unused-function"]
link_args = []
if compiler_has_openmp():
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
else:
    print("gru_infer: the C compiler has no OpenMP; building single-threaded", file=sys.stderr)
    compile_args.append("-Wno-unknown-pragmas")
if os.environ.get("GRU_INFER_NATIVE") == "1":
    compile_args.append("-march=native")
if os.environ.get("GRU_INFER_DEBUG") == "1":
    compile_args.append("-g")
elif sys.platform.startswith("linux"):
    link_args.append("-Wl,--strip-debug")  # Python's own CFLAGS carry -g

extension = Extension(
    "gru_infer.runtime._core",
    sources=["src/gru_infer/runtime/_core.pyx", "src_c/gru.c", "src_c/kernels.c"],
    include_dirs=["src_c", np.get_include()],
    depends=["src_c/gru.h", "src_c/gru_impl.h", "src_c/gru_instances.h", "src_c/kernels.h",
             "src_c/kernels_impl.h", "src_c/activations.h"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
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
