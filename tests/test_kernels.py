"""Every kernel set (ISA) this CPU runs, pinned to the NumPy reference.

Each test is run once per kernel set, forced with _core.isa_select, over a grid
that crosses every place where the C core switches path:
- panel widths: 4 (AVX2 float64), 8 (generic, AVX2 float32, AVX-512 float64),
  16 (AVX-512 float32): hidden sizes just below, at and above multiples; 96-row blocks of
  many-row projections (AVX2);
- batch-row blocks: one row (the streaming matvec), up to 3 and up to 6 rows
  (four-panel blocks), 12-row slivers and their remainders;
- K blocks of 512 (AVX-512) and panel blocks of 64 (1024 columns), the generic
  kernel's 64-column blocks and its BLAS threshold (16 rows);
- time chunks (input projections of at most 1 MB), thread teams of 1, 2, 3
  (steps split by units, or by batch rows too when units are few; whole calls split
  by batch rows from 8 rows a thread), both
  directions side by side, both GRU variants, lengths, masks, initial states.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gru_infer
from gru_infer.reference import gru_reference
from gru_infer.runtime import _core

ALL_ISAS = [name for name, _ in _core.isa_list()]
RUNNABLE = [name for name, ok in _core.isa_list() if ok]
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Runs the test with one kernel set forced, then puts the first one back."""
    if request.param not in RUNNABLE:
        pytest.skip(f"this CPU does not run {request.param}")
    before = _core.isa_current()
    _core.isa_select(request.param)
    yield request.param
    _core.isa_select(before)


def weights(rng, input_size, hidden_size, directions, dtype, bias=True):
    scale = 0.5
    W = rng.standard_normal((directions, 3 * hidden_size, input_size)) * scale / np.sqrt(input_size)
    R = (
        rng.standard_normal((directions, 3 * hidden_size, hidden_size))
        * scale
        / np.sqrt(hidden_size)
    )
    B = rng.standard_normal((directions, 6 * hidden_size)) * scale if bias else None
    return W.astype(dtype), R.astype(dtype), None if B is None else B.astype(dtype)


def check(
    rng,
    *,
    batch,
    steps,
    input_size,
    hidden_size,
    dtype=np.float32,
    lbr=True,
    direction="forward",
    threads=1,
    lengths=False,
    mask=False,
    h0=False,
    bias=True,
    activations=("sigmoid", "tanh"),
):
    D = 2 if direction == "bidirectional" else 1
    W, R, B = weights(rng, input_size, hidden_size, D, dtype, bias)
    layer = gru_infer.GRU(
        W, R, B, linear_before_reset=lbr, direction=direction, activations=activations
    )
    x = rng.standard_normal((batch, steps, input_size)).astype(dtype)
    kwargs = {}
    if h0:
        kwargs["initial_state"] = rng.standard_normal((D, batch, hidden_size)).astype(dtype)
    if lengths:
        lens = rng.integers(0, steps + 1, size=batch)
        lens[0] = steps
        kwargs["lengths"] = lens
    if mask:
        kwargs["mask"] = rng.random((batch, steps)) > 0.3
    y, h_n = layer(x, num_threads=threads, **kwargs)
    y_ref, h_ref = gru_reference(
        x, W, R, B, linear_before_reset=lbr, direction=direction, activations=activations, **kwargs
    )
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=tol)


# hidden sizes around every panel width and the 64-column block; input sizes around K blocks
HIDDEN = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 48, 63, 65]
INPUT = [1, 2, 13, 256, 511, 512, 513]
BATCH = [1, 2, 3, 4, 6, 7, 12, 13, 25]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden_size", HIDDEN)
def test_hidden_sizes_around_panel_widths(isa, dtype, hidden_size, rng):
    for lbr in (True, False):
        check(rng, batch=3, steps=4, input_size=5, hidden_size=hidden_size, dtype=dtype, lbr=lbr)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", BATCH)
def test_batch_row_blocks(isa, dtype, batch, rng):
    # steps 1: the recurrent products alone; steps 3: projections of batch * 3 rows too
    for steps in (1, 3):
        check(rng, batch=batch, steps=steps, input_size=11, hidden_size=20, dtype=dtype, h0=True)


@pytest.mark.parametrize("input_size", INPUT)
def test_input_sizes_around_k_blocks(isa, input_size, rng):
    check(rng, batch=2, steps=3, input_size=input_size, hidden_size=17)
    check(rng, batch=14, steps=2, input_size=input_size, hidden_size=9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_rows_projection_blocks(isa, dtype, rng):
    # batch x steps = 240 rows in one projection: past the 96-row blocks of the vector-type kernel
    check(rng, batch=20, steps=12, input_size=21, hidden_size=19, dtype=dtype)


@pytest.mark.parametrize("hidden_size", [250, 520])
def test_large_hidden_size_k_and_panel_blocks(isa, hidden_size, rng):
    # H 520: K = H crosses the 512 block and 3 * Hp > 1024 columns the panel block
    check(rng, batch=13, steps=3, input_size=40, hidden_size=hidden_size, h0=True)
    check(rng, batch=1, steps=3, input_size=40, hidden_size=hidden_size, lbr=False)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lbr", [True, False])
def test_threads_directions_variants(isa, threads, direction, lbr, rng):
    # units split across the team (H=70: 5 to 9 panels), and batch rows too when units are few (H=6)
    for batch, hidden_size in ((1, 70), (5, 70), (13, 6)):
        check(
            rng,
            batch=batch,
            steps=6,
            input_size=9,
            hidden_size=hidden_size,
            lbr=lbr,
            direction=direction,
            threads=threads,
            h0=True,
        )


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_calls_split_by_batch_rows(isa, threads, direction, rng):
    # 8 rows a thread or more: each thread runs whole calls for its own rows (one or two
    # ranges a thread); with lengths, masks, h0, both variants, and a time chunk boundary
    for batch in (16, 33, 50):
        for lbr in (True, False):
            check(rng, batch=batch, steps=5, input_size=7, hidden_size=21, lbr=lbr,
                  direction=direction, threads=threads, lengths=batch == 33, mask=batch == 50,
                  h0=True)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lengths_and_masks(isa, threads, direction, rng):
    for lbr in (True, False):
        check(
            rng,
            batch=7,
            steps=9,
            input_size=6,
            hidden_size=19,
            lbr=lbr,
            direction=direction,
            threads=threads,
            lengths=True,
            h0=True,
        )
        check(
            rng,
            batch=7,
            steps=9,
            input_size=6,
            hidden_size=19,
            lbr=lbr,
            direction=direction,
            threads=threads,
            mask=True,
        )


@pytest.mark.parametrize(
    "activations",
    [("hard_sigmoid", "tanh"), ("sigmoid", "relu"), ("sigmoid", "softsign"), ("sigmoid", "linear")],
)
def test_activations(isa, activations, rng):
    check(rng, batch=3, steps=5, input_size=4, hidden_size=21, activations=activations)
    check(
        rng,
        batch=3,
        steps=5,
        input_size=4,
        hidden_size=21,
        activations=activations,
        dtype=np.float64,
        lbr=False,
    )


def test_time_chunks(isa, rng):
    # 64 rows x 3 x 512 units of float32 is 393 KB a step: 1 MB chunks hold 2 steps, so 30
    # steps are fifteen chunks (each row's own range of steps under lengths, reversed too)
    for direction in ("forward", "reverse"):
        check(
            rng,
            batch=64,
            steps=30,
            input_size=3,
            hidden_size=512,
            direction=direction,
            lengths=True,
            threads=2,
        )


def test_no_bias_and_zero_sizes(isa, rng):
    check(rng, batch=2, steps=3, input_size=3, hidden_size=5, bias=False)
    layer = gru_infer.GRU(*weights(rng, 3, 4, 2, np.float32), direction="bidirectional")
    y, h_n = layer(np.zeros((0, 5, 3), np.float32))
    assert y.shape == (0, 5, 8) and h_n.shape == (2, 0, 4)
    h0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y, h_n = layer(np.zeros((3, 0, 3), np.float32), initial_state=h0)
    assert y.shape == (3, 0, 8)
    np.testing.assert_array_equal(h_n, h0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generic_blas_and_kernel_paths_agree(dtype, rng):
    """The generic set's many-row products through BLAS and through its own loop."""
    before = _core.isa_current()
    _core.isa_select("generic")
    try:
        for path in ("blas", "kernel"):
            _core.set_projection_path(path)
            check(rng, batch=5, steps=8, input_size=30, hidden_size=70, dtype=dtype, threads=2)
            check(rng, batch=20, steps=2, input_size=7, hidden_size=9, dtype=dtype)
    finally:
        _core.set_projection_path("auto")
        _core.isa_select(before)


def test_every_kernel_set_gives_the_same_answer(rng):
    W, R, B = weights(rng, 37, 45, 1, np.float32)
    layer = gru_infer.GRU(W, R, B)
    x = rng.standard_normal((5, 6, 37)).astype(np.float32)
    before = _core.isa_current()
    outputs = {}
    try:
        for name in RUNNABLE:
            _core.isa_select(name)  # the layer packs again on its next call
            outputs[name] = layer(x)[0]
    finally:
        _core.isa_select(before)
    for name, y in outputs.items():
        np.testing.assert_allclose(y, outputs["generic"], rtol=0, atol=1e-5, err_msg=name)


# ---- Dense ---------------------------------------------------------------------------------


def numpy_dense(x, kernel, bias, activation):
    y = x.astype(np.float64) @ kernel.astype(np.float64)
    if bias is not None:
        y += bias
    if activation == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if activation == "log_softmax":
        top = y.max(axis=-1, keepdims=True)
        return y - top - np.log(np.exp(y - top).sum(axis=-1, keepdims=True))
    return {
        "linear": lambda v: v,
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "tanh": np.tanh,
        "relu": lambda v: np.maximum(v, 0),
    }[activation](y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (1, 128, 1), (5, 7, 17), (13, 300, 33), (100, 16, 16), (3, 40, 600)]
)
@pytest.mark.parametrize(
    "activation", ["linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax"]
)
def test_dense_matches_numpy(isa, dtype, shape, activation, rng):
    rows, n_in, n_out = shape
    kernel = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    x = rng.standard_normal((rows, n_in)).astype(dtype)
    expected = numpy_dense(x, kernel, bias, activation)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for threads in (1, 2, 3):
        for b in (bias, None):
            y = np.zeros((rows, n_out), dtype)
            dense = _core.PackedDense(dtype, kernel, b, _core.activation_code(activation))
            _core.Program([_core.DenseOp(dense, x, y, threads)], [x], [y], []).run()
            want = expected if b is not None else numpy_dense(x, kernel, None, activation)
            np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


# ---- the kernel-set and thread API --------------------------------------------------------


def test_isa_list_and_select():
    names = [name for name, _ in _core.isa_list()]
    assert "generic" in RUNNABLE and names[-1] == "generic"
    assert _core.isa_current() in RUNNABLE
    before = _core.isa_current()
    try:
        for name in RUNNABLE:
            _core.isa_select(name)
            assert _core.isa_current() == name
        _core.isa_select("auto")
        assert _core.isa_current() == RUNNABLE[0]
    finally:
        _core.isa_select(before)
    with pytest.raises(ValueError, match="unknown kernel set"):
        _core.isa_select("sse9")
    for name in set(names) - set(RUNNABLE):
        with pytest.raises(ValueError, match="does not run on this CPU"):
            _core.isa_select(name)


def test_thread_config():
    assert _core.has_openmp() is False  # the core's own pthread pool replaced OpenMP
    assert _core.max_threads() >= 1
    assert _core.max_threads() <= (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )


def run_python(code, env=None, timeout=60):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", RUNNABLE)
def test_environment_picks_the_kernel_set(name):
    out = run_python(
        "from gru_infer.runtime import _core; print(_core.isa_current())", env={"GRU_INFER_ISA": name}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == name


def test_environment_with_an_unknown_name_warns_and_uses_the_best():
    out = run_python(
        "from gru_infer.runtime import _core; print(_core.isa_current())", env={"GRU_INFER_ISA": "nonesuch"}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == RUNNABLE[0]
    assert "GRU_INFER_ISA" in out.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_after_threads_in_the_parent():
    """A layer run on 2 threads, then a fork()ed child runs it at 1, 2 and 3 threads."""
    code = """
        import os, sys, numpy as np, gru_infer
        rng = np.random.default_rng(0)
        H, I = 64, 16
        layer = gru_infer.GRU(rng.standard_normal((1, 3 * H, I)).astype(np.float32) * 0.1,
                              rng.standard_normal((1, 3 * H, H)).astype(np.float32) * 0.1)
        x = rng.standard_normal((4, 20, I)).astype(np.float32)
        want = layer(x, num_threads=1)[0]
        for parent in (1, 2):
            layer(x, num_threads=parent)
            for child in (1, 2, 3, None):
                pid = os.fork()
                if pid == 0:
                    ok = np.allclose(layer(x, num_threads=child)[0], want, atol=1e-5)
                    os._exit(0 if ok else 3)
                _, status = os.waitpid(pid, 0)
                if status != 0:
                    print("child failed", parent, child, status); sys.exit(1)
        print("ok")
    """
    out = run_python(code, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.stdout, out.stderr)


# ---- the C driver (no Python), natively and for aarch64 under qemu when the tools exist --------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_c_driver(cc, out, extra=()):
    sources = sorted(
        os.path.join(REPO, "src_c", f)
        for f in os.listdir(os.path.join(REPO, "src_c"))
        if f.endswith(".c")
    )
    cmd = [
        cc,
        "-O2",
        "-std=gnu99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pthread",
        *extra,
        "-I" + os.path.join(REPO, "src_c"),
        os.path.join(REPO, "tests", "c", "test_core.c"),
        *sources,
        "-lm",
        "-o",
        out,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_driver_native(tmp_path):
    """Every kernel set this CPU runs, every precision, against the driver's own reference."""
    exe = str(tmp_path / "test_core")
    built = build_c_driver("cc", exe)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([exe], capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for name in RUNNABLE:
        for precision in ("float32", "bfloat16", "int8"):
            assert f"{name} {precision}: largest error" in ran.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_driver_built_without_threads(tmp_path):
    """The branch compilers without GNU atomics get (every section run by the caller)
    builds warning-free and computes the same."""
    exe = str(tmp_path / "test_core_no_threads")
    built = build_c_driver("cc", exe, extra=("-DGRU_NO_THREADS",))
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([exe, "--quick"], capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr


QEMU_AARCH64 = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or QEMU_AARCH64 is None,
    reason="no aarch64 cross compiler and qemu",
)
def test_c_driver_aarch64(tmp_path):
    """The NEON sets under qemu, every precision (a third of the reduced-precision grid:
    tools/test_aarch64.sh runs all of it, and the generic set, which runs natively here);
    a CPU without dot products (Cortex-A53) is told apart and runs the neon set."""
    exe = str(tmp_path / "test_core_arm")
    built = build_c_driver("aarch64-linux-gnu-gcc", exe, ("-static",))
    assert built.returncode == 0, built.stderr

    def qemu(cpu, *args):
        return subprocess.run([QEMU_AARCH64, "-cpu", cpu, exe, *args], capture_output=True,
                              text=True, timeout=600, check=False)

    ran = qemu("max", "--quick", "neon_dotprod", "neon")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for name in ("neon_dotprod", "neon"):
        for precision in ("float32", "bfloat16", "int8"):
            assert f"{name} {precision}: largest error" in ran.stdout
    listed = qemu("cortex-a53", "--list")
    assert "neon_dotprod 0" in listed.stdout.splitlines() and "neon 1" in listed.stdout.splitlines()
    ran = qemu("cortex-a53", "--quick", "neon")
    assert ran.returncode == 0, ran.stdout + ran.stderr
