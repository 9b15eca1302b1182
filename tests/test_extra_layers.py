"""The layers around GRUs (Conv1D, pooling, normalisation, reshaping) against
the plain NumPy reference, over the options that change their arithmetic."""

import itertools

import numpy as np
import pytest

from gru_infer import InputError, Model
from gru_infer.reference import conv1d_reference, layer_norm_reference, pool1d_reference
from gru_infer.spec.extra_layers import (
    BatchNormalization,
    Conv1D,
    Flatten,
    GlobalPooling1D,
    LayerNormalization,
    Permute,
    Pooling1D,
    RepeatVector,
    Reshape,
    Select,
)
from gru_infer.spec.graph import Input, ModelSpec, Node


def run(layer, x, dtype=np.float32, mask_value=None):
    nodes = [Node(layer, (("input", 0),))]
    model = Model(ModelSpec((Input("input", (None,) + x.shape[2:]),), tuple(nodes),
                            ((layer.name, 0),)))
    return model(x.astype(dtype))


@pytest.mark.parametrize("padding, strides, dilation, groups",
                         [case for case in itertools.product(["valid", "same", "causal", (2, 1)], [1, 2, 3],
                                                             [1, 2], [1, 2])
                          if not (case[0] == "causal" and case[1] > 1)])  # Keras refuses these
def test_conv1d_matches_the_reference(padding, strides, dilation, groups, rng):
    kernel = rng.standard_normal((3, 4 // groups, 6)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    layer = Conv1D("conv", kernel, bias, strides=strides, padding=padding, dilation=dilation,
                   groups=groups, activation="relu")
    for steps in (1, 7, 12):
        x = rng.standard_normal((2, steps, 4)).astype(np.float32)
        expected = np.maximum(conv1d_reference(x, kernel, bias, strides=strides,
                                               dilation=dilation, groups=groups,
                                               pads=layer.pads(steps)), 0)
        got = run(layer, x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("mode, pool_size, strides, padding",
                         list(itertools.product(["max", "average"], [1, 2, 3], [1, 2, 3], ["valid", "same"])))
def test_pooling_matches_the_reference(mode, pool_size, strides, padding, rng):
    layer = Pooling1D("pool", mode, pool_size, strides, padding)
    for steps in (1, 5, 8):
        x = rng.standard_normal((2, steps, 3))
        expected = pool1d_reference(x, mode=mode, pool_size=pool_size, strides=strides,
                                    padding=padding)
        np.testing.assert_allclose(run(layer, x), expected, atol=1e-6)  # no weights: float32


def test_normalisations_match_the_reference(rng):
    x = rng.standard_normal((3, 5, 4)) * 3 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    np.testing.assert_allclose(run(LayerNormalization("ln", gamma, beta, 1e-5), x, np.float64),
                               layer_norm_reference(x, gamma, beta, 1e-5), atol=1e-12)
    np.testing.assert_allclose(run(LayerNormalization("ln", None, None, 1e-3, 4), x),
                               layer_norm_reference(x, None, None, 1e-3), atol=1e-6)
    mean, var = rng.standard_normal(4), rng.random(4) + 0.5
    bn = BatchNormalization("bn", mean, var, gamma, beta, 1e-3)
    np.testing.assert_allclose(run(bn, x, np.float64),
                               (x - mean) / np.sqrt(var + 1e-3) * gamma + beta, atol=1e-12)


def test_reshaping_layers(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(Flatten("f"), x), x.reshape(2, 12))
    np.testing.assert_array_equal(run(Reshape("r", (4, 3)), x), x.reshape(2, 4, 3))
    np.testing.assert_array_equal(run(Reshape("r", (-1, 2)), x), x.reshape(2, 6, 2))
    np.testing.assert_array_equal(run(Permute("p", (2, 1)), x), x.transpose(0, 2, 1))
    np.testing.assert_array_equal(run(Select("s", 0, -1), x), x[:, -1])
    np.testing.assert_array_equal(run(Select("s", 1, 2), x), x[:, :, 2])
    np.testing.assert_array_equal(run(GlobalPooling1D("g", "max"), x), x.max(axis=1))
    np.testing.assert_allclose(run(GlobalPooling1D("g", "average"), x), x.mean(axis=1), rtol=1e-6)
    v = rng.standard_normal((2, 5)).astype(np.float32)
    np.testing.assert_array_equal(run(RepeatVector("rv", 3), v), np.repeat(v[:, None], 3, 1))


def test_shape_errors_name_the_layer(rng):
    with pytest.raises(InputError, match="'r'"):
        run(Reshape("r", (5, 5)), rng.standard_normal((2, 3, 4)))
    with pytest.raises(ValueError, match="permutation"):
        Permute("p", (1, 3))
