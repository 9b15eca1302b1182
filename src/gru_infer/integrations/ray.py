"""Ray Data: GruPredictor, a callable class for Dataset.map_batches.

    import ray, gru_infer
    from gru_infer.integrations.ray import GruPredictor

    model = gru_infer.load("model.safetensors")
    ds = ray.data.read_parquet("s3://bucket/sequences/")        # a column "x"
    scores = ds.map_batches(
        GruPredictor,
        fn_constructor_kwargs={"model": model},   # pickled once: spec + weights
        compute=ray.data.ActorPoolStrategy(size=8),  # older Ray: concurrency=8
        num_cpus=1,                               # one core per actor
        batch_size=64,
    )
    scores.write_parquet("s3://bucket/scores/")

Ray makes one actor per pool slot; each builds its GruPredictor once, so the
model is unpickled (or read from its path) once per actor and its packed
weights and compiled programs serve every batch after.  Ray starts actors
before read tasks: if the actors take every CPU slot the reads never run and
the dataset hangs (ray-project/ray#44687), so leave a slot free (a pool one
smaller than the CPUs, or ray.init(num_cpus=cores + 1) on one machine).

Batches are NumPy dicts (Ray's default batch format).  A fixed-shape tensor
column arrives as one read-only array (rows, time, features) and runs in one
call; a ragged column (sequences of different lengths) arrives as an object
array of arrays and runs through Model.predict_ragged, its outputs one array
per row.  Threads: the CPUs Ray assigned to the actor (num_cpus), within the
cores the process may use, whatever OMP_NUM_THREADS the driver's environment
leaked into the workers.
"""

from __future__ import annotations

from typing import Optional, Union

from .._threads import available_cores
from ..errors import InputTypeError
from ._common import as_model, output_names, predict_column


def ray_assigned_threads() -> Optional[int]:
    """The whole CPUs Ray assigned to the calling task or actor (at least 1,
    at most the cores this process may use), or None outside Ray."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not in a Ray worker, or an older Ray without the call
        return None
    if not cpus:
        return None
    return max(1, min(int(cpus), available_cores()))


class GruPredictor:
    """Scores one batch: batch[input_column] -> batch[output_column].

    model: a gru_infer.Model (pickled by value), a file path each actor
    reads, or a callable that returns a Model.  output_column: one name, or
    one per model output (default: "y" / "y0", "y1", ...).  keep_input: keep
    the input column in the output (default: dropped; every other column,
    ids say, is passed through).  ragged_batch_size and strategy: how
    predict_ragged packs ragged rows.  num_threads: default from Ray's
    assignment (see module doc), else gru_infer's policy.
    """

    def __init__(self, model, *, input_column: str = "x", output_column: Union[str, list] = "y",
                 keep_input: bool = False, ragged_batch_size: int = 64, strategy: str = "auto",
                 num_threads: Optional[int] = None):
        self.model = as_model(model)
        self.input_column = input_column
        self.output_columns = output_names(self.model, output_column)
        self.keep_input = keep_input
        self.ragged_batch_size = ragged_batch_size
        self.strategy = strategy
        self.num_threads = num_threads if num_threads is not None else ray_assigned_threads()

    def __call__(self, batch: dict) -> dict:
        if not isinstance(batch, dict):
            raise InputTypeError(f"GruPredictor takes NumPy batches (a dict of arrays: "
                            f"batch_format='numpy'), got {type(batch).__name__}")
        ys = predict_column(self.model, batch[self.input_column],
                            ragged_batch_size=self.ragged_batch_size, strategy=self.strategy,
                            num_threads=self.num_threads)
        out = {k: v for k, v in batch.items() if self.keep_input or k != self.input_column}
        out.update(zip(self.output_columns, ys))
        return out
