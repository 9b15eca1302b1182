"""gru_infer.GRU (the C core) against the NumPy reference, and its argument checks."""

import itertools
import threading

import numpy as np
import pytest
from conftest import random_gru_weights

import gru_infer
from gru_infer.reference import activation_function, gru_reference

ACTIVATION_PAIRS = [
    ("sigmoid", "tanh"),
    ("hard_sigmoid", "tanh"),
    ("sigmoid", "relu"),
    ("sigmoid", "sigmoid"),
    ("sigmoid", "linear"),
    ("hard_sigmoid", "softsign"),
]


def make_inputs(rng, batch, steps, input_size, D, hidden_size, dtype, *, h0, lengths, mask):
    x = rng.standard_normal((batch, steps, input_size)).astype(dtype)
    kwargs = {}
    if h0:
        kwargs["initial_state"] = rng.standard_normal((D, batch, hidden_size)).astype(dtype)
    if lengths:
        lens = rng.integers(0, steps + 1, size=batch)
        lens[0] = steps  # one full row, as real batches have
        kwargs["lengths"] = lens
    if mask:
        kwargs["mask"] = rng.random((batch, steps)) > 0.3
    return x, kwargs


def check_against_reference(rng, *, batch, steps, input_size, hidden_size, lbr, direction, bias,
                            h0, lengths, mask, activations, hard_sigmoid="keras3",
                            dtype=np.float32, num_threads=None):
    W, R, B = random_gru_weights(rng, input_size, hidden_size, direction, bias, dtype)
    layer = gru_infer.GRU(W, R, B, linear_before_reset=lbr, direction=direction,
                          activations=activations, hard_sigmoid=hard_sigmoid)
    x, kwargs = make_inputs(rng, batch, steps, input_size, layer.num_directions, hidden_size,
                            dtype, h0=h0, lengths=lengths, mask=mask)
    y, h_n = layer(x, num_threads=num_threads, **kwargs)
    y_ref, h_ref = gru_reference(x, W, R, B, linear_before_reset=lbr, direction=direction,
                                 activations=activations, hard_sigmoid=hard_sigmoid, **kwargs)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    assert y.dtype == dtype and h_n.dtype == dtype
    assert y.shape == (batch, steps, layer.output_size)
    assert h_n.shape == (layer.num_directions, batch, hidden_size)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=tol)


def seeded_grid(count, seed):
    """A reproducible sample of the full option grid in which every value of
    every axis appears."""
    rng = np.random.default_rng(seed)
    axes = dict(
        batch=[1, 3, 8],
        steps=[0, 1, 7, 50],
        sizes=[(1, 1), (5, 3), (100, 13), (17, 64), (300, 40), (24, 300)],
        lbr=[True, False],
        direction=["forward", "reverse", "bidirectional"],
        bias=[True, False],
        h0=[True, False],
        lengths=[True, False],
        mask=[True, False],
        activations=ACTIVATION_PAIRS,
    )
    cases = []
    for i in range(count):
        case = {k: v[rng.integers(len(v))] for k, v in axes.items()}
        # every value of every axis at least once
        for k, v in axes.items():
            if i < len(v):
                case[k] = v[i]
        if case["sizes"][1] >= 300 and case["steps"] == 50:
            case["steps"] = 7  # keeps the reference affordable
        cases.append(case)
    return cases


@pytest.mark.parametrize("case", seeded_grid(120, seed=7), ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.items() if k in ("batch", "steps", "sizes", "direction", "lbr")))
def test_float32_matches_reference(case, rng):
    (input_size, hidden_size) = case.pop("sizes")
    check_against_reference(rng, input_size=input_size, hidden_size=hidden_size, **case)


@pytest.mark.parametrize("case", seeded_grid(40, seed=8), ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.items() if k in ("batch", "steps", "sizes", "direction", "lbr")))
def test_float64_matches_reference(case, rng):
    (input_size, hidden_size) = case.pop("sizes")
    check_against_reference(rng, input_size=input_size, hidden_size=hidden_size,
                            dtype=np.float64, **case)


@pytest.fixture(params=["blas", "packed"])
def projection_path(request):
    """Both ways of computing input projections, pinned to the reference."""
    from gru_infer.runtime import _core

    _core.set_projection_path(request.param)
    yield request.param
    _core.set_projection_path("auto")


@pytest.mark.parametrize("case", seeded_grid(30, seed=9), ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.items() if k in ("batch", "steps", "sizes", "direction", "lbr")))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_projection_paths_match_reference(case, dtype, projection_path, rng):
    case = dict(case)
    (input_size, hidden_size) = case.pop("sizes")
    check_against_reference(rng, input_size=input_size, hidden_size=hidden_size, dtype=dtype,
                            **case)


@pytest.mark.parametrize("hard_sigmoid", ["keras2", "keras3"])
def test_hard_sigmoid_definitions_differ_and_match(hard_sigmoid, rng):
    check_against_reference(rng, batch=3, steps=6, input_size=4, hidden_size=5, lbr=True,
                            direction="forward", bias=True, h0=False, lengths=False, mask=False,
                            activations=("hard_sigmoid", "tanh"), hard_sigmoid=hard_sigmoid)
    v = np.array([-3.0, -1.0, 0.5, 2.0])
    assert not np.allclose(activation_function("hard_sigmoid", "keras2")(v),
                           activation_function("hard_sigmoid", "keras3")(v))


@pytest.mark.parametrize("batch", [1, 5, 6, 7, 13, 17, 97])
@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_kernel_paths_and_thread_counts(batch, num_threads, rng):
    """Batch sizes around the kernel's 6-row blocks and the projection's
    96-row blocks, over thread counts that split the panels unevenly."""
    for steps, lbr in itertools.product([1, 2], [True, False]):
        check_against_reference(rng, batch=batch, steps=steps, input_size=33, hidden_size=70,
                                lbr=lbr, direction="bidirectional", bias=True, h0=True,
                                lengths=False, mask=False, activations=("sigmoid", "tanh"),
                                num_threads=num_threads)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_long_sequences_are_chunked_exactly(direction, projection_path, rng):
    """16 x 400 steps x 3*256 floats exceeds the core's 8 MB projection chunk:
    several chunks, per-row GEMMs, rows of different lengths."""
    check_against_reference(rng, batch=16, steps=400, input_size=8, hidden_size=256, lbr=True,
                            direction=direction, bias=True, h0=False, lengths=True, mask=True,
                            activations=("sigmoid", "tanh"))


def test_reference_single_step_by_hand():
    """The reference itself, on one step small enough to write out."""
    W = np.array([[[1.0]], [[2.0]], [[3.0]]]).reshape(1, 3, 1)
    R = np.array([[[0.5]], [[-1.0]], [[0.25]]]).reshape(1, 3, 1)
    B = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    x, h = 0.7, 0.9
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    z = sig(1 * x + 0.1 + 0.5 * h + 0.4)
    r = sig(2 * x + 0.2 - 1 * h + 0.5)
    n_lbr = np.tanh(3 * x + 0.3 + r * (0.25 * h + 0.6))
    n_rbm = np.tanh(3 * x + 0.3 + 0.25 * (r * h) + 0.6)
    for lbr, n in ((True, n_lbr), (False, n_rbm)):
        y, h_n = gru_reference(np.array([[[x]]]), W, R, B, linear_before_reset=lbr,
                               initial_state=np.array([[[h]]]))
        assert np.isclose(h_n[0, 0, 0], (1 - z) * n + z * h)


def test_four_threads_share_one_layer(rng):
    W, R, B = random_gru_weights(rng, 20, 48, "bidirectional")
    layer = gru_infer.GRU(W, R, B, direction="bidirectional")
    inputs = [rng.standard_normal((4, 30, 20)).astype(np.float32) for _ in range(4)]
    expected = [layer(x, num_threads=1) for x in inputs]
    results = [None] * 4

    def work(i):
        for _ in range(20):
            y, h_n = layer(inputs[i], num_threads=2)
            if not (np.array_equal(y, expected[i][0]) and np.array_equal(h_n, expected[i][1])):
                results[i] = "mismatch"
                return
        results[i] = "ok"

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["ok"] * 4


def test_zero_batch_and_zero_steps(rng):
    W, R, B = random_gru_weights(rng, 3, 4, "bidirectional")
    layer = gru_infer.GRU(W, R, B, direction="bidirectional")
    y, h_n = layer(np.zeros((0, 5, 3), np.float32))
    assert y.shape == (0, 5, 8) and h_n.shape == (2, 0, 4)
    h0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    y, h_n = layer(np.zeros((2, 0, 3), np.float32), initial_state=h0)
    assert y.shape == (2, 0, 8)
    np.testing.assert_array_equal(h_n, h0)
    _, h_n = layer(np.zeros((2, 0, 3), np.float32))
    np.testing.assert_array_equal(h_n, 0)


def test_length_zero_returns_initial_state(rng):
    W, R, B = random_gru_weights(rng, 3, 4, "bidirectional")
    layer = gru_infer.GRU(W, R, B, direction="bidirectional")
    h0 = rng.standard_normal((2, 2, 4)).astype(np.float32)
    y, h_n = layer(rng.standard_normal((2, 5, 3)), initial_state=h0, lengths=[5, 0])
    np.testing.assert_array_equal(h_n[:, 1], h0[:, 1])
    np.testing.assert_array_equal(y[1], 0)


def test_inputs_in_any_layout_and_byte_order(rng):
    W, R, B = random_gru_weights(rng, 6, 5)
    layer = gru_infer.GRU(W, R, B)
    x = rng.standard_normal((3, 8, 6)).astype(np.float32)
    expected, _ = layer(x)
    strided = np.asfortranarray(x)
    np.testing.assert_array_equal(layer(strided)[0], expected)
    big = np.zeros((3, 16, 12), np.float32)
    big[:, ::2, ::2] = x
    np.testing.assert_array_equal(layer(big[:, ::2, ::2])[0], expected)
    np.testing.assert_array_equal(layer(x.astype(">f4"))[0], expected)
    np.testing.assert_allclose(layer(x.astype(np.float64))[0], expected, atol=1e-6)
    assert layer(x.astype(np.float16))[0].dtype == np.float32
    # big-endian weights are converted too
    other = gru_infer.GRU(W.astype(">f4"), R.astype(">f4"), B.astype(">f4"))
    np.testing.assert_array_equal(other(x)[0], expected)


def test_nan_and_inf_propagate(rng):
    W, R, B = random_gru_weights(rng, 4, 6)
    layer = gru_infer.GRU(W, R, B)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    x[0, 2, 1] = np.nan
    x[1, 3, 0] = np.inf
    y, h_n = layer(x)
    assert np.isnan(y[0, 2:]).all() and np.isfinite(y[0, :2]).all()
    assert np.isnan(h_n[0, 0]).all()
    y_ref, h_ref = gru_reference(x, W, R, B)  # inf saturates the gates, as in NumPy
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h_n, h_ref, atol=1e-5)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda l: l(np.zeros((2, 3), np.float32)), ValueError, "x must have shape"),
        (lambda l: l(np.zeros((2, 3, 5), np.float32)), ValueError, "got (2, 3, 5)"),
        (lambda l: l(np.zeros((2, 3, 4), np.int32)), TypeError, "int32"),
        (lambda l: l(np.zeros((2, 3, 4), np.complex64)), TypeError, "complex64"),
        (lambda l: l(np.zeros((2, 3, 4)), initial_state=np.zeros((1, 3, 6))), ValueError,
         "initial_state must have shape"),
        (lambda l: l(np.zeros((2, 3, 4)), lengths=[1, 4]), ValueError, "lengths must lie in [0, 3]"),
        (lambda l: l(np.zeros((2, 3, 4)), lengths=[-1, 2]), ValueError, "lengths must lie"),
        (lambda l: l(np.zeros((2, 3, 4)), lengths=[1, 2, 3]), ValueError, "lengths must have shape"),
        (lambda l: l(np.zeros((2, 3, 4)), lengths=[1.5, 2]), TypeError, "lengths must be integers"),
        (lambda l: l(np.zeros((2, 3, 4)), mask=np.ones((2, 4), bool)), ValueError,
         "mask must have shape"),
        (lambda l: l(np.zeros((2, 3, 4)), mask=np.ones((2, 3))), TypeError, "mask must be boolean"),
        (lambda l: l(np.zeros((2, 3, 4)), num_threads=0), ValueError, "num_threads"),
    ],
)
def test_bad_call_arguments_are_named(call, error, words, rng):
    W, R, B = random_gru_weights(rng, 4, 6)
    layer = gru_infer.GRU(W, R, B)
    with pytest.raises(error, match=None) as info:
        call(layer)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(W=np.zeros((1, 9, 4), np.int64)), TypeError, "W must be float32 or float64"),
        (dict(W=np.zeros((1, 10, 4), np.float32)), ValueError, "3*hidden_size"),
        (dict(W=np.zeros((2, 9, 4), np.float32)), ValueError, "num_directions=1"),
        (dict(R=np.zeros((1, 9, 4), np.float32)), ValueError, "R must have shape"),
        (dict(B=np.zeros((1, 9), np.float32)), ValueError, "B must have shape"),
        (dict(direction="sideways"), ValueError, "direction must be one of"),
        (dict(activations=("sigmoid", "gelu")), ValueError, "unsupported GRU activation"),
        (dict(hard_sigmoid="keras4"), ValueError, "hard_sigmoid must be one of"),
    ],
)
def test_bad_weights_are_named(kwargs, error, words):
    args = dict(W=np.zeros((1, 9, 4), np.float32), R=np.zeros((1, 9, 3), np.float32),
                B=np.zeros((1, 18), np.float32))
    args.update(kwargs)
    W, R, B = args.pop("W"), args.pop("R"), args.pop("B")
    with pytest.raises(error) as info:
        gru_infer.GRU(W, R, B, **args)
    assert words in str(info.value)


def test_set_num_threads():
    gru_infer.set_num_threads(1)
    assert gru_infer.get_num_threads() == 1
    gru_infer.set_num_threads(None)
    assert gru_infer.get_num_threads() >= 1
    with pytest.raises(ValueError):
        gru_infer.set_num_threads(0)


def _unaligned(array):
    """A copy of array that starts one byte past an aligned address (as arrays rebuilt
    from pickled or framed bytes can); the C core must never read it through a typed
    pointer (the sanitizer job's UBSan reports such a load)."""
    raw = np.zeros(array.nbytes + 1, np.uint8)
    copy = np.frombuffer(raw.data, array.dtype, array.size, offset=1).reshape(array.shape)
    copy[...] = array
    assert not copy.flags.aligned
    return copy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unaligned_weights_and_inputs_give_the_aligned_results(dtype, rng):
    W, R, B = random_gru_weights(rng, 5, 7, "bidirectional", dtype=dtype)
    x = rng.standard_normal((3, 6, 5)).astype(dtype)
    h0 = rng.standard_normal((2, 3, 7)).astype(dtype)
    lengths = np.array([6, 2, 4], np.int64)
    expected = gru_infer.GRU(W, R, B, direction="bidirectional")(x, h0, lengths)
    layer = gru_infer.GRU(_unaligned(W), _unaligned(R), _unaligned(B), direction="bidirectional")
    got = layer(_unaligned(x), _unaligned(h0), _unaligned(lengths))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    kernel, bias = rng.standard_normal((14, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)
    models = [gru_infer.Model.sequential(
        [gru_infer.spec.layers.Recurrent("gru", [gru_infer.spec.layers.GRUCell(*cell)
                                                 for cell in zip(*weights)]),
         gru_infer.spec.layers.Dense("head", k, b)], input_shape=(None, 5))
        for weights, k, b in (((W, R, B), kernel, bias),
                              (([_unaligned(w) for w in W], [_unaligned(r) for r in R],
                                [_unaligned(b) for b in B]), _unaligned(kernel), _unaligned(bias)))]
    np.testing.assert_array_equal(models[1](x), models[0](x))
