"""Scale-out: sequences per second of model M on W3-sized work (batches of 64
sequences, T=100) with 1 and 2 worker processes of one thread each, on Ray
Data and Dask against a plain single process and a bare multiprocessing pool.

    python -m benchmarks.scaleout                       # everything, 3 rounds
    python -m benchmarks.scaleout --frameworks single,pool,dask --rounds 5
    python -m benchmarks.scaleout --quick               # smoke run

Needs ray[data] and dask[distributed] for those rows (a missing one is
skipped and noted).  How it measures, and why:

- A job scores N batches that start in the driver's memory and end there
  (inputs shipped, outputs gathered), and notes when each batch's output
  arrives.  The steady rate is counted from the first wave of outputs (one
  per worker) to the last: it leaves out what a job pays once (an actor pool
  starting, the first transfer of the model), which is shown apart as the
  job's fixed cost (its time minus N batches at the steady rate), beside the
  end-to-end rate.  Medians over rounds.
- CPU seconds of the whole process tree per job (driver, workers, Ray's and
  Dask's daemons; psutil) give each recipe's cost per sequence, which other
  programs' load changes far less than wall time: "single process's CPU /
  this" is the share of the CPU spent scoring rather than moving data and
  scheduling.  On an idle machine, W workers reach about W times that share of
  the single process's rate, when the framework's own work fits beside them.
- One phase per framework, with only its processes up (an idle Ray runtime
  uses ~7% of a core, an idle 2-worker Dask cluster ~14%).  Within a phase,
  rounds interleave its configurations and a single-process run, the
  yardstick for that phase's load.  Load averages are recorded before and
  after.
- Every worker runs one thread (OMP_NUM_THREADS=1 for the pool; Ray's
  num_cpus=1 and Dask's nanny set it).  The driver stays idle while workers
  score.  Outputs are checked bit for bit against the single process.
- Ray: Dataset.map_batches(GruPredictor) on an actor pool (the documented
  recipe), the dataset made from the driver's arrays with from_numpy.
  Dask: the model registered once per worker, (a) dask.array map_blocks over
  from_array (the obvious recipe: the array travels inside the graph) and
  (b) Client.map over arrays scattered straight to the workers.  The pool:
  (a) imap over the arrays (pickled through pipes) and (b) the inputs in
  one shared-memory block, tasks naming only a batch index (zero-copy).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BATCH, STEPS = 64, 100


def _load() -> tuple:
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


class TreeCPU:
    """CPU seconds used by this process and every process below it (workers,
    schedulers, Ray's daemons), sampled in a thread every `interval` seconds
    so that processes that end (Ray's actors at the end of a job) keep what
    they used up to their last sample; NaN without psutil."""

    def __init__(self, interval: float = 0.2):
        import threading

        try:
            import psutil
        except ImportError:
            self.psutil = None
            return
        self.psutil = psutil
        self.seen: dict = {}  # (pid, create time) -> CPU seconds at the last sample
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self.thread.start()

    def _sample(self):
        me = self.psutil.Process()
        for process in [me] + me.children(recursive=True):
            try:
                with process.oneshot():
                    key = (process.pid, process.create_time())
                    t = process.cpu_times()
                with self.lock:
                    self.seen[key] = t.user + t.system
            except self.psutil.Error:  # gone between the listing and the read
                pass

    def _loop(self, interval):
        while not self.stop.wait(interval):
            self._sample()

    def total(self) -> float:
        if self.psutil is None:
            return float("nan")
        self._sample()
        with self.lock:
            return sum(self.seen.values())

    def close(self):
        if self.psutil is not None:
            self.stop.set()
            self.thread.join()


def build_model():
    from .peers.gru_infer_engine import build_model as build
    from .workloads import model_m

    return build(model_m())


def make_batches(count: int, seed: int = 7) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((BATCH, STEPS, 100)).astype(np.float32) for _ in range(count)]


# -- the pool's workers (module level: forkserver workers import this module) ------------

_pool_model = None
_pool_shared = None


def _pool_init(model, shm_name, shape):
    global _pool_model, _pool_shared
    import gru_infer

    gru_infer.set_num_threads(1)
    _pool_model = model
    if shm_name is not None:
        from multiprocessing import shared_memory

        block = shared_memory.SharedMemory(name=shm_name)
        _pool_shared = (block, np.ndarray(shape, np.float32, buffer=block.buf))


def _pool_score(item):
    index, x = item
    return index, _pool_model(x)


def _pool_score_shared(index):
    return index, _pool_model(_pool_shared[1][index])


# -- configurations: run(n) scores batches 0..n-1 -> [(index, output, arrival s)] ---------


class Single:
    name, recipe = "single process", "model(x) in a loop"

    def __init__(self, model, batches):
        self.model, self.batches, self.workers = model, batches, 1
        self.phase = ""

    def run(self, n):
        start, out = time.perf_counter(), []
        for i, x in enumerate(self.batches[:n]):
            out.append((i, self.model(x, num_threads=1), time.perf_counter() - start))
        return out

    def close(self):
        pass


class Pool:
    def __init__(self, model, batches, workers, shared):
        self.batches, self.workers, self.shared = batches, workers, shared
        self.name = "multiprocessing pool"
        self.recipe = "shared-memory inputs" if shared else "imap(arrays)"
        self.block = None
        shm_name = shape = None
        if shared:
            from multiprocessing import shared_memory

            stacked = np.stack(batches)
            self.block = shared_memory.SharedMemory(create=True, size=stacked.nbytes)
            np.ndarray(stacked.shape, np.float32, buffer=self.block.buf)[...] = stacked
            shm_name, shape = self.block.name, stacked.shape
        # forkserver: a worker forked from this process after it ran the core
        # would be held to one thread (GNU OpenMP does not survive fork).
        context = multiprocessing.get_context("forkserver")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            self.pool = context.Pool(workers, _pool_init, (model, shm_name, shape))
        finally:
            os.environ.pop("OMP_NUM_THREADS", None)

    def run(self, n):
        start = time.perf_counter()
        if self.shared:
            results = self.pool.imap_unordered(_pool_score_shared, range(n))
        else:
            results = self.pool.imap_unordered(_pool_score, enumerate(self.batches[:n]))
        return [(i, y, time.perf_counter() - start) for i, y in results]

    def close(self):
        self.pool.terminate()
        self.pool.join()
        if self.block is not None:
            self.block.close()
            self.block.unlink()


class RayData:
    name, recipe = "Ray Data", "map_batches(GruPredictor)"

    def __init__(self, ray, model, batches, workers):
        from gru_infer.integrations.ray import GruPredictor

        self.ray, self.model, self.batches, self.workers = ray, model, batches, workers
        self.predictor = GruPredictor

    def run(self, n):
        ray = self.ray
        start = time.perf_counter()
        ds = ray.data.from_numpy(self.batches[:n]).rename_columns({"data": "x"})
        # A new actor pool per job: its start is part of the job's fixed cost.
        scored = ds.map_batches(self.predictor, fn_constructor_kwargs={"model": self.model},
                                compute=ray.data.ActorPoolStrategy(size=self.workers),
                                num_cpus=1, batch_size=BATCH)
        # preserve_order (set at ray.init below): blocks come back in input order.
        return [(i, b["y"], time.perf_counter() - start)
                for i, b in enumerate(scored.iter_batches(batch_size=None))]

    def close(self):
        pass


class ScoringActor:
    """A Ray actor around GruPredictor (module level: Ray's workers import it)."""

    def __init__(self, model):
        from gru_infer.integrations.ray import GruPredictor

        self.predictor = GruPredictor(model)

    def score(self, index, x):
        return index, self.predictor({"x": x})["y"]


class RayActors:
    name, recipe = "Ray core", "long-lived actors, tasks queued"

    def __init__(self, ray, model, batches, workers):
        self.ray, self.batches, self.workers = ray, batches, workers
        actor = ray.remote(num_cpus=1)(ScoringActor)
        model_ref = ray.put(model)  # in the object store once; each actor unpickles it once
        self.actors = [actor.remote(model_ref) for _ in range(workers)]

    def run(self, n):
        # Every batch is submitted at once, round-robin: an actor runs its queue back to
        # back.  ActorPool hands an actor its next batch only after the driver has its
        # last result, which left each actor idle for a round trip per batch (85% of the
        # bare pool's rate with 2 workers, against 9x% queued: docs/scaleout.md).
        start = time.perf_counter()
        refs = [self.ray.put(x) for x in self.batches[:n]]  # read zero-copy by the actors
        pending = [self.actors[i % self.workers].score.remote(i, ref) for i, ref in enumerate(refs)]
        results = []
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            i, y = self.ray.get(done[0])
            results.append((i, y, time.perf_counter() - start))
        return results

    def close(self):
        pass


class DaskArray:
    name, recipe = "Dask", "map_blocks(from_array)"

    def __init__(self, client, model, batches, workers):
        self.client, self.model, self.batches, self.workers = client, model, batches, workers
        self.targets = list(client.scheduler_info()["workers"])[:workers]

    def _collect(self, futures, start):
        from distributed import as_completed

        index = {f.key: i for i, f in enumerate(futures)}
        return [(index[f.key], f.result(), time.perf_counter() - start)
                for f in as_completed(futures)]

    def run(self, n):
        import dask.array as da

        from gru_infer.integrations.dask import predict_array

        start = time.perf_counter()
        x = da.from_array(np.concatenate(self.batches[:n]), chunks=(BATCH, STEPS, 100))
        y = predict_array(x, self.model, model_key="m")
        blocks = list(y.to_delayed().ravel())
        return self._collect(self.client.compute(blocks, workers=self.targets), start)

    def close(self):
        pass


class DaskMap(DaskArray):
    recipe = "scatter + Client.map"

    def run(self, n):
        from gru_infer.integrations.dask import predict_block

        start = time.perf_counter()
        chunks = self.client.scatter(self.batches[:n], workers=self.targets, hash=False)
        futures = self.client.map(predict_block, chunks, model_key="m", workers=self.targets)
        return self._collect(futures, start)


# -- the driver -------------------------------------------------------------------------


def measure(configs, n, rounds, reference, cpu_clock):
    """{config: [(sorted arrival times, CPU seconds) of one job, ...]} over interleaved
    rounds."""
    times = {c: [] for c in configs}
    for r in range(rounds):
        for c in configs:
            cpu = cpu_clock.total()
            results = sorted(c.run(n), key=lambda item: item[0])
            cpu = cpu_clock.total() - cpu
            got = np.concatenate([np.asarray(y).reshape(-1, STEPS, 1) for _, y, _ in results])
            if len(results) != n or not np.array_equal(got, reference[: n * BATCH]):
                raise AssertionError(f"{c.name} ({c.recipe}, {c.workers} workers): outputs "
                                     "differ from the single process")
            arrivals = sorted(t for _, _, t in results)
            times[c].append((arrivals, cpu))
            rate = steady_rate(arrivals, c.workers)
            print(f"  round {r + 1}: {c.name:22s} {c.recipe:26s} {c.workers} worker(s): "
                  f"{arrivals[-1]:6.2f} s, steady {rate:5.0f} seq/s, {cpu:5.2f} CPU s  "
                  f"load {_load()[0]:.2f}", flush=True)
    return times


def steady_rate(arrivals, workers) -> float:
    """Sequences per second between the first wave of results (one per worker:
    it carries the start-up) and the last."""
    k = min(workers, len(arrivals) - 1)
    span = arrivals[-1] - arrivals[k - 1]
    return BATCH * (len(arrivals) - k) / span if span > 0 else float("nan")


def summarize(configs, times, n):
    rows = []
    for c in configs:
        rates = [steady_rate(a, c.workers) for a, _ in times[c]]
        totals = [a[-1] for a, _ in times[c]]
        rate = statistics.median(rates)
        cpu = statistics.median(cpu for _, cpu in times[c])
        rows.append({"framework": c.name, "recipe": c.recipe, "workers": c.workers,
                     "phase": c.phase,
                     "seq_per_s": rate, "seq_per_s_all": rates,
                     "end_to_end_seq_per_s": BATCH * n / statistics.median(totals),
                     "fixed_s": statistics.median(totals) - BATCH * n / rate,
                     "cpu_ms_per_seq": 1000 * cpu / (BATCH * n),
                     "jobs": [{"arrivals": a, "cpu_s": cpu} for a, cpu in times[c]]})
    by_key = {(r["framework"], r["recipe"], r["workers"], r["phase"]): r for r in rows}
    for r in rows:
        one = by_key.get((r["framework"], r["recipe"], 1, r["phase"]))
        r["vs_1_worker"] = r["seq_per_s"] / one["seq_per_s"] if one else None
        same = by_key.get(("multiprocessing pool", "imap(arrays)", r["workers"], "pool"))
        r["vs_pool"] = r["seq_per_s"] / same["seq_per_s"] if same else None
        single = by_key.get(("single process", "model(x) in a loop", 1, r["phase"]))
        r["cpu_efficiency"] = single["cpu_ms_per_seq"] / r["cpu_ms_per_seq"] if single else None
    return rows


def markdown(rows, meta) -> str:
    before, after = meta["load_before"], meta["load_after"]
    lines = [f"Scale-out, model M, {meta['batches']} batches of {BATCH} x T={STEPS} per job, "
             f"{meta['rounds']} rounds (medians); {meta['cpu']}, {meta['cores']} cores; load "
             f"average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
             f"after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}.", "",
             "| phase | framework | recipe | workers | steady seq/s | vs 1 worker | vs pool, "
             "same workers | end to end seq/s | fixed cost per job | CPU ms per seq (all "
             "processes) | single process's CPU / this |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['vs_1_worker']:.2f}x" if r["vs_1_worker"] else "-"
        pool = f"{100 * r['vs_pool']:.0f}%" if r["vs_pool"] else "-"
        lines.append(f"| {r['phase']} | {r['framework']} | {r['recipe']} | {r['workers']} | "
                     f"{r['seq_per_s']:.0f} | {ratio} | {pool} | "
                     f"{r['end_to_end_seq_per_s']:.0f} | {r['fixed_s']:.2f} s | "
                     f"{r['cpu_ms_per_seq']:.2f} | {100 * (r['cpu_efficiency'] or 0):.0f}% |")
    for note in meta["skipped"]:
        lines.append(f"\n{note}")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def setup_ray(model, batches, worker_counts, closers, skipped) -> list:
    try:
        import ray
        import ray.data
    except ImportError as error:
        skipped.append(f"Ray skipped: {error}")
        return []
    src = str(REPO / "src") if (REPO / "src" / "gru_infer").exists() else None
    path = os.pathsep.join(p for p in (src, str(REPO), os.environ.get("PYTHONPATH")) if p)
    # CPU slots for the long-lived actors, the Ray Data pool and one for Ray
    # Data's own tasks (logical slots: one job runs at a time).
    ray.init(num_cpus=sum(worker_counts) + max(worker_counts) + 1, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    closers.append(ray.shutdown)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # outputs checked in order
    return ([RayData(ray, model, batches, w) for w in worker_counts]
            + [RayActors(ray, model, batches, w) for w in worker_counts])


def setup_dask(model, batches, worker_counts, closers, skipped) -> list:
    try:
        import dask.array  # noqa: F401
        from distributed import Client, LocalCluster
    except ImportError as error:
        skipped.append(f"Dask skipped: {error}")
        return []
    from gru_infer.integrations.dask import register_model

    cluster = LocalCluster(n_workers=max(worker_counts), threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    closers.append(cluster.close)
    client = Client(cluster)
    closers.append(client.close)
    register_model(client, model, model_key="m")
    return ([DaskArray(client, model, batches, w) for w in worker_counts]
            + [DaskMap(client, model, batches, w) for w in worker_counts])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", default="single,pool,ray,dask")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batches", type=int, default=24, help="batches of 64 per job")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run (4 batches, one round: numbers meaningless)")
    parser.add_argument("--out", default=None, help="write scaleout.md and scaleout.json here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.rounds = 4, 1
    frameworks = args.frameworks.split(",")
    worker_counts = [int(w) for w in args.workers.split(",")]
    n = args.batches

    import gru_infer

    gru_infer.set_num_threads(1)
    model = build_model()
    batches = make_batches(n)
    reference = np.concatenate([model(x) for x in batches])
    skipped, all_configs, times = [], [], {}
    load_before = _load()
    # One phase per framework, only its processes up: an idle Ray runtime uses
    # ~7% of a core, an idle 2-worker Dask cluster ~14%, which would be taken
    # from the others' workers.  The single process runs in every phase: the
    # yardstick for the phase's load.
    for phase in ("pool", "ray", "dask"):
        if phase not in frameworks and not (phase == "pool" and "single" in frameworks):
            continue
        configs, closers = [], []
        try:
            if "single" in frameworks:
                configs.append(Single(model, batches))
            if phase == "pool" and "pool" in frameworks:
                for shared in (False, True):
                    configs += [Pool(model, batches, w, shared) for w in worker_counts]
            if phase == "ray":
                configs += setup_ray(model, batches, worker_counts, closers, skipped)
            if phase == "dask":
                configs += setup_dask(model, batches, worker_counts, closers, skipped)
            for c in configs:  # warm: workers started, model loaded, programs compiled
                c.run(2 * c.workers)
            print(f"{phase}: {len(configs)} configurations, N={n} batches of {BATCH}x{STEPS}",
                  flush=True)
            cpu_clock = TreeCPU()
            try:
                found = measure(configs, n, args.rounds, reference, cpu_clock)
            finally:
                cpu_clock.close()
            for c in configs:
                c.phase = phase
            times.update(found)
            all_configs += configs
        finally:
            for c in configs:
                c.close()
            for close in reversed(closers):
                close()
    meta = {"batches": n, "rounds": args.rounds, "cpu": cpu_name(), "cores": os.cpu_count(),
            "load_before": load_before, "load_after": _load(), "skipped": skipped,
            "python": sys.version.split()[0], "gru_infer": gru_infer.__version__}
    rows = summarize(all_configs, times, n)
    text = markdown(rows, meta)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scaleout.md").write_text(text + "\n")
        (out / "scaleout.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
