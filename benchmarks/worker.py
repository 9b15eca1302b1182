"""Everything measured at ONE thread count, in a process of its own.

run.py starts this module in a fresh interpreter per thread count with
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS already in the
environment, because BLAS and OpenMP runtimes read them once, at load time.
Writes one JSON document (see run.py for how they are merged).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback

import numpy as np

from . import floors
from . import workloads as wl
from .peers import load_all
from .timing import adaptive_repeats, summarize, time_calls

# (repeats, warmup) per workload: enough timed calls for a stable p99.
REPEATS = {
    False: {"W1": (5000, 300), "W2": (300, 20), "W3": (30, 3), "W4": (20, 2), "tiny": (5000, 300)},
    True: {"W1": (400, 50), "W2": (30, 5), "W3": (5, 1), "W4": (3, 1), "tiny": (400, 50)},
}
# The NumPy reference loops over rows in Python: ~0.6 s (W3) and ~1 s (W4) per call.
REFERENCE_REPEATS = {False: {"W3": (5, 1), "W4": (3, 1)}, True: {"W3": (1, 0), "W4": (1, 0)}}
# What of each output is checked against the reference: the first CHECK_ROWS rows of
# the batch over all timesteps (W3/W4 keep the slow reference affordable), and
# CHECK_STEPS carried steps for the streaming workloads.
CHECK_ROWS = {"W2": 1, "W3": 2, "W4": 2}
CHECK_STEPS = {"W1": 100, "tiny": 50}
STREAM_INPUT_STEPS = 1000  # distinct random frames, cycled through by the timed stream
SWEEP_BATCHES = (1, 8, 32, 64)
SWEEP_BUDGET = {False: (2.0, 5, 100), True: (0.3, 2, 10)}  # seconds per point, min, max repeats
MISMATCH_TOL = 1e-4  # float32 outputs in [-1, 1]: disagreements beyond this are bugs, not rounding


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def versions(engine_modules) -> dict:
    import scipy

    import gru_infer
    from gru_infer.runtime import _core

    v = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
         "gru_infer": getattr(gru_infer, "__version__", "?"), "gru_infer_kernel": _core.isa_current(),
         "gru_infer_kernels_built": ",".join(n for n, _ in _core.isa_list()),
         "gru_infer_max_threads": _core.max_threads()}
    try:
        v["numpy_blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError, AttributeError):  # older NumPy: no dict form
        v["numpy_blas"] = "?"
    names = {m.NAME for m in engine_modules if m.available()}
    if "torch" in names:
        import torch

        v["torch"] = torch.__version__
        v["torch_threads_seen"] = torch.get_num_threads()
    if "onnxruntime" in names:
        import onnx
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
        v["onnx"] = onnx.__version__
    if "openvino_f32" in names:
        import openvino

        v["openvino"] = openvino.__version__
    return v


def check(engine, w: wl.Workload, ref_cache: dict, tolerance: float) -> dict:
    """Max abs error of the engine's output against the NumPy reference."""
    if w.stream:
        steps = CHECK_STEPS[w.key]
        x = wl.make_input(w.spec, w.batch, steps, seed=wl.SEED + 7)
        engine.reset(w.batch)
        y = np.stack([np.array(engine.step(np.ascontiguousarray(x[:, t]))) for t in range(steps)], axis=1)
        rows = w.batch
    else:
        rows = CHECK_ROWS[w.key]
        steps = w.steps
        x = wl.make_input(w.spec, w.batch, w.steps)
        y = engine.run(x)[:rows]
        x = x[:rows]
    if w.key not in ref_cache:
        ref_cache[w.key] = wl.reference_forward(w.spec, x)[0]
    err = float(np.abs(y - ref_cache[w.key]).max())
    return {"max_abs_err": err, "check_rows": rows, "check_steps": steps, "tolerance": tolerance,
            "mismatch": err > tolerance}


def timed(engine, w: wl.Workload, repeats: int, warmup: int) -> dict:
    """Summary of the timed calls, and their raw times (run.py merges rounds from them)."""
    if w.stream:
        xs = wl.make_input(w.spec, w.batch, STREAM_INPUT_STEPS)
        frames = [np.ascontiguousarray(xs[:, t]) for t in range(STREAM_INPUT_STEPS)]
        engine.reset(w.batch)
        ns = time_calls(engine.step, frames, repeats, warmup)
    else:
        x = wl.make_input(w.spec, w.batch, w.steps)
        ns = time_calls(engine.run, [x], repeats, warmup)
    return {**summarize(ns), "times_ns": ns.tolist()}


def derived(w: wl.Workload, p50_ns: float) -> dict:
    out = {}
    if not w.stream:
        out["seq_per_s"] = w.batch * 1e9 / p50_ns
    if w.key == "W4":
        out["GFLOPs"] = wl.gru_flops(w.spec, w.batch, w.steps) / p50_ns
    return out


def run_engine(m, n: int, quick: bool, wanted: list, doc: dict, rounds: int = 1) -> None:
    """Every wanted workload, then the batch sweep, for one engine module."""
    all_w = wl.workloads()
    todo = [all_w[k] for k in ("W1", "W2", "W3", "W4") if k in wanted] + [wl.tiny_workload()]
    ref_cache = {}
    built = {}  # one engine per model spec (W1-W3 share model M)
    for w in todo:
        reps, warm = REPEATS[quick][w.key]
        reps = max(1, -(-reps // rounds))  # this process runs one of `rounds` rounds
        note = ""
        if m.NAME == "numpy_ref" and w.key in REFERENCE_REPEATS[quick]:
            reps, warm = REFERENCE_REPEATS[quick][w.key]
            note = f"reference: only {reps} timed call(s)"
        log(f"[{n} thr] {w.key} {m.NAME} x{reps}")
        row = {"workload": w.key, "title": w.title, "engine": m.NAME, "threads": n, "warmup": warm,
               "batch": w.batch, "steps": w.steps, "stream": w.stream, "note": note}
        try:
            if w.spec.name not in built:
                built[w.spec.name] = m.build(w.spec, n)
            engine = built[w.spec.name]
            row["variant"] = getattr(engine, "variant", "")
            row.update(check(engine, w, ref_cache, getattr(m, "TOLERANCE", None) or MISMATCH_TOL))
            row.update(timed(engine, w, reps, warm))
            row.update(derived(w, row["p50_ns"]))
        except Exception:  # noqa: BLE001 (an engine's failure is reported, the run goes on)
            row["error"] = traceback.format_exc(limit=3)
            doc["errors"].append(f"{w.key} {m.NAME}: {row['error']}")
            log(row["error"])
        doc["results"].append(row)

    if "sweep" in wanted:
        budget, lo, hi = SWEEP_BUDGET[quick]
        spec_m = wl.model_m()
        try:
            engine = built.get(spec_m.name) or m.build(spec_m, n)
            for b in SWEEP_BATCHES:
                x = wl.make_input(spec_m, b, 100)
                engine.run(x)  # warm-up: buffers, thread pools
                reps = adaptive_repeats(engine.run, x, budget, 1 if m.NAME == "numpy_ref" else lo, hi)
                s = summarize(time_calls(engine.run, [x], reps, 0))
                log(f"[{n} thr] sweep {m.NAME} B={b} x{reps}")
                doc["sweep"].append({"engine": m.NAME, "batch": b, "steps": 100, **s,
                                     "seq_per_s": b * 1e9 / s["p50_ns"]})
        except Exception:  # noqa: BLE001 (reported, the run goes on)
            doc["errors"].append(f"sweep {m.NAME}: {traceback.format_exc(limit=3)}")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True, help="0: each engine's default")
    p.add_argument("--part", required=True, help="'floors', or an engine NAME from benchmarks.peers")
    p.add_argument("--workloads", default="W1,W2,W3,W4,sweep")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=1, help="this run is one of ROUNDS: 1/ROUNDS of the repeats")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    n, quick = args.threads, args.quick
    wanted = [k.strip() for k in args.workloads.split(",") if k.strip()]

    modules = {m.NAME: m for m in load_all()}
    doc = {"threads": n, "part": args.part, "quick": quick, "loadavg_before": os.getloadavg(),
           "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
           "skipped": [], "results": [], "sweep": [], "errors": []}
    if args.part == "floors":
        log(f"[{n} thr] floors")
        doc["floors"] = {**floors.weight_read_floor(wl.model_m().num_weights, 300 if quick else 3000),
                         **floors.sgemm_gflops(1024 if quick else 2048, 3 if quick else 7),
                         **floors.fma_peak(),
                         **floors.bare_layer_call(wl.tiny_layer(), 500 if quick else 5000),
                         **floors.core_step_time(wl.tiny_layer(), 2000 if quick else 20000)}
        doc["versions"] = versions(modules.values())  # after the floors: imports torch/ORT
    else:
        m = modules[args.part]
        if m.available():
            run_engine(m, n, quick, wanted, doc, args.rounds)
        else:
            doc["skipped"].append({"engine": m.NAME, "reason": m.unavailable_reason()})
    doc["loadavg_after"] = os.getloadavg()
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
