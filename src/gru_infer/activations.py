"""Element-wise activations of Dense / Activation layers, in NumPy, by the
names Keras writes in its configs.  (The GRU's own gate and candidate
activations run in the C core.)"""

from __future__ import annotations

import numpy as np
from scipy.special import erf


def _softmax(v):
    e = np.exp(v - np.max(v, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _log_softmax(v):
    shifted = v - np.max(v, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _elu(v):
    return np.where(v > 0, v, np.expm1(np.minimum(v, 0)))


def _selu(v):
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return scale * np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0)))


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _softplus(v):
    return np.logaddexp(v, 0)


def _hard_silu(v):
    return v * np.clip(v / 6 + 0.5, 0, 1)


_FUNCTIONS = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0),
    "relu6": lambda v: np.clip(v, 0, 6),
    "leaky_relu": lambda v: np.where(v >= 0, v, 0.2 * v),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "softplus": _softplus,
    "softsign": lambda v: v / (1 + np.abs(v)),
    "elu": _elu,
    "selu": _selu,
    "exponential": np.exp,
    "swish": lambda v: v * _sigmoid(v),
    "silu": lambda v: v * _sigmoid(v),
    "gelu": lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2).astype(v.dtype))),
    "gelu_approximate": lambda v: 0.5 * v * (1 + np.tanh(0.7978845608028654 * (v + 0.044715 * v**3))),
    "mish": lambda v: v * np.tanh(_softplus(v)),
    "hard_silu": _hard_silu,
    "hard_swish": _hard_silu,
    "hard_sigmoid_keras2": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
    "hard_sigmoid_keras3": lambda v: np.clip(v / 6 + 0.5, 0, 1),
}

NAMES = tuple(sorted(set(_FUNCTIONS) - {"hard_sigmoid_keras2", "hard_sigmoid_keras3"})) + (
    "hard_sigmoid",
)


def apply(name: str, values: np.ndarray, hard_sigmoid: str = "keras3") -> np.ndarray:
    """name(values), in values' dtype; hard_sigmoid picks the Keras version's definition."""
    if name == "hard_sigmoid":
        name = f"hard_sigmoid_{hard_sigmoid}"
    return np.asarray(_FUNCTIONS[name](values), dtype=values.dtype)


def check_name(name: str, where: str) -> str:
    if name not in NAMES:
        raise ValueError(f"{where}: unsupported activation {name!r}; supported: {', '.join(NAMES)}")
    return name
