"""The layers users put around GRUs: reshaping, pooling over time,
normalisation, 1-D convolutions, and picking one step of a sequence.

Per-row shapes as in layers.py: (time, features) for sequences.  Layers that
need the whole sequence say why in step_refusal (a stream cannot run them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import numpy as np

from . import activations
from .layers import Layer, as_weight, tensor

_WHOLE_SEQUENCE = "it needs the whole sequence"
PADDINGS = ("valid", "same", "causal")


def _known_product(dims) -> Optional[int]:
    return None if any(d is None for d in dims) else math.prod(dims)


@dataclass(frozen=True, eq=False)
class Flatten(Layer):
    """(d1, d2, ...) -> (d1 * d2 * ...,) per row (Keras Flatten)."""

    kind: ClassVar[str] = "flatten"
    mask_rule: ClassVar[str] = "none"
    step_refusal: ClassVar[Optional[str]] = _WHOLE_SEQUENCE + " (it folds time into features)"

    def output_shapes(self, shapes):
        return [(_known_product(shapes[0]),)]


@dataclass(frozen=True, eq=False)
class Reshape(Layer):
    """Per row to target_shape (Keras Reshape; one -1 may stand for the rest)."""

    kind: ClassVar[str] = "reshape"
    mask_rule: ClassVar[str] = "none"
    step_refusal: ClassVar[Optional[str]] = _WHOLE_SEQUENCE + " (it reshapes across time)"
    target_shape: tuple = ()

    def __post_init__(self):
        target = tuple(int(d) for d in self.target_shape)
        if not target or list(target).count(-1) > 1 or any(d == 0 or d < -1 for d in target):
            raise ValueError(f"{self._where()}: target_shape must be positive sizes and at most "
                             f"one -1, got {self.target_shape}")
        object.__setattr__(self, "target_shape", target)

    def output_shapes(self, shapes):
        total = _known_product(shapes[0])
        known = math.prod(d for d in self.target_shape if d != -1)
        if total is None:
            return [tuple(None if d == -1 else d for d in self.target_shape)]
        if (-1 in self.target_shape and total % known) or (
                -1 not in self.target_shape and total != known):
            raise ValueError(f"{self._where()}: cannot reshape per-row shape {shapes[0]} "
                             f"({total} values) to {self.target_shape}")
        return [tuple(total // known if d == -1 else d for d in self.target_shape)]


@dataclass(frozen=True, eq=False)
class Permute(Layer):
    """Per-row axes reordered (Keras Permute: dims count from 1, batch left out)."""

    kind: ClassVar[str] = "permute"
    mask_rule: ClassVar[str] = "none"
    dims: tuple = (1,)

    def __post_init__(self):
        dims = tuple(int(d) for d in self.dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"{self._where()}: dims must be a permutation of 1..{len(dims)}, "
                             f"got {self.dims}")
        object.__setattr__(self, "dims", dims)

    @property
    def step_refusal(self) -> Optional[str]:  # type: ignore[override]
        return None if self.dims[0] == 1 else _WHOLE_SEQUENCE + " (it moves the time axis)"

    def output_shapes(self, shapes):
        if len(shapes[0]) != len(self.dims):
            raise ValueError(f"{self._where()}: dims {self.dims} do not fit per-row shape "
                             f"{shapes[0]}")
        return [tuple(shapes[0][d - 1] for d in self.dims)]


@dataclass(frozen=True, eq=False)
class RepeatVector(Layer):
    """(features,) -> (n, features): the vector repeated n times (Keras RepeatVector)."""

    kind: ClassVar[str] = "repeat_vector"
    mask_rule: ClassVar[str] = "none"
    step_refusal: ClassVar[Optional[str]] = "it makes a sequence out of one vector"
    n: int = 1

    def output_shapes(self, shapes):
        if len(shapes[0]) != 1:
            raise ValueError(f"{self._where()} takes vectors (features,), got {shapes[0]}")
        return [(self.n,) + tuple(shapes[0])]


POOL_MODES = ("average", "max")


@dataclass(frozen=True, eq=False)
class GlobalPooling1D(Layer):
    """Average or maximum over time (Keras GlobalAveragePooling1D /
    GlobalMaxPooling1D).  mask_aware: masked steps are left out (Keras's
    masked average; each Keras version's rule for max is set by the reader)."""

    kind: ClassVar[str] = "global_pooling_1d"
    mask_rule: ClassVar[str] = "none"
    step_refusal: ClassVar[Optional[str]] = _WHOLE_SEQUENCE + " (it pools over time)"
    mode: str = "average"
    mask_aware: bool = True
    keepdims: bool = False

    def __post_init__(self):
        if self.mode not in POOL_MODES:
            raise ValueError(f"{self._where()}: mode must be one of {POOL_MODES}, got {self.mode!r}")

    def output_shapes(self, shapes):
        if len(shapes[0]) != 2:
            raise ValueError(f"{self._where()} takes sequences (time, features), got {shapes[0]}")
        return [((1,) if self.keepdims else ()) + (shapes[0][1],)]


@dataclass(frozen=True, eq=False)
class Pooling1D(Layer):
    """Max or average over windows of time (Keras MaxPooling1D /
    AveragePooling1D; "same" averages over the steps inside the input only)."""

    kind: ClassVar[str] = "pooling_1d"
    mask_rule: ClassVar[str] = "none"
    step_refusal: ClassVar[Optional[str]] = _WHOLE_SEQUENCE + " (it pools windows of time)"
    mode: str = "max"
    pool_size: int = 2
    strides: int = 2
    padding: str = "valid"

    def __post_init__(self):
        if self.mode not in POOL_MODES or self.padding not in ("valid", "same") or \
                self.pool_size < 1 or self.strides < 1:
            raise ValueError(f"{self._where()}: mode {self.mode!r}, pool_size {self.pool_size}, "
                             f"strides {self.strides}, padding {self.padding!r} not supported")

    def output_length(self, steps: int) -> int:
        if self.padding == "same":
            return -(-steps // self.strides)
        return max(0, (steps - self.pool_size) // self.strides + 1)

    def output_shapes(self, shapes):
        if len(shapes[0]) != 2:
            raise ValueError(f"{self._where()} takes sequences (time, features), got {shapes[0]}")
        steps = shapes[0][0]
        return [(None if steps is None else self.output_length(steps), shapes[0][1])]


@dataclass(frozen=True, eq=False)
class BatchNormalization(Layer):
    """Inference-form batch norm over the last axis:
    y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta."""

    kind: ClassVar[str] = "batch_normalization"
    moving_mean: np.ndarray = tensor()
    moving_variance: np.ndarray = tensor()
    gamma: Optional[np.ndarray] = tensor(optional=True)
    beta: Optional[np.ndarray] = tensor(optional=True)
    epsilon: float = 1e-3

    def __post_init__(self):
        size = np.size(self.moving_mean)
        for name in ("moving_mean", "moving_variance", "gamma", "beta"):
            value = getattr(self, name)
            if value is not None:
                value = as_weight(np.reshape(value, -1), f"{self._where()} {name}", 1)
                if value.shape != (size,):
                    raise ValueError(f"{self._where()}: {name} has shape {value.shape}, "
                                     f"expected ({size},)")
                object.__setattr__(self, name, value)

    def scale_and_shift(self) -> tuple:
        """(scale, shift) with y = x * scale + shift, in float64."""
        scale = 1 / np.sqrt(self.moving_variance.astype(np.float64) + self.epsilon)
        if self.gamma is not None:
            scale = scale * self.gamma
        shift = -self.moving_mean * scale
        if self.beta is not None:
            shift = shift + self.beta
        return scale, shift

    def output_shapes(self, shapes):
        if shapes[0][-1] not in (None, self.moving_mean.size):
            raise ValueError(f"{self._where()} normalises {self.moving_mean.size} features, got "
                             f"per-row shape {shapes[0]}")
        return [shapes[0]]


NORM_MODES = ("standard", "rms_scaling", "rms")


@dataclass(frozen=True, eq=False)
class LayerNormalization(Layer):
    """Normalisation over the last axis (Keras LayerNormalization, PyTorch
    nn.LayerNorm), mode:
      "standard"     y = (x - mean) / sqrt(var + epsilon) * gamma + beta
      "rms_scaling"  y = x / sqrt(var + epsilon) * gamma     (Keras 3 rms_scaling=True)
      "rms"          y = x / sqrt(mean(x^2) + epsilon) * gamma   (Keras 3 RMSNormalization)"""

    kind: ClassVar[str] = "layer_normalization"
    gamma: Optional[np.ndarray] = tensor(optional=True)
    beta: Optional[np.ndarray] = tensor(optional=True)
    epsilon: float = 1e-3
    size: int = 0
    mode: str = "standard"

    def __post_init__(self):
        if self.mode not in NORM_MODES:
            raise ValueError(f"{self._where()}: mode must be one of {NORM_MODES}, got "
                             f"{self.mode!r}")
        for name in ("gamma", "beta"):
            value = getattr(self, name)
            if value is not None:
                value = as_weight(np.reshape(value, -1), f"{self._where()} {name}", 1)
                if self.size and value.shape != (self.size,):
                    raise ValueError(f"{self._where()}: {name} has shape {value.shape}, "
                                     f"expected ({self.size},)")
                object.__setattr__(self, name, value)
                object.__setattr__(self, "size", value.size)

    def output_shapes(self, shapes):
        if self.size and shapes[0][-1] not in (None, self.size):
            raise ValueError(f"{self._where()} normalises {self.size} features, got per-row "
                             f"shape {shapes[0]}")
        return [shapes[0]]


@dataclass(frozen=True, eq=False)
class Conv1D(Layer):
    """A 1-D convolution over time (Keras Conv1D, PyTorch nn.Conv1d as a
    cross-correlation): kernel (size, in_channels / groups, filters).
    padding: "valid", "same", "causal" (left padding only), or explicit
    (left, right) zero padding."""

    kind: ClassVar[str] = "conv1d"
    mask_rule: ClassVar[str] = "none"
    kernel: np.ndarray = tensor()
    bias: Optional[np.ndarray] = tensor(optional=True)
    strides: int = 1
    padding: Union[str, tuple] = "valid"
    dilation: int = 1
    groups: int = 1
    activation: str = "linear"

    def __post_init__(self):
        kernel = as_weight(self.kernel, f"{self._where()} kernel", 3)
        object.__setattr__(self, "kernel", kernel)
        if self.bias is not None:
            bias = as_weight(np.reshape(self.bias, -1), f"{self._where()} bias", 1)
            if bias.shape != (kernel.shape[2],):
                raise ValueError(f"{self._where()}: bias has shape {bias.shape}, expected "
                                 f"({kernel.shape[2]},)")
            object.__setattr__(self, "bias", bias.astype(kernel.dtype, copy=False))
        padding = self.padding if isinstance(self.padding, str) else tuple(int(p) for p in self.padding)
        if (isinstance(padding, str) and padding not in PADDINGS) or (
                isinstance(padding, tuple) and (len(padding) != 2 or min(padding) < 0)):
            raise ValueError(f"{self._where()}: padding must be one of {PADDINGS} or (left, right), "
                             f"got {self.padding!r}")
        if self.strides < 1 or self.dilation < 1 or self.groups < 1 or kernel.shape[2] % self.groups:
            raise ValueError(f"{self._where()}: strides {self.strides}, dilation {self.dilation}, "
                             f"groups {self.groups} do not fit kernel {kernel.shape}")
        object.__setattr__(self, "padding", padding)
        object.__setattr__(self, "activation", activations.check(self.activation, self._where()))

    @property
    def in_channels(self) -> int:
        return self.kernel.shape[1] * self.groups

    @property
    def span(self) -> int:
        """How many earlier steps each output step reaches back to."""
        return self.dilation * (self.kernel.shape[0] - 1)

    @property
    def step_refusal(self) -> Optional[str]:  # type: ignore[override]
        if self.padding == "causal" and self.strides == 1:
            return None  # a stream keeps the last `span` inputs
        return _WHOLE_SEQUENCE + " (a convolution that looks ahead or strides over time)"

    def pads(self, steps: int) -> tuple:
        """(left, right) zero padding for an input of steps."""
        span = self.dilation * (self.kernel.shape[0] - 1)
        if isinstance(self.padding, tuple):
            return self.padding
        if self.padding == "causal":
            return span, 0
        if self.padding == "same":
            out = -(-steps // self.strides)
            total = max(0, (out - 1) * self.strides + span + 1 - steps)
            return total // 2, total - total // 2
        return 0, 0

    def output_length(self, steps: int) -> int:
        left, right = self.pads(steps)
        span = self.dilation * (self.kernel.shape[0] - 1)
        return max(0, (steps + left + right - span - 1) // self.strides + 1)

    def output_shapes(self, shapes):
        shape = shapes[0]
        if len(shape) != 2 or shape[1] not in (None, self.in_channels):
            raise ValueError(f"{self._where()} takes (time, {self.in_channels}) per row, got "
                             f"{shape}")
        steps = shape[0]
        return [(None if steps is None else self.output_length(steps), self.kernel.shape[2])]


@dataclass(frozen=True, eq=False)
class Select(Layer):
    """One index along a per-row axis, the axis removed (PyTorch out[:, -1],
    aten.select): axis 0 is time."""

    kind: ClassVar[str] = "select"
    mask_rule: ClassVar[str] = "none"
    axis: int = 0
    index: int = -1

    @property
    def step_refusal(self) -> Optional[str]:  # type: ignore[override]
        if self.axis == 0 and self.index != -1:
            return f"it picks step {self.index} of the whole sequence"
        return None

    def output_shapes(self, shapes):
        shape = list(shapes[0])
        if not -len(shape) <= self.axis < len(shape):
            raise ValueError(f"{self._where()}: axis {self.axis} out of range for {tuple(shape)}")
        axis = self.axis % len(shape)
        size = shape[axis]
        if size is not None and not -size <= self.index < size:
            raise ValueError(f"{self._where()}: index {self.index} out of range for size {size}")
        del shape[axis]
        return [tuple(shape)]


EXTRA_LAYERS = (Flatten, Reshape, Permute, RepeatVector, GlobalPooling1D, Pooling1D,
                BatchNormalization, LayerNormalization, Conv1D, Select)
