"""PyTorch checkpoints written by real PyTorch (tools/make_torch_fixtures.py),
converted without torch, against torch's own outputs; live-module conversion
when torch is installed."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import gru_infer
from gru_infer import GruInferWarning, Model
from gru_infer.converters.torch import TorchConversionError, describe_torch_file
from gru_infer.converters.torch import convert_state_dict as convert_state_dict_spec


def convert_state_dict(state, **options):
    return Model(convert_state_dict_spec(state, **options))

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]


def fixture(name):
    return FIXTURES / MANIFEST[name]["checkpoint"], np.load(FIXTURES / MANIFEST[name]["npz"])


def stacked_state(states):
    return np.concatenate(states, axis=0)


@pytest.mark.parametrize("name", ["bigru2_linear_sd", "bigru2_linear_module",
                                  "bigru2_linear_legacy"])
def test_two_layer_bidirectional_gru_with_linear_head(name):
    path, data = fixture(name)
    model = gru_infer.convert(path)
    y, states = model(data["x"], return_state=True)
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(stacked_state(states), data["h_n"], rtol=0, atol=1e-5)


def test_time_major_gru_with_initial_state(tmp_path):
    path, data = fixture("gru_timemajor_h0")
    batch_first = gru_infer.convert(path)  # a state dict does not say its layout
    y = batch_first(data["x"].transpose(1, 0, 2), initial_states=data["h0"])
    np.testing.assert_allclose(y.transpose(1, 0, 2), data["y"], rtol=0, atol=1e-5)
    model = gru_infer.convert(path, batch_first=False)
    y, states = model(data["x"], initial_states=data["h0"], return_state=True)
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(stacked_state(states), data["h_n"], rtol=0, atol=1e-5)
    model.save(tmp_path / "m.safetensors")
    reloaded = gru_infer.load(tmp_path / "m.safetensors")
    assert reloaded.time_major
    stream = reloaded.stream(batch_size=2)
    stream.state = [data["h0"]]
    steps = np.stack([stream.step(data["x"][t]) for t in range(data["x"].shape[0])])
    np.testing.assert_allclose(steps, data["y"], rtol=0, atol=1e-5)


def test_whole_module_pickle_says_its_layout():
    path, data = fixture("bigru2_linear_module")
    assert not gru_infer.convert(path).time_major  # its nn.GRU has batch_first=True


@pytest.mark.parametrize("order", ["sorted", "unsorted"])
def test_packed_sequences(order):
    path, data = fixture("packed")
    x = data["x"] if order == "sorted" else data["x_unsorted"]
    lengths = data["lengths"] if order == "sorted" else data["lengths_unsorted"]
    model = gru_infer.convert(path)
    y, states = model(x, lengths=lengths, return_state=True)
    np.testing.assert_allclose(y, data[f"y_{order}"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(stacked_state(states), data[f"h_n_{order}"], rtol=0, atol=1e-5)


def test_gru_without_bias():
    path, data = fixture("gru_nobias")
    y, states = gru_infer.convert(path)(data["x"], return_state=True)
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(states[0], data["h_n"], rtol=0, atol=1e-5)


def test_training_checkpoint_with_head_on_last_step():
    path, data = fixture("seq_module")
    model = gru_infer.convert(path, head_on="last_step")
    np.testing.assert_allclose(model(data["x"]), data["y"], rtol=0, atol=1e-5)
    every_step = gru_infer.convert(path)
    assert every_step(data["x"]).shape == data["x"].shape[:2] + (2,)


def test_float64_checkpoint_computes_in_float64():
    path, data = fixture("float64")
    y, states = gru_infer.convert(path)(data["x"], return_state=True)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_half_precision_weights_widen_to_float32(name):
    path, data = fixture(name)
    model = gru_infer.convert(path)
    cell = model.recurrent_layers[0].cells[0]
    assert cell.W.dtype == np.float32
    H = cell.R.shape[-1]
    r, z, n = np.split(data["w_weight_ih_l0"], 3)
    np.testing.assert_array_equal(cell.W, np.concatenate([z, r, n]).astype(np.float32))
    assert H * 3 == cell.W.shape[0]


def test_head_activation_option_and_cli_names():
    path, data = fixture("bigru2_linear_sd")
    model = gru_infer.convert(path, head_activation="sigmoid")
    np.testing.assert_allclose(model(data["x"]), 1 / (1 + np.exp(-data["y"])), atol=1e-5)


def test_info_lists_what_it_found():
    path, _ = fixture("seq_module")
    text = describe_torch_file(path)
    assert "model_state_dict.model.encoder.rnn" in text and "hidden_size=6" in text
    assert "model_state_dict.model.decoder" in text and "other tensors" in text


def _random_gru_state(rng, prefix, I, H, layers=1):
    state = {}
    for k in range(layers):
        state[f"{prefix}weight_ih_l{k}"] = rng.standard_normal((3 * H, I if k == 0 else H))
        state[f"{prefix}weight_hh_l{k}"] = rng.standard_normal((3 * H, H))
    return {k: v.astype(np.float32) for k, v in state.items()}


def test_ambiguity_lists_candidates(rng):
    state = _random_gru_state(rng, "enc.", 3, 4) | _random_gru_state(rng, "dec.", 4, 4)
    with pytest.raises(TorchConversionError, match="several GRU stacks.*enc.*dec"):
        convert_state_dict(state)
    assert len(convert_state_dict(state, prefix="dec").recurrent_layers) == 1
    state = _random_gru_state(rng, "", 3, 4) | {
        "a.weight": np.ones((2, 4), np.float32), "b.weight": np.ones((5, 4), np.float32)}
    with pytest.raises(TorchConversionError, match="several nn.Linear.*a \\(4->2\\).*b \\(4->5\\)"):
        convert_state_dict(state)
    assert convert_state_dict(state, head=["b"]).layers[-1].units == 5  # a chosen head
    state["norm.weight"] = np.ones(4, np.float32)  # a LayerNorm, say: not silently dropped
    with pytest.raises(TorchConversionError, match="left unused: norm.weight"):
        convert_state_dict(state, head=["b"])
    assert convert_state_dict(state, head=["b"], strict=False).layers[-1].units == 5
    with pytest.raises(TorchConversionError, match="no nn.GRU"):
        convert_state_dict({"w.weight": np.ones((2, 2), np.float32)})


def test_inconsistent_gru_shapes_are_named(rng):
    state = _random_gru_state(rng, "", 3, 4, layers=2)
    state["weight_hh_l1"] = state["weight_hh_l1"][:, :3]
    with pytest.raises(TorchConversionError, match="weight_hh_l1 is shape"):
        convert_state_dict(state)


# -- live torch, when installed --------------------------------------------------------

@pytest.fixture
def live_torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_from_torch_matches_live_modules(live_torch, bidirectional, num_layers):
    torch = live_torch
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(7, 9, num_layers=num_layers, bidirectional=bidirectional,
                                    batch_first=True)
            self.head = torch.nn.Linear(18 if bidirectional else 9, 4)
            self.act = torch.nn.Softmax(dim=-1)

        def forward(self, x):
            return self.act(self.head(self.gru(x)[0]))

    net = Net().eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 11, 7)
    model = gru_infer.from_torch(net)
    with torch.inference_mode():
        expected = net(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=0, atol=1e-5)


def test_from_torch_packed_unsorted(live_torch):
    torch = live_torch
    torch.manual_seed(1)
    gru = torch.nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(4, 9, 3)
    lengths = torch.tensor([4, 9, 1, 6])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                     enforce_sorted=False)
    h0 = torch.randn(4, 4, 5)
    with torch.inference_mode():
        out, h_n = gru(packed, h0)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=9)
    model = gru_infer.from_torch(gru)
    assert not model.time_major
    got, states = model(x.numpy(), lengths=lengths.numpy(), initial_states=h0.numpy(),
                        return_state=True)
    np.testing.assert_allclose(got, y.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(states), h_n.numpy(), rtol=0, atol=1e-5)


def test_state_dict_saved_as_safetensors(tmp_path):
    """safetensors.torch.save_file(model.state_dict(), ...) files convert too."""
    from safetensors.numpy import save_file

    path, data = fixture("bigru2_linear_sd")
    state = {k[len("sd_"):]: data[k] for k in data.files if k.startswith("sd_")}
    save_file(state, str(tmp_path / "model.safetensors"), {"format": "pt"})
    model = gru_infer.convert(tmp_path / "model.safetensors")
    np.testing.assert_allclose(model(data["x"]), data["y"], rtol=0, atol=1e-5)
    assert model.source["format"] == ".safetensors"
    model.save(tmp_path / "ours.safetensors")  # and our own files simply load
    assert gru_infer.convert(tmp_path / "ours.safetensors").parameter_count == model.parameter_count


def _linear(rng, n_in, n_out):
    return rng.standard_normal((n_out, n_in)).astype(np.float32)


def test_head_chain_follows_registration_order(rng):
    """fc1 8->4, fc2 4->4, fc3 4->2: a square layer in the chain is not a
    second head; a Linear before the GRU is not part of the head."""
    state = {"inp.weight": _linear(rng, 5, 3)} | _random_gru_state(rng, "gru.", 3, 8) | {
        "fc1.weight": _linear(rng, 8, 4), "fc2.weight": _linear(rng, 4, 4),
        "fc3.weight": _linear(rng, 4, 2)}
    with pytest.raises(TorchConversionError, match="left unused: inp.weight"):
        convert_state_dict(state, hidden_activation="relu")
    del state["inp.weight"]
    model = convert_state_dict(state, hidden_activation="relu")
    assert [layer.name for layer in model.layers[1:]] == ["fc1", "fc2", "fc3"]
    state = _random_gru_state(rng, "gru.", 3, 8) | {
        "shared.weight": _linear(rng, 8, 4), "task_a.weight": _linear(rng, 4, 2),
        "task_b.weight": _linear(rng, 4, 3)}
    with pytest.raises(TorchConversionError, match="several nn.Linear.*task_a.*task_b"):
        convert_state_dict(state, hidden_activation="relu")


def test_embedding_before_the_gru_makes_a_token_model(rng):
    table = rng.standard_normal((20, 3)).astype(np.float32)
    state = {"embedding.weight": table} | _random_gru_state(rng, "gru.", 3, 4)
    model = convert_state_dict(state)
    ids = np.array([[1, 5, 19], [0, 2, 2]])
    c = model.recurrent_layers[0].cells[0]
    from gru_infer.reference import gru_reference

    expected, _ = gru_reference(table[ids], c.W, c.R, c.B)
    np.testing.assert_allclose(model(ids), expected, atol=1e-6)


def test_weight_norm_is_folded(rng):
    state = _random_gru_state(rng, "gru.", 3, 4)
    weight = state.pop("gru.weight_ih_l0")
    v = rng.standard_normal(weight.shape).astype(np.float32)
    g = (np.linalg.norm(weight, axis=1, keepdims=True)).astype(np.float32)
    v_scaled = v / np.linalg.norm(v, axis=1, keepdims=True) * np.linalg.norm(weight, axis=1, keepdims=True)
    folded_target = g * v / np.linalg.norm(v, axis=1, keepdims=True)
    state = {"gru.parametrizations.weight_ih_l0.original0": g,
             "gru.parametrizations.weight_ih_l0.original1": v} | state
    model = convert_state_dict(state)
    r, z, n = np.split(folded_target, 3)
    np.testing.assert_allclose(model.recurrent_layers[0].cells[0].W,
                               np.concatenate([z, r, n]), rtol=1e-6)
    assert np.allclose(v_scaled, folded_target, rtol=1e-5)


def test_other_recurrent_layers_are_named(rng):
    lstm = {"weight_ih_l0": _linear(rng, 3, 16), "weight_hh_l0": _linear(rng, 4, 16)}
    with pytest.raises(TorchConversionError, match="found nn.LSTM.*only nn.GRU"):
        convert_state_dict(lstm)


@pytest.mark.parametrize("head", ["relu_last_step", "softmax_call", "final_state"])
def test_from_torch_with_an_example_input_traces_the_forward(live_torch, head):
    """forward() code a module structure cannot show (a torch.softmax call, a
    ReLU between out[:, -1] and the head, h_n[-1]) is read from torch.export."""
    torch = live_torch
    torch.manual_seed(1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(5, 8, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, x):
            out, h_n = self.gru(x)
            if head == "relu_last_step":
                return self.fc(torch.relu(out[:, -1]))
            if head == "softmax_call":
                return torch.softmax(self.fc(out), dim=-1)
            return self.fc(h_n[-1])

    net = Net().eval()
    x = torch.randn(4, 6, 5)
    with torch.inference_mode():
        expected = net(x).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GruInferWarning)  # nothing is assumed
        model = gru_infer.from_torch(net, x)
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=0, atol=1e-5)
    other = torch.randn(2, 6, 5)  # another batch size: the batch axis was exported dynamic
    with torch.inference_mode():
        np.testing.assert_allclose(model(other.numpy()), net(other).numpy(), rtol=0, atol=1e-5)
    assert net.training is False
