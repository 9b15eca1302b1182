"""What the Python side costs around the C kernels, at 1 thread.

    python -m benchmarks.overhead [--repeats N] [--json PATH]

Three ratios (lower is better; the runtime design aims at the bounds in
brackets):
- model(x) at T=1 on the tiny model (I=H=8) / the bare gru_infer.GRU call
  on the same input (<= 1.5);
- a stream step of a two-output functional graph (GRU -> GRU -> Dense, the
  first GRU's sequence also an output) / a step of the chain of the same
  layers (<= 1.5);
- a W1 step of model M (stream.step(x, out=...)) / the same program's ops run
  from compiled code with no Python between runs: the kernels alone (<= 1.2).
Each figure is the median of per-call timings (perf_counter_ns), garbage
collection off; the process runs with OMP_NUM_THREADS=1 set before import.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def median_us(call, repeats: int, warmup: int = 200) -> float:
    for _ in range(warmup):
        call()
    times = np.empty(repeats)
    gc.disable()
    try:
        for i in range(repeats):
            start = time.perf_counter_ns()
            call()
            times[i] = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return float(np.median(times)) / 1e3


def tiny_model_vs_bare_call(repeats: int) -> dict:
    import gru_infer
    from gru_infer.spec.layers import GRUCell, Recurrent

    from .workloads import tiny_layer

    spec = tiny_layer().layers[0]
    bare = gru_infer.GRU(spec.W, spec.R, spec.B)
    model = gru_infer.Model.sequential([Recurrent("gru", [GRUCell(spec.W, spec.R, spec.B)])],
                                       input_shape=(None, spec.input_size))
    x = np.random.default_rng(1).standard_normal((1, 1, spec.input_size)).astype(np.float32)
    bare_us = median_us(lambda: bare(x, num_threads=1), repeats)
    model_us = median_us(lambda: model(x, num_threads=1), repeats)
    return {"bare_GRU_call_us": bare_us, "model_call_us": model_us, "ratio": model_us / bare_us,
            "bound": 1.5}


def functional_stream_vs_chain(repeats: int) -> dict:
    import gru_infer
    from gru_infer.spec.graph import Input, ModelSpec, Node
    from gru_infer.spec.layers import Dense, GRUCell, Recurrent

    from .workloads import model_m

    m = model_m()
    cells = [GRUCell(layer.W, layer.R, layer.B) for layer in m.layers]
    dense = Dense("dense", m.dense_W.T, m.dense_b, "sigmoid")
    layers = [Recurrent("gru0", [cells[0]]), Recurrent("gru1", [cells[1]]), dense]
    chain = gru_infer.Model.sequential(layers, input_shape=(None, m.input_size))
    nodes = (Node(layers[0], (("input", 0),)), Node(layers[1], (("gru0", 0),)),
             Node(dense, (("gru1", 0),)))
    two = gru_infer.Model(ModelSpec((Input("input", (None, m.input_size)),), nodes,
                                    (("gru0", 0), ("dense", 0))))
    x = np.random.default_rng(2).standard_normal((1, m.input_size)).astype(np.float32)
    chain_stream, two_stream = chain.stream(1, num_threads=1), two.stream(1, num_threads=1)
    chain_us = median_us(lambda: chain_stream.step(x), repeats)
    two_us = median_us(lambda: two_stream.step(x), repeats)
    return {"chain_step_us": chain_us, "two_output_step_us": two_us, "ratio": two_us / chain_us,
            "bound": 1.5}


def w1_vs_kernels(repeats: int) -> dict:
    from .peers.gru_infer_engine import build_model
    from .workloads import model_m

    model = build_model(model_m())
    stream = model.stream(1, num_threads=1)
    x = np.random.default_rng(3).standard_normal((1, model_m().input_size)).astype(np.float32)
    out = np.array(stream.step(x))
    step_us = median_us(lambda: stream.step(x, out=out), repeats)
    program = stream._programs[1].program
    program.time_run(200)
    kernels_us = float(np.median(program.time_run(repeats))) / 1e3
    return {"W1_step_us": step_us, "kernels_alone_us": kernels_us, "ratio": step_us / kernels_us,
            "bound": 1.2}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20000)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    results = {"tiny model(x) vs bare GRU call": tiny_model_vs_bare_call(args.repeats),
               "two-output stream vs chain stream": functional_stream_vs_chain(args.repeats),
               "W1 step vs its kernels alone": w1_vs_kernels(args.repeats)}
    results["loadavg"] = os.getloadavg()
    for name, row in results.items():
        if name == "loadavg":
            continue
        figures = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k not in ("ratio", "bound"))
        print(f"{name:36s} ratio {row['ratio']:.2f} (bound {row['bound']}): {figures}")
    print(f"1-minute load average: {results['loadavg'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
