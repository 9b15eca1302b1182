"""show_config(): what this build of gru_infer runs on."""

from __future__ import annotations

import os
import sys


def config() -> dict:
    """The build and machine facts: version, kernels, OpenMP, threads."""
    from . import __version__
    from ._threads import available_cores, get_num_threads

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
                openmp=_core.has_openmp())
    if not info["openmp"]:
        info["default_threads"] = 1
    return info


def format_config(info: dict) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{k.ljust(width)}  {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in info.items())


def show_config(file=None) -> dict:
    """Print how this gru_infer is built (kernel chosen for this CPU, the
    kernels it can run, OpenMP, default thread count) and return it as a dict."""
    info = config()
    print(format_config(info), file=file or sys.stdout)
    return info
