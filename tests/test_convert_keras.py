"""Keras checkpoints written by real TensorFlow/Keras (tools/make_keras_fixtures.py)
converted without TensorFlow, against the framework's own outputs."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import gru_infer
from gru_infer.converters.keras import KerasFileError

pytest.importorskip("h5py")

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]


def checkpoint_of(fixture) -> Path:
    files = [f for f in fixture["files"] if not f.endswith((".npz", ".json"))]
    assert len(files) == 1, files
    return FIXTURES / files[0]


def expected_outputs(data) -> list:
    if "y" in data:
        return [data["y"]]
    return [data[f"y{i}"] for i in range(sum(k.startswith("y") for k in data.files))]


@pytest.mark.parametrize("fixture", MANIFEST, ids=lambda f: f["name"])
def test_fixture_matches_keras(fixture):
    model = gru_infer.convert(checkpoint_of(fixture))
    data = np.load(FIXTURES / f"{fixture['name']}.npz")
    expected = expected_outputs(data)
    if "chunks" in data.files:  # a stateful model fed in chunks
        chunks = int(data["chunks"])
        x = data["x"]
        stream = model.stream(batch_size=x.shape[0])
        outputs = [stream.run(part) for part in np.array_split(x, chunks, axis=1)]
        got = [np.concatenate(outputs, axis=1)]
    else:
        got = model(data["x"])
        got = got if isinstance(got, list) else [got]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fixture", MANIFEST, ids=lambda f: f["name"])
def test_saved_weight_file_round_trips(fixture, tmp_path):
    model = gru_infer.convert(checkpoint_of(fixture))
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = gru_infer.load(path)
    data = np.load(FIXTURES / f"{fixture['name']}.npz")
    if "chunks" in data.files:
        return
    a, b = model(data["x"]), loaded(data["x"])
    for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        np.testing.assert_array_equal(u, v)
    assert loaded.source["framework"] == "keras"


def test_hard_sigmoid_follows_the_writing_keras_version():
    for name, version in (("hard_sigmoid_tf2.h5", "keras2"), ("hard_sigmoid_k3.keras", "keras3")):
        model = gru_infer.convert(FIXTURES / name)
        cells = [c for layer in model.recurrent_layers for c in layer.cells
                 if any(a.startswith("hard_sigmoid") for a in c.activations)]
        assert cells and all(f"hard_sigmoid_{version}" in c.activations for c in cells)


def test_optimizer_slots_are_not_taken_for_weights():
    """reset_before_tf2.h5 carries Adam slots with the weights' names and shapes."""
    import h5py

    with h5py.File(FIXTURES / "reset_before_tf2.h5") as f:
        assert "optimizer_weights" in f
        name = [n for n in f["model_weights/gru"].attrs["weight_names"] if "kernel" in n][0]
        expected = np.asarray(f["model_weights/gru"][name]).T
    model = gru_infer.convert(FIXTURES / "reset_before_tf2.h5")
    np.testing.assert_array_equal(model.recurrent_layers[0].cells[0].W, expected)


def test_weights_only_file_needs_its_config(tmp_path):
    shutil.copy(FIXTURES / "weights_k3.weights.h5", tmp_path / "w.weights.h5")
    with pytest.raises(KerasFileError, match="weights only"):
        gru_infer.convert(tmp_path / "w.weights.h5")
    config = json.loads((FIXTURES / "weights_k3.json").read_text())
    model = gru_infer.convert(tmp_path / "w.weights.h5", config=config)
    data = np.load(FIXTURES / "weights_k3.npz")
    np.testing.assert_allclose(model(data["x"]), data["y"], atol=1e-5)


def _rewrite_keras_config(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)


def test_unsupported_layer_is_named_with_class_and_position(tmp_path):
    def make_lstm(config):
        config["config"]["layers"][1]["class_name"] = "LSTM"

    _rewrite_keras_config(FIXTURES / "seed_k3.keras", tmp_path / "bad.keras", make_lstm)
    with pytest.raises(KerasFileError) as info:
        gru_infer.convert(tmp_path / "bad.keras")
    message = str(info.value)
    assert "#1" in message and "'gru'" in message and "LSTM" in message


@pytest.mark.parametrize("name", ["seed_k3.keras", "seed_tf2.h5", "weights_k3.weights.h5"])
def test_truncated_files_give_a_clear_error(name, tmp_path):
    data = (FIXTURES / name).read_bytes()
    for cut in (0, 7, 100, len(data) // 3, len(data) // 2, len(data) - 10):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError) as info:
            gru_infer.convert(path, config=FIXTURES / "weights_k3.json")
        assert name in str(info.value)


def test_corrupt_archive_member_gives_a_clear_error(tmp_path):
    with zipfile.ZipFile(FIXTURES / "seed_k3.keras") as zin, \
            zipfile.ZipFile(tmp_path / "bad.keras", "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "model.weights.h5":
                data = data[: len(data) // 2]
            zout.writestr(item, data)
    with pytest.raises(ValueError, match="bad.keras"):
        gru_infer.convert(tmp_path / "bad.keras")


def test_random_bytes_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        path = tmp_path / f"junk{i}.h5"
        path.write_bytes(rng.bytes(int(rng.integers(0, 4000))))
        with pytest.raises(ValueError):
            gru_infer.convert(path)
