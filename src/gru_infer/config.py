"""show_config(): what this build of gru_infer runs on; get_num_threads():
the thread count a call runs on by default."""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Dict, Optional


def _core_has_threads() -> bool:
    """False for a compiled core built without its thread pool (it runs one
    thread); True otherwise, and where the core cannot load (nothing runs there)."""
    try:
        from .runtime import _core
    except ImportError:
        return True
    return bool(_core.has_threads())


def get_num_threads() -> int:
    """The most threads a call runs on by default: set_num_threads' value,
    else the environment's (OMP_NUM_THREADS, the CPU affinity mask, a cgroup
    quota); always 1 in a build without threads.  Loads the compiled core."""
    from . import _threads

    return _threads.get_num_threads() if _core_has_threads() else 1


def config() -> Dict[str, Any]:
    """The build and machine facts: version, kernels, OpenMP (off: the core has
    its own thread pool, see src_c/README.md), threads."""
    from ._threads import available_cores
    from ._version import __version__

    info = {"version": __version__, "python": sys.version.split()[0],
            "cores_available": available_cores(), "default_threads": get_num_threads(),
            "isa_override": os.environ.get("GRU_INFER_ISA")}
    try:
        from .runtime import _core
    except ImportError as error:
        info.update(core="unavailable", core_error=str(error))
        return info
    info.update(core="loaded", kernel=_core.isa_current(),
                kernels=[name for name, ok in _core.isa_list() if ok],
                kernels_compiled=[name for name, _ in _core.isa_list()],
                openmp=_core.has_openmp(),
                threads="own pool (pthreads)" if _core.has_threads() else "none (one thread)")
    return info


def format_config(info: Dict[str, Any]) -> str:
    """info as aligned `key  value` lines."""
    width = max(len(k) for k in info)
    return "\n".join(f"{k.ljust(width)}  {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in info.items())


def show_config(file: Optional[IO[str]] = None) -> Dict[str, Any]:
    """Print how this gru_infer is built (kernel chosen for this CPU, the
    kernels it can run, OpenMP, default thread count) and return it as a dict."""
    info = config()
    print(format_config(info), file=file or sys.stdout)
    return info
