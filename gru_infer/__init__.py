"""gru_infer: fast, exact CPU inference for GRU networks from Keras and PyTorch."""

from ._threads import get_num_threads, set_num_threads
from .layers import GRU

__all__ = ["GRU", "get_num_threads", "set_num_threads"]
__version__ = "0.1.0"
