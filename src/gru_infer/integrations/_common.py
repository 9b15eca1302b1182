"""What the Ray and Dask helpers share: a model from what the user hands
over, and one batch of outputs from one batch of inputs."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..errors import InputError


def as_model(model):
    """A Model from a Model (pickled by value: its spec, weights once), a file
    path (read where this runs: a shared or cloud-mounted filesystem), or a
    callable that returns one (called where this runs)."""
    from ..runtime.model import Model

    if isinstance(model, Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        from ..api import convert

        return convert(model)
    if callable(model):
        made = model()
        if not isinstance(made, Model):
            raise InputError(f"the model factory returned {type(made).__name__}, not a "
                             "gru_infer.Model")
        return made
    raise InputError(f"model must be a gru_infer.Model, a file path or a callable that returns "
                     f"a Model, got {type(model).__name__}")


def output_names(model, output) -> list:
    """One column name per model output: output itself for one output, else
    output0, output1, ... (or the names given as a list)."""
    count = len(model.spec.outputs)
    if isinstance(output, (list, tuple)):
        if len(output) != count:
            raise InputError(f"this model has {count} outputs; got {len(output)} column names")
        return list(output)
    return [output] if count == 1 else [f"{output}{i}" for i in range(count)]


def object_array(values: list) -> np.ndarray:
    """A 1-D object array holding the arrays as they are (np.array would stack
    arrays of one shape into one array)."""
    out = np.empty(len(values), object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def predict_column(model, x, *, ragged_batch_size: int, strategy: str,
                   num_threads: Optional[int]) -> list:
    """Each output of model for one column of inputs: a regular array
    (rows, time, ...) runs in one call; an object array or list of arrays
    (ragged sequences) goes through predict_ragged and comes back as one
    object array of per-row arrays per output."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        if model.time_major:  # a column holds rows: (rows, time, ...) both ways in and out
            x = x.swapaxes(0, 1)
        ys = model(x, num_threads=num_threads)
        ys = ys if isinstance(ys, list) else [ys]
        return [y.swapaxes(0, 1) if model.time_major and y.ndim >= 3 else y for y in ys]
    ys = model.predict_ragged(x, batch_size=ragged_batch_size, strategy=strategy,
                              num_threads=num_threads)
    ys = ys if len(model.spec.outputs) > 1 else [ys]
    return [object_array(y) for y in ys]
