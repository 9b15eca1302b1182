"""Every hostile or damaged input fuzzing has found stays refused with the
project's own error.

Small findings are kept as files in fixtures/regressions/ (see the README
there); large ones (a zip bomb, a 1 GB dataset claim, a config nested 100,000
deep) are rebuilt here, small, from the ordinary fixtures.  Each must end as a
GruInferError naming the file: never a crash, a hang, a foreign exception or a
large allocation.  HDF5 ones go through the default path, which reads HDF5 in a
capped child process; the caller survives libhdf5 crashing or looping.
"""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest

import gru_infer
from gru_infer.errors import FormatError, GruInferError

HERE = os.path.dirname(__file__)
REGRESSIONS = os.path.join(HERE, "fixtures", "regressions")
KERAS = os.path.join(HERE, "fixtures", "keras")
TORCH = os.path.join(HERE, "fixtures", "torch")

# file -> words the refusal must contain (beyond the file's name)
KEPT = {
    "segv_attr.h5": "crashed",                 # SIGSEGV inside libhdf5
    "hang_attr.h5": "",                        # libhdf5 loops forever: time or CPU cap
    "runtimeerror.keras": "RuntimeError",      # h5py's error, wrapped
    "overflow.keras": "OverflowError",
    "zip_version.pt": "zip",                   # NotImplementedError from zipfile
    "keyerror_legacy.pt": "weight_ih_l0",      # layer-1 GRU keys without layer 0
    "rebuild_numel_240_data_16_bytes.pt": "bytes",
    "attr_from_saved.safetensors": "",         # a cell config that is a bool
    "accepted_bad_graph.safetensors": "",      # a graph that failed only when called
}


# libhdf5 itself crashes or loops on these: only the default path, which reads
# HDF5 in a capped child process, survives them.
FATAL_TO_LIBHDF5 = {"segv_attr.h5", "hang_attr.h5"}


def _open(path, **options):
    """What a user does: load a weight file (and call it), convert anything else."""
    if path.endswith(".safetensors"):
        model = gru_infer.load(path)
        model(np.zeros((1, 3, model.input_shape[-1] or 4), np.float32))
        return model
    return gru_infer.convert(path, **options)


def _refused(path, words="", **options):
    with pytest.raises(GruInferError) as caught:
        _open(path, **options)
    message = str(caught.value)
    assert os.path.basename(path) in message, message
    assert words in message, message
    return caught.value


# findings that were the harness's own doing: kept, and run, not refused
ACCEPTED = {"declared_time_2e31.safetensors"}


def test_every_kept_finding_has_a_case():
    kept = {f for f in os.listdir(REGRESSIONS) if not f.endswith((".md", ".json"))}
    assert kept == set(KEPT) | ACCEPTED | {f for f in kept if f.startswith("fuzz-")}


@pytest.mark.parametrize("name", sorted(KEPT))
def test_kept_finding_is_refused(name):
    if name in FATAL_TO_LIBHDF5 and os.environ.get("GRU_INFER_HDF5_IN_PROCESS") == "1":
        pytest.skip("HDF5 is read in this process (GRU_INFER_HDF5_IN_PROCESS=1), which libhdf5 "
                    "does not survive on this file")
    _refused(os.path.join(REGRESSIONS, name), KEPT[name])


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(REGRESSIONS) if f.startswith("fuzz-")
                                        and not f.endswith((".json", ".md"))))
def test_fuzz_finding_is_refused(name):
    path = os.path.join(REGRESSIONS, name)
    config = path.rsplit(".", 1)[0] + ".config.json"
    _refused(path, config=config) if os.path.exists(config) else _refused(path)


def test_a_declared_time_length_is_a_claim_not_an_allocation():
    """A weight file declaring 2**31 time steps loads and runs on 3, allocating for 3."""
    model = gru_infer.load(os.path.join(REGRESSIONS, "declared_time_2e31.safetensors"))
    assert model.input_shape == (2**31, 3)
    assert model(np.full((1, 3, 3), 0.5, np.float32)).shape == (1, 3, 4)


def test_foreign_errors_are_kept_as_the_cause():
    error = _refused(os.path.join(REGRESSIONS, "runtimeerror.keras"))
    assert isinstance(error.__cause__, RuntimeError)  # rebuilt from the reader process's report


# -- large findings, rebuilt small ----------------------------------------------------------


def _zip_with(tmp_path, name, members, method=zipfile.ZIP_DEFLATED):
    path = str(tmp_path / name)
    with zipfile.ZipFile(path, "w", method) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def _keras_members(fixture="seed_k3.keras"):
    with zipfile.ZipFile(os.path.join(KERAS, fixture)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    members = _keras_members()
    path = str(tmp_path / "bomb.keras")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name != "model.weights.h5":
                archive.writestr(name, data)
        with archive.open("model.weights.h5", "w") as member:  # 64 MB of zeros, ~64 KB deflated
            for _ in range(64):
                member.write(bytes(1 << 20))
    assert os.path.getsize(path) < 1 << 20
    _refused(path, "over the limit")


def test_oversized_config_json_is_refused_before_inflating(tmp_path):
    members = _keras_members()
    members["config.json"] = b" " * (65 << 20) + members["config.json"]  # deflates to ~65 KB
    path = _zip_with(tmp_path, "big_config.keras", members)
    assert os.path.getsize(path) < 4 << 20
    _refused(path, "config.json")


def test_zip_member_that_lies_about_its_size_is_refused(tmp_path):
    members = _keras_members()
    members["config.json"] = b" " * (1 << 20) + members["config.json"]
    path = _zip_with(tmp_path, "liar.keras", members)
    data = bytearray(open(path, "rb").read())
    # declare 1000 bytes for config.json in the local and the central header
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + 11] == b"config.json":
                data[start + offset:start + offset + 4] = (1000).to_bytes(4, "little")
            start += 1
    with open(path, "wb") as f:
        f.write(data)
    _refused(path)


@pytest.mark.parametrize("where", ["keras", "h5"])
def test_deeply_nested_config_is_refused(tmp_path, where):
    deep = "[" * 100_000 + "]" * 100_000
    if where == "keras":
        members = _keras_members()
        members["config.json"] = deep.encode()
        path = _zip_with(tmp_path, "deep.keras", members)
    else:
        import h5py

        path = str(tmp_path / "deep.h5")
        shutil.copy(os.path.join(KERAS, "seed_tf2.h5"), path)
        with h5py.File(path, "r+") as f:
            f.attrs["model_config"] = deep
    _refused(path, "nests deeper")


@pytest.mark.parametrize("config", [b"[]", b"null", b"3", b'"text"'])
def test_config_that_is_not_an_object_is_refused(tmp_path, config):
    members = _keras_members()
    members["config.json"] = config
    _refused(_zip_with(tmp_path, "list.keras", members))


def test_dataset_larger_than_its_file_is_refused_before_reading(tmp_path):
    """An empty chunked dataset reads as fill values: 1.2 GB from a small file."""
    import h5py

    path = str(tmp_path / "big_dataset.h5")
    shutil.copy(os.path.join(KERAS, "seed_tf2.h5"), path)
    name = "model_weights/gru/gru/gru_cell/kernel:0"
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, shape=(100, 3_000_000), chunks=(1, 100_000), dtype="f4")
    assert os.path.getsize(path) < 4 << 20
    _refused(path, "budget")


def _weight_file(tmp_path):
    path = str(tmp_path / "model.safetensors")
    gru_infer.convert(os.path.join(TORCH, "gru_nobias.pt")).save(path)
    return path


def _rewrite_config(path, edit):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(path, framework="np") as f:
        metadata = dict(f.metadata())
    config = json.loads(metadata["config"])
    metadata["config"] = json.dumps(edit(config))
    save_file(load_file(path), path, metadata=metadata)


def test_repeated_layer_list_is_refused_before_reading_tensors(tmp_path):
    path = _weight_file(tmp_path)
    _rewrite_config(path, lambda c: dict(c, layers=c["layers"] * 200))
    _refused(path, "used twice")


@pytest.mark.parametrize("edit", [
    lambda c: dict(c, inputs=[{"name": "x", "shape": [None, -1], "dtype": "float32"}]),
    lambda c: dict(c, outputs=[["nowhere", 0]]),
    lambda c: dict(c, outputs=[["gru", 2**40]]),
    lambda c: dict(c, layers=[dict(c["layers"][0], inputs=[["x", "0"]])]),
    lambda c: dict(c, layers=[dict(c["layers"][0], config=[1, 2])]),
    lambda c: dict(c, layers=[dict(c["layers"][0], kind=["gru"])]),
    lambda c: dict(c, time_major="yes"),
    lambda c: dict(c, format_version=0),
])
def test_malformed_weight_file_configs_are_refused_at_load(tmp_path, edit):
    path = _weight_file(tmp_path)
    _rewrite_config(path, edit)
    with pytest.raises(FormatError, match="model.safetensors"):
        gru_infer.load(path)


def test_relative_paths_reach_the_keras_reader(monkeypatch):
    monkeypatch.chdir(KERAS)
    assert gru_infer.convert("seed_k3.keras").parameter_count > 0


def test_refusals_free_what_they_read():
    """A refused PyTorch archive used to stay alive (with its zip) forever:
    the C unpickler's stack, which the garbage collector cannot see, held a
    cycle back to it."""
    import gc

    path = os.path.join(REGRESSIONS, "rebuild_numel_240_data_16_bytes.pt")
    for _ in range(20):
        with pytest.raises(GruInferError):
            gru_infer.convert(path)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(200):
        with pytest.raises(GruInferError):
            gru_infer.convert(path)
    gc.collect()
    assert len(gc.get_objects()) - before < 50


def test_keras_conversion_runs_in_process_when_asked(monkeypatch):
    monkeypatch.setenv("GRU_INFER_HDF5_IN_PROCESS", "1")
    a = gru_infer.convert(os.path.join(KERAS, "seed_k3.keras"))
    monkeypatch.delenv("GRU_INFER_HDF5_IN_PROCESS")
    b = gru_infer.convert(os.path.join(KERAS, "seed_k3.keras"))
    x = np.random.default_rng(0).standard_normal((2, 5, a.input_shape[-1])).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    assert a.source == b.source
