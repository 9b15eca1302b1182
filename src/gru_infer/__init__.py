"""gru_infer: fast, exact CPU inference for GRU networks from Keras and PyTorch.

The public names are imported on first use, so `import gru_infer` is cheap.
"""

import os as _os

# The core's threads meet every timestep.  GNU OpenMP's default wait spins
# ~300k times before sleeping; on a busy machine a spinning thread takes the
# core its late partner needs.  A shorter spin covers a step's wait and costs
# nothing on a quiet machine.  Only when the user set neither, and before
# libgomp is loaded (it reads these once).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "20000"

__version__ = "0.2.0"

_EXPORTS = {
    "GRU": "runtime.layer",
    "Model": "runtime.model",
    "Stream": "runtime.model",
    "convert": "api",
    "load": "api",
    "from_torch": "api",
    "show_config": "config",
    "get_num_threads": "config",
    "set_num_threads": "_threads",
    "GruInferError": "errors",
    "FormatError": "errors",
    "ConversionError": "errors",
    "InputError": "errors",
    "CoreUnavailableError": "errors",
    "GruInferWarning": "errors",
    "ModelSpec": "spec.graph",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gru_infer' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
