"""gru_infer: fast, exact CPU inference for GRU networks from Keras and PyTorch."""

from ._threads import get_num_threads, set_num_threads
from .convert import convert
from .convert.torch import from_torch
from .layers import GRU
from .model import Model
from .stream import Stream
from .weights import load

__all__ = ["GRU", "Model", "Stream", "convert", "from_torch", "load", "get_num_threads", "set_num_threads"]
__version__ = "0.1.0"
