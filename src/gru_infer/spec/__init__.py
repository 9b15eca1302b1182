"""The model description: plain data, NumPy only.  Converters produce it, the
weight file stores it, the runtime compiles it."""

from .graph import INPUT, Input, ModelSpec, Node, sequential
from .kinds import LAYER_KINDS
from .layers import GRUCell, Layer, Recurrent

__all__ = ["INPUT", "Input", "ModelSpec", "Node", "sequential", "LAYER_KINDS", "GRUCell", "Layer",
           "Recurrent"]
