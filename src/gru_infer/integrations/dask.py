"""Dask: a model loaded once per worker, and the functions that
dask.array.map_blocks, dask.dataframe.map_partitions and Client.map run.

    from dask.distributed import Client
    import dask.array as da, gru_infer
    from gru_infer.integrations import dask as gd

    client = Client("tcp://scheduler:8786")            # or Client(LocalCluster(...))
    model = gru_infer.load("model.safetensors")
    gd.register_model(client, model)                   # once per worker, new ones too
    x = da.from_zarr("sequences.zarr")                 # (rows, time, features)
    y = gd.predict_array(x.rechunk({0: 64}), model)    # chunks of rows = batches
    y.to_zarr("scores.zarr")

register_model sends the model (its spec, weights once) to every worker in
a WorkerPlugin, which keeps it for the life of the worker; tasks find it by
model_key.  Without register_model, predict_array and predict_frame pass the model
as one graph node (dask.delayed): sent once per worker per computation.

Threads: Dask's nanny sets OMP_NUM_THREADS=1 in every worker whatever
threads_per_worker is (each worker thread runs one task), and gru_infer
follows it; give num_threads= to change that.  Blocks arrive read-only
when Dask deserialised them; that is fine: inputs are copied into the
model's buffers.
"""

from __future__ import annotations

import functools
from typing import Optional, Union

try:
    import distributed
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError("gru_infer.integrations.dask needs dask[distributed]: pip install "
                      "'gru_infer[scale]'") from error

import numpy as np

from ..errors import InputError, InputTypeError
from ._common import as_model, output_names, predict_column

DEFAULT_KEY = "model"
_models: dict = {}  # model_key -> Model, in each worker process


class ModelPlugin(distributed.WorkerPlugin):
    """Puts a model in every worker (and every worker that joins later),
    under model_key, for worker_model(model_key)."""

    def __init__(self, model, model_key: str = DEFAULT_KEY):
        self.model = model  # a Model pickles as its spec; a path or callable runs on the worker
        self.model_key = model_key
        self.name = f"gru_infer-model-{model_key}"

    def setup(self, worker):
        _models[self.model_key] = as_model(self.model)

    def teardown(self, worker):
        _models.pop(self.model_key, None)


def register_model(client, model, model_key: str = DEFAULT_KEY) -> None:
    """Load model once in each of client's workers, under model_key."""
    plugin = ModelPlugin(model, model_key)
    register = getattr(client, "register_plugin", None) or client.register_worker_plugin
    register(plugin)


def worker_model(model_key: str = DEFAULT_KEY):
    """The model register_model put in this worker under model_key."""
    try:
        return _models[model_key]
    except KeyError:
        raise LookupError(f"no gru_infer model under {model_key!r} in this process: call "
                          f"gru_infer.integrations.dask.register_model(client, model, "
                          f"model_key={model_key!r}) first (here: {sorted(_models)})") from None


def _model(model, model_key):
    return worker_model(model_key) if model is None else as_model(model)


def predict_block(block, model=None, *, model_key: str = DEFAULT_KEY, output_index: int = 0,
                  num_threads: Optional[int] = None) -> np.ndarray:
    """Output number output_index of the model for one block (rows, time, ...):
    for map_blocks and Client.map.  model: the Model itself (a Delayed or a
    scattered future of it resolves to it), or None for the one registered
    under model_key (named so: Client.map keeps key= for itself)."""
    found = _model(model, model_key)
    ys = found(block, num_threads=num_threads)
    return ys[output_index] if isinstance(ys, list) else ys


def predict_partition(frame, model=None, *, model_key: str = DEFAULT_KEY, column: str = "x",
                      output_column: Union[str, list] = "y", keep_input: bool = False,
                      ragged_batch_size: int = 64, strategy: str = "auto",
                      num_threads: Optional[int] = None):
    """A pandas partition with the model's outputs for frame[column] (one
    array per cell: ragged sequences) added as object columns, one array per
    row: for map_partitions."""
    found = _model(model, model_key)
    cells = list(frame[column])
    if cells and isinstance(cells[0], (str, bytes)):
        raise InputTypeError(f"column {column!r} holds strings, not sequence arrays: Dask turns object "
                        "columns into strings unless dask.config.set({'dataframe.convert-string': "
                        "False}) is in force when the DataFrame is made")
    ys = predict_column(found, cells, ragged_batch_size=ragged_batch_size,
                        strategy=strategy, num_threads=num_threads)
    out = frame.copy() if keep_input else frame.drop(columns=[column])  # new frames both
    for name, y in zip(output_names(found, output_column), ys):
        out[name] = y
    return out


def predict_array(x, model, *, model_key: Optional[str] = None, output_index: int = 0,
                  num_threads: Optional[int] = None):
    """model's output for a dask array x (rows, time, ...) chunked along rows
    only (each chunk is one batch): a dask array (rows, ...) of the output's
    shape.  model_key: use the model register_model put in the workers under it
    (model is then only read here, for the output's shape)."""
    import dask

    model = as_model(model)
    if any(len(c) != 1 for c in x.chunks[1:]):
        raise InputError(f"chunk x along rows only (x.rechunk({{1: -1, 2: -1}})); its chunks are "
                         f"{tuple(len(c) for c in x.chunks)} per axis")
    row_shape = tuple(int(s) for s in x.shape[1:])
    out_row = model.spec.output_shapes({model.spec.inputs[0].name: row_shape})[output_index]
    if model.time_major:
        raise InputError("predict_array takes batch-first arrays; this model is time-major")
    carried = None if model_key is not None else dask.delayed(model, pure=True)
    chunks = (x.chunks[0],) + tuple((s,) for s in out_row)
    extra = {}
    if len(out_row) + 1 < x.ndim:
        extra["drop_axis"] = list(range(len(out_row) + 1, x.ndim))
    elif len(out_row) + 1 > x.ndim:
        extra["new_axis"] = list(range(x.ndim, len(out_row) + 1))
    run = functools.partial(predict_block, model_key=model_key or DEFAULT_KEY, output_index=output_index,
                            num_threads=num_threads)
    return x.map_blocks(run, carried, chunks=chunks, dtype=model.dtype,
                        meta=np.empty((0,) * (len(out_row) + 1), model.dtype), **extra)


def predict_frame(frame, model, *, model_key: Optional[str] = None, column: str = "x",
                  output_column: Union[str, list] = "y", keep_input: bool = False, **options):
    """model's outputs for a dask DataFrame whose column holds one sequence
    array per row: map_partitions(predict_partition) with the right meta."""
    import dask
    import pandas as pd

    model = as_model(model)
    meta = frame._meta if keep_input else frame._meta.drop(columns=[column])
    meta = meta.assign(**{name: pd.Series([], dtype=object)
                          for name in output_names(model, output_column)})
    carried = None if model_key is not None else dask.delayed(model, pure=True)
    run = functools.partial(predict_partition, model_key=model_key or DEFAULT_KEY, column=column,
                            output_column=output_column, keep_input=keep_input, **options)
    return frame.map_partitions(run, carried, meta=meta)
