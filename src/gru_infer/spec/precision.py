"""Reduced-precision weights, in NumPy: what a model's GRU and Dense weights
become under ModelSpec.precision, bit for bit as the C core stores them
(src_c/isa.h; tests pin the two to each other).

- "bfloat16": each weight rounded to bfloat16 (round to nearest even; the top
  16 bits of a float32).
- "int8": per output row j (a GRU's W and R rows, a Dense kernel's columns),
  s_j = max_k |W[j, k]| / 127 (1 for an all-zero row) and
  q[j, k] = rint(W[j, k] / s_j) in [-127, 127]; the weight is s_j * q[j, k].
- "native": the weights as they are.

States, gates, biases and sums stay float32.  The weight file stores the
reduced tensors themselves (spec/file.py) and reads them back through
`dequantise`, so a reduced model's canonical weights are exactly the values
its kernels use.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ..errors import InputError

PRECISIONS = ("native", "bfloat16", "int8")
REDUCED = ("bfloat16", "int8")


def check_precision(precision: str, dtype=None) -> str:
    """precision, when it is one and a model computing in dtype (if given) can use it."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "native" and dtype is not None and np.dtype(dtype) != np.float32:
        raise InputError(f"precision {precision!r} needs a float32 model; this one computes "
                         f"in {np.dtype(dtype)}")
    return precision


def check_storable(precision: str, weights: np.ndarray, where: str) -> None:
    """int8 has no inf or NaN: refuse weights that hold them."""
    if precision == "int8" and not np.isfinite(weights).all():
        raise InputError(f"precision 'int8': {where} has inf or NaN weights, which int8 "
                         "cannot hold")


def bf16_bits(w: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bit patterns (uint16), rounded to nearest even."""
    u = np.ascontiguousarray(w, np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as float32 values."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def int8_quantise(w: np.ndarray, axis: int) -> tuple:
    """(q int8, s float32): w ~ s * q with one scale per slice along the other
    axis (axis: the axis each scale covers, the sum's axis)."""
    w = np.asarray(w, np.float32)
    if not np.isfinite(w).all():
        raise ValueError("int8 weights must be finite; this layer has inf or NaN weights")
    amax = np.max(np.abs(w), axis=axis, keepdims=True)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, np.squeeze(scale, axis=axis)


def int8_dequantise(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    return (np.asarray(q, np.int8).astype(np.float32)
            * np.expand_dims(np.asarray(scale, np.float32), axis)).astype(np.float32)


def stored(w: np.ndarray, precision: str, axis: int) -> np.ndarray:
    """w as a precision stores it (float32 values; w itself for "native")."""
    if precision == "bfloat16":
        return from_bf16_bits(bf16_bits(w))
    if precision == "int8":
        return int8_dequantise(*int8_quantise(w, axis), axis)
    return w


def scale_axis(kind: str, key: str) -> Optional[int]:
    """The axis each int8 scale of tensor `key` of a `kind` layer covers (its
    sums' axis), or None when reduced precisions leave that tensor alone: GRU
    W and R (3H, n) rows, Dense kernel (in, out) columns."""
    if kind == "gru" and re.fullmatch(r"cell[0-9]+\.[WR]", key):
        return 1
    if kind == "dense" and key == "kernel":
        return 0
    return None


def reduced_tensors(layer) -> dict:
    """{tensor name: scale axis} of the layer's weights that a reduced precision stores."""
    return {key: axis for key in layer.tensors()
            if (axis := scale_axis(layer.kind, key)) is not None}


def check_reducible(spec, precision: str) -> None:
    """InputError when spec cannot run in precision (float64 models; non-finite int8 weights)."""
    check_precision(precision, spec.dtype)
    if precision == "int8":
        for layer in spec.layers:
            tensors = layer.tensors()
            for name in reduced_tensors(layer):
                check_storable(precision, tensors[name], f"layer {layer.name!r}'s {name}")
