"""Batch scoring with Dask: the model loaded once per worker, ragged sequences
from Parquet through map_partitions, fixed-length ones through map_blocks.

The model is gru_infer's bundled example (GRU(32) -> GRU(32) -> Dense(4,
softmax), which waveform is this noisy signal?), the data its generator's.

    pip install "gru_infer[scale]"          # ray[data], dask[distributed], pyarrow
    python examples/dask_batch_scoring.py --workers 2 --count 20000

On a real cluster:
- connect instead of starting a LocalCluster: --address tcp://scheduler:8786
  (Client(address)); gru_infer must be installed in the workers' environment;
- read from and write to shared storage (s3://..., a mounted filesystem);
- register_model sends the model (pickled by value: its spec, weights once)
  to every worker, including workers that join later.  Dask's nanny sets
  OMP_NUM_THREADS=1 in each worker, so a model call uses one thread per
  worker thread; start workers with --nthreads 1 --nworkers <cores> for one
  process per core.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_parquet(path: Path, count: int, seed: int = 0) -> None:
    """count labelled waveforms of 48..96 samples, as Parquet (id, label, x) with
    x one list of samples per row."""
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa

    from gru_infer.demo import make_waveforms

    rng = np.random.default_rng(seed)
    lengths = rng.integers(48, 97, count)
    x, labels = [None] * count, np.empty(count, np.int64)
    for steps in np.unique(lengths):
        ids = np.flatnonzero(lengths == steps)
        batch, labels[ids] = make_waveforms(len(ids), rng, steps=int(steps))
        for i, xi in zip(ids, batch):
            x[i] = xi[:, 0]
    frame = pd.DataFrame({"id": np.arange(count), "label": labels, "x": x})
    # Dask cannot infer Parquet types of array columns (it guesses from a dummy
    # frame): give the whole schema.
    schema = pa.schema([("id", pa.int64()), ("label", pa.int64()), ("x", pa.list_(pa.float32()))])
    dd.from_pandas(frame, npartitions=8).to_parquet(str(path), schema=schema, write_index=False)


def as_steps(part):
    """Parquet keeps each row's samples as a flat list; the model reads (time, 1)."""
    return part.assign(x=[np.asarray(a, np.float32).reshape(-1, 1) for a in part["x"]])


def predicted(part):
    return part.assign(predicted=[int(np.argmax(p)) for p in part["probs"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--count", type=int, default=20000, help="sequences to score")
    parser.add_argument("--address", default=None, help="a Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--data", default=None, help="folder for the Parquet in/out (default: temp)")
    args = parser.parse_args()

    import dask
    import dask.array as da
    import dask.dataframe as dd
    import pyarrow as pa
    from distributed import Client, LocalCluster

    import gru_infer
    from gru_infer.demo import make_waveforms
    from gru_infer.integrations import dask as gd

    # Dask would turn object columns (our arrays) into strings.
    dask.config.set({"dataframe.convert-string": False})
    cluster = None
    if args.address:
        client = Client(args.address)
    else:
        # Worker processes inherit this process's environment (PYTHONPATH included).
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
    folder = Path(args.data or tempfile.mkdtemp(prefix="gru_infer_dask_"))
    try:
        model = gru_infer.load(Path(gru_infer.__file__).parent / "data" / "waveforms.safetensors")
        gd.register_model(client, model)  # once per worker, kept for the worker's life

        # Ragged sequences: Parquet -> map_partitions -> Parquet.
        make_parquet(folder / "in", args.count)
        start = time.perf_counter()
        frame = dd.read_parquet(str(folder / "in"))
        # meta: the columns stay as they are (Dask cannot guess it from dummy data).
        frame = frame.map_partitions(as_steps, meta=frame._meta)
        scored = gd.predict_frame(frame, model, model_key="model", output_column="probs")
        schema = pa.schema([("id", pa.int64()), ("label", pa.int64()),
                            ("probs", pa.list_(pa.float32())), ("predicted", pa.int64())])
        labelled = scored.map_partitions(
            predicted, meta=scored._meta.assign(predicted=np.zeros(0, np.int64)))
        labelled.to_parquet(str(folder / "out"), schema=schema,
                                                    write_index=False)
        seconds = time.perf_counter() - start
        result = dd.read_parquet(str(folder / "out"), columns=["label", "predicted"]).compute()
        accuracy = float((result["label"] == result["predicted"]).mean())
        print(f"ragged: {len(result)} sequences in {seconds:.1f} s on {len(client.nthreads())} "
              f"worker(s) ({len(result) / seconds:.0f}/s); accuracy {accuracy:.3f}; "
              f"output in {folder / 'out'}")

        # Fixed-length sequences: a dask array chunked along rows, one chunk = one batch.
        x, labels = make_waveforms(args.count, 1)
        start = time.perf_counter()
        probs = gd.predict_array(da.from_array(x, chunks=(512, -1, -1)), model, model_key="model")
        guess = probs.argmax(axis=1).compute()
        seconds = time.perf_counter() - start
        print(f"fixed: {len(x)} sequences of 64 steps in {seconds:.1f} s "
              f"({len(x) / seconds:.0f}/s); accuracy {float((guess == labels).mean()):.3f}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
