"""gru-infer bench: time a user's own model on this machine.

Per-step streaming latency, whole-sequence latency and throughput at a few
batch sizes, at chosen thread counts.  Each measurement repeats for a time
budget and reports the median (p50) and p99.  For side-by-side comparisons
with other engines use benchmarks/ in the source tree.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .config import get_num_threads
from .spec.layers import Embedding


def _parse_ints(text, default):
    if text is None:
        return default
    values = [int(v) for v in str(text).split(",") if v.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _inputs(model, batch, steps, rng):
    """Random inputs of the model's kind: features or token ids."""
    if model.input_dtype.kind in "iu":
        vocab = next((layer.table.shape[0] for layer in model.layers
                      if isinstance(layer, Embedding)), 2)
        return rng.integers(1, max(vocab, 2), size=(batch, steps)).astype(model.input_dtype)
    features = model.input_shape[-1]
    if features is None:
        raise ValueError("the model does not say its number of input features")
    return rng.standard_normal((batch, steps, features)).astype(model.dtype)


def _time(call, seconds, min_repeats=5, max_repeats=200_000):
    """Per-call times in seconds: warm up, then repeat for the budget."""
    for _ in range(3):
        call()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return np.array(times) * 1e-9


class _Progress:
    """`[3/9] label` rewritten in place; only on a terminal (in a file or a
    pipe the carriage returns would be noise)."""

    def __init__(self, total, out):
        is_terminal = out is not None and getattr(out, "isatty", lambda: False)()
        self.total, self.done, self.out = total, 0, out if is_terminal else None

    def __call__(self, label):
        self.done += 1
        if self.out is not None:
            self.out.write(f"\r  [{self.done}/{self.total}] {label:<40}")
            self.out.flush()

    def close(self):
        if self.out is not None:
            self.out.write("\r" + " " * 60 + "\r")
            self.out.flush()


_STANDARD = object()  # sys.stdout / sys.stderr as they are at the call, not at import


def bench_model(model, *, threads=None, batch_sizes=None, steps=100, seconds=1.0, seed=0,
                out=_STANDARD, progress=_STANDARD) -> dict:
    """Measure model; print a table to out (default: standard output; None:
    print nothing); return the figures.  progress: where a progress line goes
    while measuring (default: standard error), shown only on a terminal."""
    out = sys.stdout if out is _STANDARD else out
    progress = sys.stderr if progress is _STANDARD else progress
    threads = _parse_ints(threads, sorted({1, get_num_threads()}))
    batch_sizes = _parse_ints(batch_sizes, [1, 8, 64])
    rng = np.random.default_rng(seed)
    streamable = all(len(r.cells) == 1 and not r.go_backwards for r in model.recurrent_layers)
    tasks = len(threads) * (len(batch_sizes) + 1 + streamable)
    show = _Progress(tasks, progress if progress is not None and seconds * tasks > 3 else None)
    results = {"threads": {}, "steps": steps, "batch_sizes": batch_sizes}
    for nt in threads:
        row = {}
        if streamable:
            show(f"streaming step, {nt} thread(s)")
            stream = model.stream(batch_size=1, num_threads=nt)
            frames = _inputs(model, 1, 64, rng)
            sink = np.empty_like(stream.step(frames[:, 0]))
            counter = iter(range(1 << 62))

            def step(stream=stream, frames=frames, counter=counter, sink=sink):
                stream.step(frames[:, next(counter) % 64], out=sink)

            t = _time(step, seconds)
            row["stream_step_us"] = {"p50": float(np.median(t) * 1e6),
                                     "p99": float(np.percentile(t, 99) * 1e6)}
        show(f"sequence batch 1, {nt} thread(s)")
        x = _inputs(model, 1, steps, rng)
        t = _time(lambda x=x, nt=nt: model(x, num_threads=nt), seconds)
        row["sequence_ms"] = {"p50": float(np.median(t) * 1e3),
                              "p99": float(np.percentile(t, 99) * 1e3)}
        row["throughput_seq_per_s"] = {}
        for batch in batch_sizes:
            show(f"throughput batch {batch}, {nt} thread(s)")
            x = _inputs(model, batch, steps, rng)
            t = _time(lambda x=x, nt=nt: model(x, num_threads=nt), seconds)
            row["throughput_seq_per_s"][batch] = float(batch / np.median(t))
        results["threads"][nt] = row
    show.close()
    if out is not None:
        out.write(format_results(results))
    return results


def format_results(results) -> str:
    steps, batches = results["steps"], results["batch_sizes"]
    head = ["threads", "step p50 (µs)", "step p99 (µs)", f"seq T={steps} p50 (ms)", "p99 (ms)"]
    head += [f"B={b} seq/s" for b in batches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for nt, row in results["threads"].items():
        step = row.get("stream_step_us")
        cells = [str(nt), f"{step['p50']:.1f}" if step else "n/a", f"{step['p99']:.1f}" if step else "n/a",
                 f"{row['sequence_ms']['p50']:.3f}", f"{row['sequence_ms']['p99']:.3f}"]
        cells += [f"{row['throughput_seq_per_s'][b]:,.0f}" for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def bench_model_file(path, *, threads=None, batch_sizes=None, steps=100, seconds=1.0,
                     as_json=False, precision=None) -> dict:
    """gru-infer bench: a heading and the table, or (as_json) the figures as JSON."""
    import json

    from .api import convert

    model = convert(path, precision=precision)
    if not as_json:
        weights = "" if model.precision == "native" else f" ({model.precision} weights)"
        print(f"{path}{weights}: {_count(len(model.layers), 'layer')}, "
              f"{_count(model.parameter_count, 'parameter')}; sequences of "
              f"{_count(steps, 'step')}; {seconds:g} s per measurement")
    results = bench_model(model, threads=threads, batch_sizes=batch_sizes, steps=steps,
                          seconds=seconds, out=None if as_json else _STANDARD)
    if as_json:
        print(json.dumps({"file": str(path), "layers": len(model.layers),
                          "parameters": model.parameter_count, **results}, indent=2))
    return results
