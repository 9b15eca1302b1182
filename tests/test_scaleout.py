"""Scoring on real local clusters: a Ray runtime (Ray Data map_batches on an
actor pool, Parquet in and out) and a Dask LocalCluster of two worker
processes (map_blocks, map_partitions, Client.map), compared bit for bit
with the same batches run in this process.  Skipped where ray or
dask[distributed] is not installed (pip install "gru_infer[scale]").

Two worker processes each: this runs on a 2-core CI machine.
"""

import contextlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import gru_infer

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_FILE = FIXTURES / "torch" / "bigru2_linear_sd.pt"  # 2-layer bidirectional GRU + Linear
ROWS, STEPS, BATCH = 2048, 20, 64


@contextlib.contextmanager
def _worker_environment():
    """The environment workers start from: our PYTHONPATH, and no thread settings of
    the parent's (the frameworks set OMP_NUM_THREADS only where it is unset; CI's
    sanitizer job sets it for the suite)."""
    names = ("PYTHONPATH", "OMP_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["PYTHONPATH"] = _worker_path()
    os.environ.pop("OMP_NUM_THREADS", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker_path() -> str:
    """PYTHONPATH for worker processes: this gru_infer (a checkout or an
    installed package, whichever the tests import) and the tests folder."""
    here = [str(Path(gru_infer.__file__).resolve().parent.parent), str(Path(__file__).parent)]
    return os.pathsep.join(here + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                   if p])


@pytest.fixture(scope="module")
def model():
    return gru_infer.convert(MODEL_FILE)


@pytest.fixture(scope="module")
def fixed(model):
    """ROWS sequences of one length, and the outputs of batches of BATCH rows here."""
    x = np.random.default_rng(0).standard_normal((ROWS, STEPS, 5)).astype(np.float32)
    expected = np.concatenate([model(x[i:i + BATCH]) for i in range(0, ROWS, BATCH)])
    return x, expected


@pytest.fixture(scope="module")
def ragged():
    rng = np.random.default_rng(1)
    return [rng.standard_normal((n, 5)).astype(np.float32) for n in rng.integers(1, 41, 2000)]


# -- what travels: the model by value -------------------------------------------------------


def test_a_model_pickles_within_a_tenth_of_its_weight_file(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent.parent))
    try:
        from benchmarks.peers.gru_infer_engine import build_model
        from benchmarks.workloads import make_input, model_m
    finally:
        sys.path.pop(0)
    model = build_model(model_m())  # model M: 1.7 MB of float32 weights
    model.save(tmp_path / "m.safetensors")
    before = pickle.dumps(model, protocol=5)
    x = make_input(model_m(), 4, 10)
    y = model(x)  # packed weights and programs now exist; none of it travels
    after = pickle.dumps(model, protocol=5)
    assert len(after) == len(before) <= 1.1 * (tmp_path / "m.safetensors").stat().st_size
    np.testing.assert_array_equal(pickle.loads(after)(x), y)


def test_gru_predictor_takes_rows_first_for_a_time_major_model():
    """A column holds one sequence per row, whatever the model's axis order: a regular
    block gives what the ragged path (and one call per row) gives."""
    from gru_infer.integrations.ray import GruPredictor

    model = gru_infer.convert(Path(__file__).parent / "fixtures" / "torch" / "gru_timemajor_h0.pt",
                              batch_first=False)
    assert model.time_major
    rows = np.random.default_rng(2).standard_normal((6, 5, 4)).astype(np.float32)
    block = GruPredictor(model)({"x": rows})["y"]
    ragged = GruPredictor(model)({"x": list(rows)})["y"]
    for i in range(6):
        np.testing.assert_allclose(block[i], model(rows[i][:, None])[:, 0], atol=1e-6)
        np.testing.assert_allclose(block[i], ragged[i], atol=1e-6)


def test_gru_predictor_is_a_plain_callable_on_numpy_batches(model, fixed, ragged):
    """No Ray needed: what map_batches calls, called here."""
    from gru_infer.integrations.ray import GruPredictor

    x, expected = fixed
    frozen = x[:BATCH].copy()
    frozen.flags.writeable = False  # as Ray hands tensor columns over
    predictor = GruPredictor(model)
    out = predictor({"x": frozen, "id": np.arange(BATCH)})
    assert sorted(out) == ["id", "y"]
    np.testing.assert_array_equal(out["y"], expected[:BATCH])
    column = np.empty(10, object)
    column[:] = ragged[:10]
    out = GruPredictor(str(MODEL_FILE), output_column="score", keep_input=True)({"x": column})
    assert sorted(out) == ["score", "x"] and out["score"].dtype == object
    for got, want in zip(out["score"], model.predict_ragged(ragged[:10])):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="NumPy batches"):
        predictor([frozen])
    with pytest.raises(gru_infer.InputError, match="Model, a file path or a callable"):
        GruPredictor(42)
    assert GruPredictor(lambda: model).model is model


# -- Ray -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    pytest.importorskip("pyarrow")
    # Three CPU slots on this 2-core machine: two actors of one CPU each, and
    # one slot for the read and write tasks (Ray starts actors first; actors on
    # every slot would starve the reads: ray-project/ray#44687).
    with _worker_environment():
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": _worker_path(), "RAY_DEDUP_LOGS": "0"}})
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    yield ray
    ray.shutdown()


def threads_in_worker():
    """(OMP_NUM_THREADS, gru_infer's default, what GruPredictor takes) where this runs."""
    from gru_infer.integrations.ray import GruPredictor

    predictor = GruPredictor(gru_infer.convert(MODEL_FILE))
    return (os.environ.get("OMP_NUM_THREADS"), gru_infer.get_num_threads(),
            predictor.num_threads, os.getpid())


def test_ray_workers_run_one_thread_per_cpu_assigned(ray_runtime):
    ray = ray_runtime
    one = ray.get([ray.remote(num_cpus=1)(threads_in_worker).remote() for _ in range(2)])
    assert all(found[:3] == ("1", 1, 1) for found in one), one
    two = ray.get(ray.remote(num_cpus=2)(threads_in_worker).remote())
    assert two[:3] == ("2", 2, 2), two


def test_ray_map_batches_on_fixed_length_numpy_blocks(ray_runtime, model, fixed):
    ray = ray_runtime
    from gru_infer.integrations.ray import GruPredictor

    x, expected = fixed
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # read when a dataset is made
    try:
        blocks = [x[i:i + BATCH] for i in range(0, ROWS, BATCH)]  # one block per batch
        ds = ray.data.from_numpy(blocks).rename_columns({"data": "x"})
        scored = ds.map_batches(GruPredictor, fn_constructor_kwargs={"model": model},
                                compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1,
                                batch_size=BATCH)
        got = np.concatenate([batch["y"] for batch in scored.iter_batches(batch_size=None)])
    finally:
        context.execution_options.preserve_order = False
    np.testing.assert_array_equal(got, expected)


def test_ray_ragged_sequences_through_parquet(ray_runtime, model, ragged, tmp_path):
    ray = ray_runtime
    from gru_infer.integrations.ray import GruPredictor

    items = [{"id": i, "x": s} for i, s in enumerate(ragged)]
    ray.data.from_items(items, override_num_blocks=4).write_parquet(str(tmp_path / "in"))
    ds = ray.data.read_parquet(str(tmp_path / "in"))
    # ragged_batch_size=1: each sequence alone, so every number is comparable
    # bit for bit however Ray cuts its batches (test_ragged pins the packing).
    ds.map_batches(GruPredictor, fn_constructor_kwargs={"model": model, "ragged_batch_size": 1},
                   compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1,
                   batch_size=256).write_parquet(str(tmp_path / "out"))
    rows = ray.data.read_parquet(str(tmp_path / "out")).take_all()
    assert len(rows) == len(ragged) and "x" not in rows[0]
    for row in rows:
        seq = ragged[row["id"]]
        np.testing.assert_array_equal(row["y"], model(seq[None])[0])


# -- Dask ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.array")
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with _worker_environment():  # the nanny starts workers with this environment
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=40)
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_workers_run_one_thread(dask_client):
    found = dask_client.run(lambda: (os.environ.get("OMP_NUM_THREADS"),
                                     gru_infer.get_num_threads()))
    assert len(found) == 2 and set(found.values()) == {("1", 1)}, found


def test_dask_map_blocks_with_the_model_as_a_graph_node(dask_client, model, fixed):
    import dask.array as da

    from gru_infer.integrations.dask import predict_array

    x, expected = fixed
    y = predict_array(da.from_array(x, chunks=(BATCH, STEPS, 5)), model)
    assert y.shape == expected.shape and y.chunks[0] == (BATCH,) * (ROWS // BATCH)
    np.testing.assert_array_equal(y.compute(), expected)


def test_dask_registered_model_map_blocks_and_client_map(dask_client, model, fixed):
    import dask.array as da

    from gru_infer.integrations import dask as gd

    x, expected = fixed
    gd.register_model(dask_client, model, model_key="bigru")
    loaded = dask_client.run(lambda: sorted(gd._models))
    assert all("bigru" in keys for keys in loaded.values()), loaded
    y = gd.predict_array(da.from_array(x, chunks=(BATCH, STEPS, 5)), model, model_key="bigru")
    np.testing.assert_array_equal(y.compute(), expected)
    chunks = dask_client.scatter([x[i:i + BATCH] for i in range(0, ROWS, BATCH)])
    futures = dask_client.map(gd.predict_block, chunks, model_key="bigru")
    np.testing.assert_array_equal(np.concatenate(dask_client.gather(futures)), expected)
    who = dask_client.who_has(futures)
    assert len({w for workers in who.values() for w in workers}) == 2  # both workers scored
    scattered = dask_client.scatter(model, broadcast=True)  # or the model itself, scattered
    futures = dask_client.map(gd.predict_block, chunks, model=scattered)
    np.testing.assert_array_equal(np.concatenate(dask_client.gather(futures)), expected)


def test_dask_map_partitions_on_ragged_sequences(dask_client, model, ragged):
    import dask
    import dask.dataframe as dd
    import pandas as pd

    from gru_infer.integrations.dask import predict_frame

    with dask.config.set({"dataframe.convert-string": False}):  # keep arrays as objects
        frame = dd.from_pandas(pd.DataFrame({"id": np.arange(len(ragged)), "x": ragged}),
                               npartitions=6)
        scored = predict_frame(frame, model).compute()
    assert list(scored.columns) == ["id", "y"] and len(scored) == len(ragged)
    expected = []
    for i in range(frame.npartitions):  # the same partitions, packed the same way, here
        part = frame.get_partition(i).compute()
        expected += model.predict_ragged(list(part["x"]))
    for got, want in zip(scored.sort_values("id")["y"], expected):
        np.testing.assert_array_equal(got, want)


# -- the examples, end to end (small counts) ----------------------------------------------


@pytest.mark.parametrize("script, needs", [("dask_batch_scoring.py", "distributed"),
                                           ("ray_batch_scoring.py", "ray")])
def test_example_runs(script, needs, tmp_path):
    pytest.importorskip(needs)
    pytest.importorskip("pyarrow")
    pytest.importorskip("pandas")
    import subprocess

    env = dict(os.environ, PYTHONPATH=_worker_path())
    example = Path(__file__).parent.parent / "examples" / script
    result = subprocess.run([sys.executable, str(example), "--count", "400", "--workers", "2",
                             "--data", str(tmp_path)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy 0.9" in result.stdout, result.stdout


def test_dask_partition_helper_on_empty_and_multi_output_frames(ragged):
    pytest.importorskip("distributed")
    pytest.importorskip("h5py")
    pd = pytest.importorskip("pandas")
    from gru_infer.integrations.dask import predict_partition

    model = gru_infer.convert(FIXTURES / "keras_graph" / "multi_depth_k3.keras")
    assert len(model.outputs) == 3
    features = model.input_shape[1]
    rng = np.random.default_rng(4)
    seqs = [rng.standard_normal((n, features)).astype(np.float32) for n in (3, 7, 1, 5)]
    frame = pd.DataFrame({"id": np.arange(4), "x": seqs})
    out = predict_partition(frame, model, output_column="out")
    assert list(out.columns) == ["id", "out0", "out1", "out2"]
    expected = model.predict_ragged(seqs)
    for k in range(3):
        for got, want in zip(out[f"out{k}"], expected[k]):
            np.testing.assert_array_equal(got, want)
    empty = predict_partition(frame.iloc[:0], model, output_column=["a", "b", "c"])
    assert list(empty.columns) == ["id", "a", "b", "c"] and len(empty) == 0
    with pytest.raises(TypeError, match="convert-string"):
        predict_partition(pd.DataFrame({"x": ["[1, 2]"]}), model)
