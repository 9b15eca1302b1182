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

from ._version import __version__

# Type checkers see the public names as they are (the runtime loads them on
# first use, below).  A local constant, not typing's: importing typing costs time.
TYPE_CHECKING = False
if TYPE_CHECKING:  # `name as name`: re-exported
    from ._threads import set_num_threads as set_num_threads
    from .api import convert as convert
    from .api import from_torch as from_torch
    from .api import load as load
    from .config import get_num_threads as get_num_threads
    from .config import show_config as show_config
    from .errors import ConversionError as ConversionError
    from .errors import CoreUnavailableError as CoreUnavailableError
    from .errors import FormatError as FormatError
    from .errors import GruInferError as GruInferError
    from .errors import GruInferWarning as GruInferWarning
    from .errors import InputError as InputError
    from .runtime.layer import GRU as GRU
    from .runtime.model import Model as Model
    from .runtime.model import Stream as Stream
    from .spec.graph import ModelSpec as ModelSpec

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
