"""Hardware floors to read the engines' numbers against (DESIGN.md §3).

A batch-1 streaming step must read every weight once, so its time is bounded
below by how fast this thread count can stream that many bytes from cache or
memory; large batches are bounded by GEMM peak.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.linalg import blas

from .timing import summarize, time_calls


def weight_read_floor(num_floats: int, repeats: int) -> dict:
    """Time to read num_floats float32 once, two ways.

    np.sum: the simplest full read (NumPy's own SIMD loop, one thread).
    sgemv: a matrix-vector product over a Fortran-ordered buffer of the same
    size through SciPy's BLAS (what a batch-1 step really does; follows the
    BLAS thread count).
    """
    rng = np.random.default_rng(0)
    buf = rng.standard_normal(num_floats).astype(np.float32)
    cols = 512
    rows = -(-num_floats // cols)
    a = np.asfortranarray(rng.standard_normal((rows, cols)).astype(np.float32))
    v = np.ones(cols, np.float32)
    nbytes = buf.nbytes
    out = {"weight_bytes": int(nbytes)}
    for name, fn, arg in (("sum", np.sum, buf), ("sgemv", lambda m: blas.sgemv(1.0, m, v), a)):
        s = summarize(time_calls(fn, [arg], repeats, warmup=max(10, repeats // 10)))
        out[f"{name}_p50_us"] = s["p50_ns"] / 1e3
        out[f"{name}_GBps"] = nbytes / s["p50_ns"]  # bytes per ns = GB/s
    return out


def sgemm_gflops(n: int, repeats: int) -> dict:
    """GFLOP/s of SciPy's sgemm on n x n float32 (Fortran order: no copies)."""
    rng = np.random.default_rng(1)
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(np.float32))
    b = np.asfortranarray(rng.standard_normal((n, n)).astype(np.float32))
    s = summarize(time_calls(lambda m: blas.sgemm(1.0, m, b), [a], repeats, warmup=1))
    return {"sgemm_n": n, "sgemm_p50_ms": s["p50_ns"] / 1e6, "sgemm_GFLOPs": 2.0 * n ** 3 / s["p50_ns"]}


def bare_layer_call(spec, repeats: int) -> dict:
    """Per-call time of one bare gru_infer.GRU step (tiny layer, state passed in).

    Next to the `tiny` workload (the same step through gru_infer.Model's
    stream) this separates the core call from the model layer's bookkeeping.
    """
    import gru_infer

    l = spec.layers[0]
    layer = gru_infer.GRU(l.W, l.R, l.B, num_threads=1)
    x = np.zeros((1, 1, l.input_size), np.float32)
    h = np.zeros((1, 1, l.hidden_size), np.float32)
    s = summarize(time_calls(lambda a: layer(a, initial_state=h), [x], repeats, warmup=repeats // 10))
    return {"bare_step_p50_us": s["p50_ns"] / 1e3, "bare_step_p99_us": s["p99_ns"] / 1e3}


REPO = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def _c_bench() -> str | None:
    """benchmarks/c/kernel_bench.c built against src_c/ (None without a C compiler)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="gru_infer_bench_"), "kernel_bench")
    sources = [str(REPO / "benchmarks/c/kernel_bench.c")] + sorted(
        str(p) for p in (REPO / "src_c").glob("*.c"))
    cmd = [cc, "-O3", "-std=gnu99", "-fno-trapping-math", "-pthread", f"-I{REPO / 'src_c'}",
           *sources, "-lm", "-o", out]
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        return None
    return out


def _run_c_bench(arg: str) -> dict:
    exe = _c_bench()
    if exe is None:
        return {}
    done = subprocess.run([exe, arg], capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def fma_peak() -> dict:
    """GFLOP/s of register-only FMA loops at AVX-512 and AVX2 width, one thread (the compute
    ceiling of large batches; on Zen 4 both widths give the same FLOPs per cycle)."""
    return _run_c_bench("--peak")


def core_step_time(spec, repeats: int) -> dict:
    """One streamed step timed inside C (gru_layer_forward at batch 1, one thread): the core's
    share of the tiny workload, without Python; and model M's two GRU layers."""
    del spec, repeats  # the C driver builds its own I=H=8 layer and repeats
    return _run_c_bench("--step")
