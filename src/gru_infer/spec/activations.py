"""The activation table: every activation gru_infer knows, once.

Each entry says what the activation computes (a NumPy function, the ground
truth for tests and the fallback for the runtime), whether the C core has it
under the same name (it then runs inside the core's own loops), whether it may
be a GRU gate or candidate activation (the core applies those inside the cell),
and whether it works over each row (softmax) rather than element by element.

hard_sigmoid has two definitions: Keras 2's clip(0.2 x + 0.5, 0, 1) and
Keras 3's (also PyTorch's) clip(x / 6 + 0.5, 0, 1).  A spec never says plain
"hard_sigmoid": converters resolve it by the writer's version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ActivationInfo:
    name: str
    function: Callable[[np.ndarray], np.ndarray]
    core: bool = False  # the C core has it, under this name
    gate: bool = False  # may be a GRU gate / candidate activation
    rowwise: bool = False  # over the last axis (softmax), not element-wise


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


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


def _softplus(v):
    return np.logaddexp(v, 0)


def _hard_silu(v):
    return v * np.clip(v / 6 + 0.5, 0, 1)


def _gelu(v):
    from scipy.special import erf  # only when a gelu is run: keeps this module NumPy-only

    return 0.5 * v * (1 + erf(v / math.sqrt(2)).astype(v.dtype))


def _gelu_tanh(v):
    return 0.5 * v * (1 + np.tanh(0.7978845608028654 * (v + 0.044715 * v**3)))


_TABLE = (
    ActivationInfo("linear", lambda v: v, core=True, gate=True),
    ActivationInfo("sigmoid", _sigmoid, core=True, gate=True),
    ActivationInfo("tanh", np.tanh, core=True, gate=True),
    # v < 0 ? 0 : v keeps NaN as NaN, as the core does
    ActivationInfo("relu", lambda v: np.where(v < 0, 0, v), core=True, gate=True),
    ActivationInfo("softsign", lambda v: v / (1 + np.abs(v)), core=True, gate=True),
    ActivationInfo("hard_sigmoid_keras2", lambda v: np.clip(0.2 * v + 0.5, 0, 1), core=True,
                   gate=True),
    ActivationInfo("hard_sigmoid_keras3", lambda v: np.clip(v / 6 + 0.5, 0, 1), core=True,
                   gate=True),
    ActivationInfo("softmax", _softmax, core=True, rowwise=True),
    ActivationInfo("log_softmax", _log_softmax, core=True, rowwise=True),
    ActivationInfo("relu6", lambda v: np.clip(v, 0, 6)),
    ActivationInfo("leaky_relu", lambda v: np.where(v >= 0, v, 0.2 * v)),
    ActivationInfo("softplus", _softplus),
    ActivationInfo("elu", _elu),
    ActivationInfo("selu", _selu),
    ActivationInfo("exponential", np.exp),
    ActivationInfo("swish", lambda v: v * _sigmoid(v)),
    ActivationInfo("silu", lambda v: v * _sigmoid(v)),
    ActivationInfo("gelu", _gelu),
    ActivationInfo("gelu_approximate", _gelu_tanh),
    ActivationInfo("mish", lambda v: v * np.tanh(_softplus(v))),
    ActivationInfo("hard_silu", _hard_silu),
    ActivationInfo("hard_swish", _hard_silu),
)
ACTIVATIONS = {a.name: a for a in _TABLE}
HARD_SIGMOID_VERSIONS = ("keras2", "keras3")
# Names a user or a framework config may give (hard_sigmoid resolved by version).
NAMES = tuple(sorted(ACTIVATIONS)) + ("hard_sigmoid",)
GATE_NAMES = tuple(a.name for a in _TABLE if a.gate) + ("hard_sigmoid",)


def resolve(name: str, hard_sigmoid: str = "keras3") -> str:
    """The table name for name ("hard_sigmoid" by the Keras version that wrote it)."""
    if name == "hard_sigmoid":
        if hard_sigmoid not in HARD_SIGMOID_VERSIONS:
            raise ValueError(f"hard_sigmoid must be one of {list(HARD_SIGMOID_VERSIONS)}, "
                             f"got {hard_sigmoid!r}")
        return f"hard_sigmoid_{hard_sigmoid}"
    return name


def check(name: str, where: str, *, gate: bool = False, hard_sigmoid: str = "keras3") -> str:
    """The resolved table name, or a ValueError naming where and what is supported."""
    resolved = resolve(name, hard_sigmoid) if isinstance(name, str) else name
    info = ACTIVATIONS.get(resolved) if isinstance(resolved, str) else None
    if info is None or (gate and not info.gate):
        allowed = GATE_NAMES if gate else NAMES
        raise ValueError(f"{where}: unsupported {'GRU ' if gate else ''}activation {name!r}; "
                         f"supported: {', '.join(allowed)}")
    return resolved


def apply(name: str, values: np.ndarray) -> np.ndarray:
    """name(values) in values' dtype (NumPy: the reference and the fallback)."""
    return np.asarray(ACTIVATIONS[name].function(values), dtype=values.dtype)
