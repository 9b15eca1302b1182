"""Functional graphs (several inputs and outputs, merges, masks through
merges) and the layers users put around GRUs, in files written by real Keras 2
and Keras 3 (tools/make_keras_graph_fixtures.py), against the frameworks' own
outputs; streamed step by step where every layer can step."""

import json
from pathlib import Path

import numpy as np
import pytest

import gru_infer
from gru_infer.converters.keras_weights import KerasFileError

pytest.importorskip("h5py")

ROOT = Path(__file__).parent / "fixtures"
FIXTURES = [(directory, entry) for directory in ("keras_graph", "keras_layers")
            for entry in json.loads((ROOT / directory / "manifest.json").read_text())["fixtures"]]
NUMBERS = [f for f in FIXTURES if f[1]["expect"] == "numbers"]


def _ids(fixture):
    return fixture[1]["name"]


def _load(directory, entry):
    checkpoint = [f for f in entry["files"] if not f.endswith((".npz", ".json"))][0]
    configs = [f for f in entry["files"] if f.endswith(".json")]
    config = ROOT / directory / configs[0] if configs else None
    data = np.load(ROOT / directory / f"{entry['name']}.npz")
    xs = [data[i["name"]] for i in entry["inputs"]]
    ys = [data[o["name"]] for o in entry["outputs"]]
    return gru_infer.convert(ROOT / directory / checkpoint, config=config), xs, ys


@pytest.mark.parametrize("fixture", NUMBERS, ids=_ids)
def test_matches_keras(fixture):
    model, xs, ys = _load(*fixture)
    got = model(*xs)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(ys)
    for g, y in zip(got, ys):
        assert g.shape == y.shape
        np.testing.assert_allclose(g, y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fixture", [f for f in NUMBERS if f[1]["streamable"]], ids=_ids)
def test_streams_step_by_step_like_the_whole_sequence(fixture):
    model, xs, ys = _load(*fixture)
    steps = xs[0].shape[1]
    stream = model.stream(batch_size=xs[0].shape[0])
    outputs = []
    for t in range(steps):
        got = stream.step(*[x[:, t] for x in xs])
        outputs.append(got if isinstance(got, list) else [got])
    for index, y in enumerate(ys):
        if y.ndim >= 3:  # a sequence output: every step
            got = np.stack([step[index] for step in outputs], axis=1)
        else:  # a vector: what the stream holds after the last step
            got = outputs[-1][index]
        np.testing.assert_allclose(got, y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fixture", [f for f in NUMBERS if not f[1]["streamable"]], ids=_ids)
def test_models_that_need_whole_sequences_refuse_to_stream(fixture):
    model, xs, _ = _load(*fixture)
    with pytest.raises(gru_infer.InputError, match="cannot be streamed"):
        model.stream(batch_size=xs[0].shape[0])


@pytest.mark.parametrize("fixture", NUMBERS, ids=_ids)
def test_weight_file_round_trip(fixture, tmp_path):
    model, xs, ys = _load(*fixture)
    model.save(tmp_path / "m.safetensors")
    got = gru_infer.load(tmp_path / "m.safetensors")(*xs)
    for g, y in zip(got if isinstance(got, list) else [got], ys):
        np.testing.assert_allclose(g, y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if f[1]["expect"] == "refuse"], ids=_ids)
def test_lambda_and_custom_layers_are_refused_by_name(fixture):
    directory, entry = fixture
    checkpoint = [f for f in entry["files"] if not f.endswith(".npz")][0]
    with pytest.raises(KerasFileError, match=r"'(last_step_x2|scale_shift)'.*not supported") as info:
        gru_infer.convert(ROOT / directory / checkpoint)
    assert "Lambda" in str(info.value) or "ScaleShift" in str(info.value)


def test_inputs_by_name_and_in_order():
    model, xs, ys = _load("keras_graph", next(e for d, e in NUMBERS if e["name"] == "merges_vec_k3"))
    names = [i.name for i in model.inputs]
    by_name = model(dict(zip(names, xs)))
    for a, b in zip(by_name, model(*xs)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(gru_infer.InputError, match="takes 2 input"):
        model(xs[0])
