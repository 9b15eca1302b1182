"""Batch scoring with Ray Data: Parquet in, gru_infer on an actor pool, Parquet out.

The model is gru_infer's bundled example (GRU(32) -> GRU(32) -> Dense(4,
softmax), which waveform is this noisy signal?); the data are sequences of
48 to 96 samples made by its generator, so the batches are ragged.

    pip install "gru_infer[scale]"          # ray[data], dask[distributed], pyarrow
    python examples/ray_batch_scoring.py --workers 2 --count 20000

On a real cluster:
- connect instead of starting a local runtime: ray.init(address="auto") on a
  node of the cluster, or RAY_ADDRESS=ray://head:10001;
- gru_infer must be importable on every node: in the cluster's image
  (pip install gru_infer), or shipped with the job:
  ray.init(runtime_env={"pip": ["gru_infer"]});
- read from and write to shared storage (s3://..., gs://..., a mounted
  filesystem) instead of local folders;
- --workers: the actor pool's size, one CPU (and one gru_infer thread) each;
  leave one CPU slot free per node for Ray Data's read and write tasks
  (actors on every slot starve them: ray-project/ray#44687).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_parquet(path: Path, count: int, seed: int = 0) -> None:
    """count labelled waveforms of 48..96 samples each, as Parquet (id, label, x)."""
    import ray

    from gru_infer.demo import make_waveforms

    rng = np.random.default_rng(seed)
    lengths = rng.integers(48, 97, count)
    rows = []
    for steps in np.unique(lengths):
        ids = np.flatnonzero(lengths == steps)
        x, labels = make_waveforms(len(ids), rng, steps=int(steps))
        rows += [{"id": int(i), "label": int(label), "x": xi} for i, label, xi in zip(ids, labels, x)]
    ray.data.from_items(rows, override_num_blocks=8).write_parquet(str(path))


def add_prediction(batch: dict) -> dict:
    """The most probable waveform of each row."""
    batch["predicted"] = np.stack(batch["probs"]).argmax(axis=1)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="actor pool size")
    parser.add_argument("--count", type=int, default=20000, help="sequences to score")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per actor call")
    parser.add_argument("--address", default=None, help="a Ray cluster (default: start one here)")
    parser.add_argument("--data", default=None, help="folder for the Parquet in/out (default: temp)")
    args = parser.parse_args()

    import ray

    import gru_infer
    from gru_infer.integrations.ray import GruPredictor

    if args.address:
        ray.init(address=args.address)
    else:
        # One CPU slot per actor plus one for the read and write tasks.  Workers
        # started here inherit this process's environment (PYTHONPATH included).
        ray.init(num_cpus=args.workers + 1, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    folder = Path(args.data or tempfile.mkdtemp(prefix="gru_infer_ray_"))
    try:
        make_parquet(folder / "in", args.count)
        model = gru_infer.load(Path(gru_infer.__file__).parent / "data" / "waveforms.safetensors")
        start = time.perf_counter()
        (ray.data.read_parquet(str(folder / "in"))
            .map_batches(GruPredictor,
                         # The model travels once, pickled by value (its spec and
                         # weights); GruPredictor(model) runs once per actor.
                         fn_constructor_kwargs={"model": model, "output_column": "probs"},
                         compute=ray.data.ActorPoolStrategy(size=args.workers),
                         num_cpus=1,  # Ray sets OMP_NUM_THREADS=1: one gru_infer thread
                         batch_size=args.batch_size)
            .map_batches(add_prediction)
            .write_parquet(str(folder / "out")))
        seconds = time.perf_counter() - start
        frame = (ray.data.read_parquet(str(folder / "out"))
                 .select_columns(["label", "predicted"]).to_pandas())
        accuracy = float((frame["label"] == frame["predicted"]).mean())
        print(f"{len(frame)} sequences scored by {args.workers} actor(s) in {seconds:.1f} s "
              f"({len(frame) / seconds:.0f} per second, with the job's start-up); "
              f"accuracy {accuracy:.3f}; output in {folder / 'out'}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
