"""gru_infer: fast, exact CPU inference for GRU networks from Keras and PyTorch."""

import os as _os

# The core's threads meet at a barrier every timestep.  GNU OpenMP's default
# wait spins ~300k times before sleeping; on a busy machine a spinning thread
# takes the core its late partner needs (W1 p99 4 ms instead of 60 us in
# benchmarks/ beside a busy process).  A shorter spin covers a step's wait
# and costs nothing on a quiet machine.  Only when the user set neither, and
# only if libgomp is not loaded yet (it reads these once).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "20000"

from ._threads import get_num_threads, set_num_threads
from .converters import convert
from .converters.torch import from_torch
from .layers import GRU
from .model import Model
from .stream import Stream
from .weights import load

__all__ = ["GRU", "Model", "Stream", "convert", "from_torch", "load", "get_num_threads", "set_num_threads"]
__version__ = "0.1.0"
