"""Argument checks shared by the layers: clear errors that say what was given
and what was expected."""

from __future__ import annotations

import numpy as np

FLOAT_KINDS = "f"


def as_float_array(value, name: str, dtype: np.dtype) -> np.ndarray:
    """value as a C-contiguous native-order array of dtype; refuses non-floats."""
    array = np.asarray(value)
    if array.dtype.kind not in FLOAT_KINDS:
        raise TypeError(f"{name} must hold floating-point values, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=dtype)


def check_shape(array: np.ndarray, expected: tuple, name: str, meaning: str) -> None:
    """expected: ints or None (any size) per axis; meaning names the axes."""
    ok = array.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, array.shape)
    )
    if not ok:
        want = ", ".join("any" if e is None else str(e) for e in expected)
        raise ValueError(
            f"{name} must have shape {meaning} = ({want}), got {tuple(array.shape)}"
        )


def as_lengths(lengths, batch: int, steps: int) -> np.ndarray:
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {array.dtype}")
    check_shape(array, (batch,), "lengths", "(batch,)")
    if array.size and (array.min() < 0 or array.max() > steps):
        raise ValueError(
            f"lengths must lie in [0, {steps}] (the number of timesteps), "
            f"got min {array.min()} and max {array.max()}"
        )
    return np.ascontiguousarray(array, dtype=np.int64)


def as_mask(mask, batch: int, steps: int) -> np.ndarray:
    array = np.asarray(mask)
    if array.dtype.kind not in "biu":
        raise TypeError(f"mask must be boolean (True = valid step), got dtype {array.dtype}")
    check_shape(array, (batch, steps), "mask", "(batch, time)")
    return np.ascontiguousarray(array != 0, dtype=np.uint8)
