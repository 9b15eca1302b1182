"""The core's vectorised activations against float64 NumPy over a dense grid."""

import numpy as np
import pytest

from gru_infer.runtime import _core

GRID = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-1, 1, 200_001),
                       [0.0, -0.0, 88.0, -87.5, 1e-30, -1e-30]])
EXACT = {
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "tanh": np.tanh,
    "hard_sigmoid_keras2": lambda v: np.clip(0.2 * v + 0.5, 0, 1),
    "hard_sigmoid_keras3": lambda v: np.clip(v / 6 + 0.5, 0, 1),
    "relu": lambda v: np.maximum(v, 0),
    "softsign": lambda v: v / (1 + np.abs(v)),
    "linear": lambda v: v,
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_float32_activations_are_accurate(name):
    x = GRID.astype(np.float32)
    got = _core.apply_activation(name, x).astype(np.float64)
    exact = EXACT[name](x.astype(np.float64))
    abs_error = np.abs(got - exact)
    # measured: sigmoid 8.8e-8, tanh 7.5e-8 (under 1 float32 ulp near 1)
    assert abs_error.max() <= 2.5e-7, abs_error.max()
    if name in ("sigmoid", "tanh"):  # the approximations (the rest is float32 arithmetic)
        big = np.abs(exact) > 1e-3
        assert (abs_error[big] / np.abs(exact[big])).max() <= 4e-7


@pytest.mark.parametrize("name", sorted(EXACT))
def test_float64_activations_are_exact(name):
    got = _core.apply_activation(name, GRID)
    np.testing.assert_allclose(got, EXACT[name](GRID), rtol=1e-14, atol=1e-15)


def test_nan_and_inf():
    x = np.array([np.nan, np.inf, -np.inf], np.float32)
    sig = _core.apply_activation("sigmoid", x)
    assert np.isnan(sig[0]) and sig[1] == 1 and 0 <= sig[2] < 1e-37  # e^x clamps at x = 88
    tanh = _core.apply_activation("tanh", x)
    assert np.isnan(tanh[0]) and tanh[1] == 1 and tanh[2] == -1
