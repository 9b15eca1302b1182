"""What flows between ops: a buffer of the call's concrete shape and, where
Keras semantics give it one, a (batch, time) uint8 mask buffer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Value:
    buffer: np.ndarray  # (batch, ...) in the call's shape
    mask: Optional[np.ndarray] = None  # (batch, time) uint8, Keras semantics


def c_array(a, dtype) -> np.ndarray:
    """a as a C-contiguous, aligned array of dtype (copied only when it is not one):
    what the C core reads through typed pointers.  Arrays rebuilt from pickled or
    framed bytes (a Model unpickled in a Dask or Ray worker) can start at any byte."""
    array = np.ascontiguousarray(a, dtype)
    return array if array.flags.aligned else array.copy()  # np.require: 8x the cost
