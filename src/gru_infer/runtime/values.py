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
