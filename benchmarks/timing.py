"""Per-call timing and percentiles.

Every call is timed on its own with perf_counter_ns so p99 reflects real call
latency (a mean over a batch of calls would hide the tail). The cyclic GC is
off inside timed loops: a collection landing in one engine's loop and not
another's is noise, not a property of the engine.
"""

from __future__ import annotations

import gc
from time import perf_counter_ns

import numpy as np

PERCENTILES = (50, 90, 99)


def time_calls(fn, args, repeats: int, warmup: int) -> np.ndarray:
    """ns per call of fn(args[i % len(args)]) over `repeats` calls after `warmup` untimed ones."""
    n = len(args)
    for i in range(warmup):
        fn(args[i % n])
    out = np.empty(repeats, np.int64)
    gc.collect()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            a = args[(warmup + i) % n]
            t0 = perf_counter_ns()
            fn(a)
            out[i] = perf_counter_ns() - t0
    finally:
        if gc_was_on:
            gc.enable()
    return out


def summarize(ns: np.ndarray) -> dict:
    s = {f"p{p}_ns": float(np.percentile(ns, p)) for p in PERCENTILES}
    s.update(mean_ns=float(ns.mean()), min_ns=float(ns.min()), max_ns=float(ns.max()), repeats=int(ns.size))
    return s


def adaptive_repeats(fn, arg, budget_s: float, lo: int, hi: int) -> int:
    """Repeats that fit the time budget after one probing call, clamped to [lo, hi]."""
    t0 = perf_counter_ns()
    fn(arg)
    one = max(perf_counter_ns() - t0, 1)
    return int(min(hi, max(lo, budget_s * 1e9 // one)))
