"""Layers over the canonical weights.

GRU holds the canonical (ONNX-style) weights, derives once what the C core
prefers (folded biases, packed panels) and calls the core.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from . import _core
from ._checks import as_float_array, as_lengths, as_mask, check_shape
from ._threads import resolve_num_threads

GRU_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}
GRU_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "relu", "linear", "softsign")
HARD_SIGMOID_VERSIONS = ("keras2", "keras3")


def pack_panels(matrix: np.ndarray, hidden_size: int) -> np.ndarray:
    """(3H, K) gate blocks -> (3, P, K, PANEL): the packed kernel's layout.

    Each panel holds PANEL consecutive output rows of one gate transposed, so
    the kernel reads weights in one sequential stream; the last panel is zero
    padded.
    """
    panel = _core.PANEL
    k = matrix.shape[1]
    panels = -(-hidden_size // panel)
    padded = np.zeros((3, panels * panel, k), matrix.dtype)
    padded[:, :hidden_size] = matrix.reshape(3, hidden_size, k)
    return np.ascontiguousarray(padded.reshape(3, panels, panel, k).transpose(0, 1, 3, 2))


def _core_activation(name: str, hard_sigmoid: str) -> str:
    return f"hard_sigmoid_{hard_sigmoid}" if name == "hard_sigmoid" else name


class GRU:
    """One GRU layer (one or two directions) in the canonical ONNX form.

    W (D, 3H, I), R (D, 3H, H), B (D, 6H) = [Wb | Rb], gate blocks z, r, h.
    The weights' dtype (float32 or float64) is the dtype of the computation.
    Call: ``y, h_n = layer(x, initial_state=None, lengths=None, mask=None)`` with
    x (batch, time, I), y (batch, time, D*H), h_n (D, batch, H).
    """

    def __init__(
        self,
        W,
        R,
        B=None,
        *,
        linear_before_reset: bool = True,
        direction: str = "forward",
        activations: Sequence[str] = ("sigmoid", "tanh"),
        hard_sigmoid: str = "keras3",
        num_threads: Optional[int] = None,
    ):
        if direction not in GRU_DIRECTIONS:
            raise ValueError(f"direction must be one of {list(GRU_DIRECTIONS)}, got {direction!r}")
        if len(activations) != 2 or any(a not in GRU_ACTIVATIONS for a in activations):
            raise ValueError(
                f"activations must be (gate, candidate), each one of {list(GRU_ACTIVATIONS)}, "
                f"got {tuple(activations)!r}"
            )
        if hard_sigmoid not in HARD_SIGMOID_VERSIONS:
            raise ValueError(
                f"hard_sigmoid must be one of {list(HARD_SIGMOID_VERSIONS)}, got {hard_sigmoid!r}"
            )
        W_in = np.asarray(W)
        if W_in.dtype.kind != "f" or W_in.dtype.itemsize not in (4, 8):
            raise TypeError(f"W must be float32 or float64 (the compute dtype), got {W_in.dtype}")
        self.dtype = np.dtype(W_in.dtype.name)  # native byte order
        D = len(GRU_DIRECTIONS[direction])
        W = as_float_array(W_in, "W", self.dtype)
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] % 3 or W.shape[1] == 0 or W.shape[2] == 0:
            raise ValueError(
                f"W must have shape (num_directions={D}, 3*hidden_size, input_size) "
                f"with positive sizes, got {W.shape}"
            )
        H, I = W.shape[1] // 3, W.shape[2]
        R = as_float_array(R, "R", self.dtype)
        check_shape(R, (D, 3 * H, H), "R", "(num_directions, 3*hidden_size, hidden_size)")
        if B is not None:
            B = as_float_array(B, "B", self.dtype)
            check_shape(B, (D, 6 * H), "B", "(num_directions, 6*hidden_size)")
        self.W, self.R, self.B = W, R, B
        for array in (W, R, B):
            if array is not None:
                array.flags.writeable = False
        self.input_size, self.hidden_size, self.num_directions = I, H, D
        self.linear_before_reset = bool(linear_before_reset)
        self.direction = direction
        self.activations = tuple(activations)
        self.hard_sigmoid = hard_sigmoid
        self.num_threads = num_threads
        self._core = _core.GRUCore(
            self.dtype,
            I,
            H,
            [self._core_direction(d, reverse) for d, reverse in enumerate(GRU_DIRECTIONS[direction])],
            self.linear_before_reset,
            _core_activation(activations[0], hard_sigmoid),
            _core_activation(activations[1], hard_sigmoid),
        )

    def _core_direction(self, d: int, reverse: bool) -> tuple:
        """The arrays the core reads for direction d; biases folded where only added."""
        H = self.hidden_size
        if self.B is None:
            bias_x = np.zeros(3 * H, self.dtype)
            bias_hn = np.zeros(H, self.dtype)
        else:
            Wb, Rb = self.B[d, : 3 * H], self.B[d, 3 * H :]
            bias_x = Wb.copy()
            if self.linear_before_reset:
                bias_x[: 2 * H] += Rb[: 2 * H]  # b_hn sits inside r * (...): kept apart
                bias_hn = Rb[2 * H :].copy()
            else:
                bias_x += Rb
                bias_hn = np.zeros(H, self.dtype)
        return (
            self.W[d],
            self.R[d],
            pack_panels(self.W[d], H),
            pack_panels(self.R[d], H),
            bias_x,
            bias_hn,
            reverse,
        )

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    def __repr__(self) -> str:
        return (
            f"GRU(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"direction={self.direction!r}, linear_before_reset={self.linear_before_reset}, "
            f"activations={self.activations}, dtype={self.dtype})"
        )

    def __call__(self, x, initial_state=None, lengths=None, mask=None, *, num_threads=None):
        """y (batch, time, D*H), h_n (D, batch, H) for x (batch, time, input_size)."""
        x = as_float_array(x, "x", self.dtype)
        check_shape(x, (None, None, self.input_size), "x", "(batch, time, input_size)")
        batch, steps = x.shape[0], x.shape[1]
        D, H = self.num_directions, self.hidden_size
        if initial_state is not None:
            initial_state = as_float_array(initial_state, "initial_state", self.dtype)
            check_shape(initial_state, (D, batch, H), "initial_state",
                        "(num_directions, batch, hidden_size)")
        if lengths is not None:
            lengths = as_lengths(lengths, batch, steps)
        if mask is not None:
            mask = as_mask(mask, batch, steps)
        threads = resolve_num_threads(num_threads if num_threads is not None else self.num_threads)
        y = np.empty((batch, steps, D * H), self.dtype)
        h_n = np.empty((D, batch, H), self.dtype)
        self._core.forward(x, initial_state, lengths, mask, y, h_n, None, threads)
        return y, h_n
