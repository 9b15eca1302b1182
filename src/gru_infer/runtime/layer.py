"""gru_infer.GRU: one GRU layer on canonical weights, called directly."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import numpy as np

from .._threads import resolve_num_threads
from ..errors import InputError, InputTypeError
from ..spec import activations as _acts
from ..spec.layers import GRUCell
from ..spec.precision import check_precision, check_storable
from .model import _runtime, check_lengths
from .values import c_array

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

GRU_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}

# Scratch memory for the core, one buffer per thread, reused across calls: a
# fresh multi-megabyte buffer per call cost page faults on every call.
_scratch = threading.local()
_SCRATCH_KEEP_BYTES = 64 << 20  # larger one-off needs are not kept


def _scratch_buffer(nbytes: int) -> np.ndarray:
    buffer = getattr(_scratch, "buffer", None)
    if buffer is not None and buffer.nbytes >= nbytes:
        return buffer
    buffer = np.empty(max(nbytes, 1), np.uint8)
    if nbytes <= _SCRATCH_KEEP_BYTES:
        _scratch.buffer = buffer
    return buffer


def _float_array(value, name: str, dtype) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise InputTypeError(f"{name} must hold floating-point values, got dtype {array.dtype}")
    return c_array(array, dtype)


def _check_shape(array, expected: tuple, name: str, meaning: str) -> None:
    if array.ndim != len(expected) or any(e is not None and e != s
                                          for e, s in zip(expected, array.shape)):
        want = ", ".join("any" if e is None else str(e) for e in expected)
        raise InputError(f"{name} must have shape {meaning} = ({want}), got {tuple(array.shape)}")


class GRU:
    """One GRU layer (one or two directions) in the canonical ONNX form.

    W (D, 3H, I), R (D, 3H, H), B (D, 6H) = [Wb | Rb], gate blocks z, r, h.
    The weights' dtype (float32 or float64) is the dtype of the computation.
    precision: how the weights are stored ("native"; "bfloat16", "int8": float32
    only, see Model.with_precision).
    Call: ``y, h_n = layer(x, initial_state=None, lengths=None, mask=None)`` with
    x (batch, time, I), y (batch, time, D*H), h_n (D, batch, H).
    """

    def __init__(self, W: "ArrayLike", R: "ArrayLike", B: Optional["ArrayLike"] = None, *,
                 linear_before_reset: bool = True, direction: str = "forward",
                 activations: Sequence[str] = ("sigmoid", "tanh"), hard_sigmoid: str = "keras3",
                 num_threads: Optional[int] = None, precision: str = "native") -> None:
        if direction not in GRU_DIRECTIONS:
            raise InputError(f"direction must be one of {list(GRU_DIRECTIONS)}, got {direction!r}")
        if hard_sigmoid not in _acts.HARD_SIGMOID_VERSIONS:
            raise InputError(f"hard_sigmoid must be one of {list(_acts.HARD_SIGMOID_VERSIONS)}, "
                             f"got {hard_sigmoid!r}")
        if len(activations) != 2:
            raise InputError(f"activations must be (gate, candidate), got {tuple(activations)!r}")
        try:
            acts = tuple(_acts.check(a, "GRU", gate=True, hard_sigmoid=hard_sigmoid)
                         for a in activations)
        except ValueError as error:
            raise InputError(str(error)) from None
        W_in = np.asarray(W)
        if W_in.dtype.kind != "f" or W_in.dtype.itemsize not in (4, 8):
            raise InputTypeError(f"W must be float32 or float64 (the compute dtype), got "
                                 f"{W_in.dtype}")
        self.dtype = np.dtype(W_in.dtype.name)  # native byte order
        self.precision = check_precision(precision, self.dtype)
        D = len(GRU_DIRECTIONS[direction])
        W = _float_array(W_in, "W", self.dtype)
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] % 3 or 0 in W.shape:
            raise InputError(f"W must have shape (num_directions={D}, 3*hidden_size, input_size) "
                             f"with positive sizes, got {W.shape}")
        H, I = W.shape[1] // 3, W.shape[2]
        R = _float_array(R, "R", self.dtype)
        _check_shape(R, (D, 3 * H, H), "R", "(num_directions, 3*hidden_size, hidden_size)")
        if B is not None:
            B = _float_array(B, "B", self.dtype)
            _check_shape(B, (D, 6 * H), "B", "(num_directions, 6*hidden_size)")
        check_storable(precision, W, "W")
        check_storable(precision, R, "R")
        self.W, self.R, self.B = W, R, B
        for array in (W, R, B):
            if array is not None:
                array.flags.writeable = False
        self.input_size, self.hidden_size, self.num_directions = I, H, D
        self.linear_before_reset = bool(linear_before_reset)
        self.direction = direction
        self.activations = acts
        self.hard_sigmoid = hard_sigmoid
        self.num_threads = num_threads
        self._cells = [GRUCell(W[d], R[d], None if B is None else B[d],
                               linear_before_reset=self.linear_before_reset, activations=acts)
                       for d in range(D)]
        self._packed = {}
        self._core_module = None
        self._lock = threading.Lock()

    def _core(self):
        _core = self._core_module
        if _core is None:
            _core = self._core_module = _runtime()._core
        isa = _core.ISA_EPOCH  # weights are packed again after a kernel-set switch
        packed = self._packed.get(isa)
        if packed is None:
            with self._lock:
                packed = self._packed.get(isa)
                if packed is None:
                    reverse = GRU_DIRECTIONS[self.direction]
                    packed = self._packed[isa] = _core.PackedGRU(
                        self.dtype, [(c.W, c.R, c.B, r) for c, r in zip(self._cells, reverse)],
                        self.linear_before_reset, self.activations[0], self.activations[1],
                        self.precision)
        return packed

    @property
    def output_size(self) -> int:
        """Features of y: num_directions * hidden_size."""
        return self.num_directions * self.hidden_size

    def __repr__(self) -> str:
        return (f"GRU(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"direction={self.direction!r}, linear_before_reset={self.linear_before_reset}, "
                f"activations={self.activations}, dtype={self.dtype}"
                + ("" if self.precision == "native" else f", precision={self.precision!r}") + ")")

    def __call__(self, x: "ArrayLike", initial_state: Optional["ArrayLike"] = None,
                 lengths: Optional["ArrayLike"] = None, mask: Optional["ArrayLike"] = None, *,
                 num_threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """y (batch, time, D*H), h_n (D, batch, H) for x (batch, time, input_size).

        initial_state: (D, batch, H), zeros by default.  lengths: (batch,)
        PyTorch packed-sequence lengths (outputs past a row's length are 0).
        mask: (batch, time) booleans, Keras masking (True = a valid step; the
        state is carried over masked steps).  num_threads: this call's thread
        count (default: the layer's, else gru_infer.get_num_threads())."""
        packed = self._core()
        x = _float_array(x, "x", self.dtype)
        _check_shape(x, (None, None, self.input_size), "x", "(batch, time, input_size)")
        batch, steps = x.shape[0], x.shape[1]
        D, H = self.num_directions, self.hidden_size
        if initial_state is not None:
            initial_state = _float_array(initial_state, "initial_state", self.dtype)
            _check_shape(initial_state, (D, batch, H), "initial_state",
                         "(num_directions, batch, hidden_size)")
        if lengths is not None:
            lengths = c_array(check_lengths(lengths, batch, steps), np.int64)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype.kind not in "biu":
                raise InputTypeError(f"mask must be boolean (True = valid step), got dtype "
                                     f"{mask.dtype}")
            _check_shape(mask, (batch, steps), "mask", "(batch, time)")
            mask = np.ascontiguousarray(mask != 0, dtype=np.uint8)
        threads = resolve_num_threads(num_threads if num_threads is not None else self.num_threads) or 0
        y = np.empty((batch, steps, D * H), self.dtype)
        h_n = np.empty((D, batch, H), self.dtype)
        workspace = _scratch_buffer(packed.workspace_bytes(batch, steps, threads))
        packed.call(x, initial_state, lengths, mask, y, h_n, workspace, threads)
        return y, h_n



