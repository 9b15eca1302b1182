"""Stated forwards (convert(..., forward=[...])) for PyTorch state dicts, and
the warning that shows the forward gru_infer assumed when none is stated."""

import warnings

import numpy as np
import pytest

from gru_infer import GruInferWarning, Model
from gru_infer.converters.torch import TorchConversionError, convert_state_dict
from gru_infer.reference import gru_reference


def _gru_state(rng, prefix, I, H, layers=1, bidirectional=False):
    state = {}
    for k in range(layers):
        for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
            n_in = I if k == 0 else H * (2 if bidirectional else 1)
            state[f"{prefix}weight_ih_l{k}{suffix}"] = rng.standard_normal((3 * H, n_in)) * 0.5
            state[f"{prefix}weight_hh_l{k}{suffix}"] = rng.standard_normal((3 * H, H)) * 0.5
            state[f"{prefix}bias_ih_l{k}{suffix}"] = rng.standard_normal(3 * H) * 0.5
            state[f"{prefix}bias_hh_l{k}{suffix}"] = rng.standard_normal(3 * H) * 0.5
    return {k: v.astype(np.float32) for k, v in state.items()}


def _torch_gru(x, state, prefix, layer, suffix=""):
    """One nn.GRU layer by the NumPy reference, PyTorch's r, z, n gates -> z, r, n."""
    def canon(a):
        r, z, n = np.split(a, 3)
        return np.concatenate([z, r, n])
    get = lambda n: state[f"{prefix}{n}_l{layer}{suffix}"]  # noqa: E731
    B = np.concatenate([canon(get("bias_ih")), canon(get("bias_hh"))])
    return gru_reference(x, canon(get("weight_ih")), canon(get("weight_hh")), B,
                         direction="reverse" if suffix else "forward")


def _linear(rng, n_in, n_out):
    return {"weight": rng.standard_normal((n_out, n_in)).astype(np.float32),
            "bias": rng.standard_normal(n_out).astype(np.float32)}


def _stated(state, forward, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("error", GruInferWarning)  # a stated forward assumes nothing
        return Model(convert_state_dict(state, forward=forward, **options))


def test_relu_before_the_head_on_the_last_step(rng):
    fc = _linear(rng, 6, 2)
    state = _gru_state(rng, "gru.", 3, 6, layers=2) | {f"fc.{k}": v for k, v in fc.items()}
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    y0, _ = _torch_gru(x, state, "gru.", 0)
    y1, _ = _torch_gru(y0, state, "gru.", 1)
    expected = np.maximum(y1[:, -1], 0) @ fc["weight"].T + fc["bias"]
    model = _stated(state, ["gru", "last_step", "relu", "fc"])
    np.testing.assert_allclose(model(x), expected, atol=1e-5)
    assert "forward: ['gru', 'last_step', 'relu', 'fc']" in model.summary()


def test_two_gru_modules_chain(rng):
    fc = _linear(rng, 4, 1)
    state = _gru_state(rng, "gru1.", 3, 5) | _gru_state(rng, "gru2.", 5, 4) | {
        f"fc.{k}": v for k, v in fc.items()}
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    y1, _ = _torch_gru(x, state, "gru1.", 0)
    y2, _ = _torch_gru(y1, state, "gru2.", 0)
    model = _stated(state, "gru1, gru2, last_step, fc")
    np.testing.assert_allclose(model(x), y2[:, -1] @ fc["weight"].T + fc["bias"], atol=1e-5)


@pytest.mark.parametrize("selector", ["final_state", "final_states", "last_step"])
def test_state_selectors_of_a_bidirectional_gru(selector, rng):
    state = _gru_state(rng, "rnn.", 3, 4, bidirectional=True)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y_f, h_f = _torch_gru(x, state, "rnn.", 0)
    y_b, h_b = _torch_gru(x, state, "rnn.", 0, "_reverse")
    expected = {"final_state": h_b[0], "final_states": np.concatenate([h_f[0], h_b[0]], 1),
                "last_step": np.concatenate([y_f[:, -1], y_b[:, -1]], 1)}[selector]
    model = _stated(state, ["rnn", selector])
    np.testing.assert_allclose(model(x), expected, atol=1e-5)


def test_an_embedding_first_makes_a_token_model(rng):
    table = rng.standard_normal((10, 3)).astype(np.float32)
    state = {"embed.weight": table} | _gru_state(rng, "gru.", 3, 4)
    ids = np.array([[1, 2, 9], [0, 4, 4]])
    y, _ = _torch_gru(table[ids], state, "gru.", 0)
    model = _stated(state, ["embed", "gru", "last_step", "sigmoid"])
    np.testing.assert_allclose(model(ids), 1 / (1 + np.exp(-y[:, -1])), atol=1e-5)


def test_without_forward_the_assumed_one_is_shown(rng):
    fc = _linear(rng, 4, 2)
    state = _gru_state(rng, "gru.", 3, 4) | {f"fc.{k}": v for k, v in fc.items()}
    with pytest.warns(GruInferWarning, match=r"assumed forward=\['gru', 'fc', 'sigmoid'\]"):
        spec = convert_state_dict(state, head_activation="sigmoid")
    assert "(assumed: no forward= was given)" in Model(spec).summary()
    with pytest.warns(GruInferWarning, match=r"forward=\['gru', 'final_states', 'fc'\]"):
        convert_state_dict(state, head_on="last_step")


def test_stated_forwards_refuse_what_they_cannot_honour(rng):
    state = _gru_state(rng, "gru.", 3, 4) | {"fc.weight": rng.standard_normal((2, 4)).astype(np.float32),
                                             "norm.weight": np.ones(4, np.float32)}
    with pytest.raises(TorchConversionError, match="left unused: norm.weight"):
        _stated(state, ["gru", "fc"])
    with pytest.raises(TorchConversionError, match="drop \\['head_on'\\]"):
        _stated(state, ["gru", "fc"], head_on="last_step")
    with pytest.raises(TorchConversionError, match="'decoder' is not a module.*'fc', 'gru'"):
        _stated(state, ["gru", "decoder"])
    with pytest.raises(TorchConversionError, match="must follow a GRU"):
        _stated(state, ["fc", "last_step"], strict=False)
    model = _stated(state, ["gru", "last_step", "fc"], strict=False)
    assert model.layers[-1].units == 2


def test_modules_named_as_forward_names_them_inside_a_training_checkpoint(rng):
    """A checkpoint keeps the model's state dict under its own key ("model_state_dict.");
    forward= names modules as the model does, and a name two modules end with is refused."""
    fc = _linear(rng, 6, 2)
    inner = _gru_state(rng, "encoder.rnn.", 3, 6) | {f"fc.{k}": v for k, v in fc.items()}
    state = {f"model_state_dict.{k}": v for k, v in inner.items()}
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y, _ = _torch_gru(x, inner, "encoder.rnn.", 0)
    expected = y[:, -1] @ fc["weight"].T + fc["bias"]
    for forward in (["encoder.rnn", "last_step", "fc"], ["rnn", "last_step", "fc"],
                    ["model_state_dict.encoder.rnn", "last_step", "model_state_dict.fc"]):
        np.testing.assert_allclose(_stated(state, forward)(x), expected, atol=1e-5)
    twice = state | {f"ema.{k}": v for k, v in inner.items()}
    with pytest.raises(TorchConversionError, match="'encoder.rnn' names several modules.*'ema.encoder.rnn'"):
        _stated(twice, ["encoder.rnn", "last_step", "fc"], strict=False)
