"""Tests for the torch-free ``torch.save`` reader (gru_infer.converters.torch_file).

Fixtures in tests/fixtures/torch/ were written by real torch
(tools/make_torch_fixtures.py); nothing here needs torch.  The few tests that
compare with a live torch skip themselves when it is not installed.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import subprocess
import sys
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "torch"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]


def _import_reader():
    try:
        return importlib.import_module("gru_infer.converters.torch_file")
    except ImportError:
        # gru_infer/__init__ imports the compiled core; if that is not built,
        # load the converter package from its folder on its own.
        package = types.ModuleType("_gru_infer_convert")
        package.__path__ = [str(REPO_ROOT / "gru_infer" / "convert")]
        sys.modules["_gru_infer_convert"] = package
        return importlib.import_module("_gru_infer_convert.torch_file")


torch_file = _import_reader()
read_torch_file = torch_file.read_torch_file
load_state_dict = torch_file.load_state_dict
CheckpointError = torch_file.CheckpointError
UnsafeCheckpointError = torch_file.UnsafeCheckpointError
PickledObject = torch_file.PickledObject

ALL_CHECKPOINTS = sorted(entry["checkpoint"] for entry in MANIFEST.values())


def fixture(name: str) -> Path:
    return FIXTURES / name


def expected(name: str):
    return np.load(FIXTURES / MANIFEST[name]["npz"])


# ---------------------------------------------------------------------------
# A NumPy GRU, written from torch's documented equations, to check that the
# weights read back reproduce torch's own outputs stored in the fixtures.
# ---------------------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gru_direction(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse):
    """x: (B, T, I) -> outputs (B, T, H) and last state (B, H).  Rows stop at
    their length (packed sequences): state frozen, output 0."""
    batch, steps, _ = x.shape
    hidden = w_hh.shape[1]
    h = h0.copy()
    out = np.zeros((batch, steps, hidden))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = _sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        h_new = (1 - z) * n + z * h
        valid = (t < lengths)[:, None]
        h = np.where(valid, h_new, h)
        out[:, t] = np.where(valid, h_new, 0.0)
    return out, h


def numpy_gru(sd, x, num_layers, bidirectional, prefix="", h0=None, lengths=None):
    """Batch-first torch nn.GRU; returns (y, h_n) in float64."""
    x = np.asarray(x, np.float64)
    batch, steps, _ = x.shape
    directions = 2 if bidirectional else 1
    hidden = sd[f"{prefix}weight_hh_l0"].shape[1]
    lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    h0 = np.zeros((num_layers * directions, batch, hidden)) if h0 is None else h0
    h_n, layer_input = [], x
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")

            def weight(kind, rows, suffix=suffix):
                value = sd.get(f"{prefix}{kind}_{suffix}")
                return np.zeros(rows) if value is None else value.astype(np.float64)

            out, h_last = _gru_direction(
                layer_input, weight("weight_ih", None), weight("weight_hh", None),
                weight("bias_ih", 3 * hidden), weight("bias_hh", 3 * hidden),
                h0[layer * directions + direction], lengths, reverse=bool(direction))
            outputs.append(out)
            h_n.append(h_last)
        layer_input = np.concatenate(outputs, axis=-1)
    return layer_input, np.stack(h_n)


def linear(sd, name, x):
    return x @ sd[f"{name}.weight"].astype(np.float64).T + sd[f"{name}.bias"]


# ---------------------------------------------------------------------------
# Committed fixtures load, and equal torch's own values
# ---------------------------------------------------------------------------

def test_manifest_lists_every_file_and_the_folder_is_small():
    listed = {"manifest.json", "README.md"}
    for entry in MANIFEST.values():
        listed |= {entry["checkpoint"], entry["npz"]}
    present = {p.name for p in FIXTURES.iterdir()}
    assert listed == present
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 500_000


@pytest.mark.parametrize("name", ["bigru2_linear_sd", "bigru2_linear_module",
                                  "bigru2_linear_legacy", "gru_timemajor_h0", "packed",
                                  "gru_nobias", "float64"])
def test_state_dict_equals_torch_copies(name):
    sd = load_state_dict(fixture(MANIFEST[name]["checkpoint"]))
    npz = expected(name)
    torch_copies = {key[3:]: npz[key] for key in npz.files if key.startswith("sd_")}
    assert set(sd) == set(torch_copies)
    assert list(sd) == list(torch_copies)  # torch's state_dict order, too
    for key, value in torch_copies.items():
        assert sd[key].dtype == value.dtype, key
        np.testing.assert_array_equal(sd[key], value, err_msg=key)
        assert sd[key].flags.c_contiguous and sd[key].flags.writeable


@pytest.mark.parametrize("name", ["bigru2_linear_sd", "bigru2_linear_module",
                                  "bigru2_linear_legacy"])
def test_bigru2_linear_reproduces_torch_outputs(name):
    sd = load_state_dict(fixture(MANIFEST[name]["checkpoint"]))
    npz = expected(name)
    gru_sd = {k[4:]: v for k, v in sd.items() if k.startswith("gru.")}
    y_gru, h_n = numpy_gru(gru_sd, npz["x"], num_layers=2, bidirectional=True)
    np.testing.assert_allclose(linear(sd, "head", y_gru), npz["y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, npz["h_n"], rtol=1e-5, atol=1e-5)


def test_whole_module_pickle_gives_inert_stand_ins():
    net = read_torch_file(fixture("bigru2_linear_module.pt"))
    assert isinstance(net, PickledObject) and net.is_module
    assert net.qualified_name == "__main__.Net"
    modules = net.attributes["_modules"]
    assert modules["gru"].qualified_name == "torch.nn.modules.rnn.GRU"
    assert modules["head"].qualified_name == "torch.nn.modules.linear.Linear"
    assert modules["gru"].attributes["hidden_size"] == 8
    assert modules["gru"].attributes["bidirectional"] is True
    same = load_state_dict(fixture("bigru2_linear_sd.pt"))
    whole = load_state_dict(fixture("bigru2_linear_module.pt"))
    assert list(whole) == list(same)
    for key in same:
        np.testing.assert_array_equal(whole[key], same[key])


def test_reading_a_module_pickle_imports_nothing():
    # In a fresh interpreter: neither torch nor the saving script's classes
    # may be imported or looked up by the reader.
    code = (
        "import sys, types, importlib\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "try:\n"
        "    from gru_infer.converters.torch_file import load_state_dict\n"
        "except ImportError:\n"
        "    p = types.ModuleType('_c'); "
        f"p.__path__ = [{str(REPO_ROOT / 'gru_infer' / 'convert')!r}]; sys.modules['_c'] = p\n"
        "    load_state_dict = importlib.import_module('_c.torch_file').load_state_dict\n"
        f"sd = load_state_dict({str(fixture('bigru2_linear_module.pt'))!r})\n"
        "assert len(sd) == 18\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert not hasattr(sys.modules['__main__'], 'Net')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_time_major_gru_with_initial_state():
    sd = load_state_dict(fixture("gru_timemajor_h0.pt"))
    npz = expected("gru_timemajor_h0")
    x_batch_first = npz["x"].transpose(1, 0, 2)
    y, h_n = numpy_gru(sd, x_batch_first, 1, False, h0=npz["h0"].astype(np.float64))
    np.testing.assert_allclose(y.transpose(1, 0, 2), npz["y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, npz["h_n"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["sorted", "unsorted"])
def test_packed_sequences(case):
    sd = load_state_dict(fixture("packed.pt"))
    npz = expected("packed")
    x = npz["x"] if case == "sorted" else npz["x_unsorted"]
    lengths = npz["lengths"] if case == "sorted" else npz["lengths_unsorted"]
    y, h_n = numpy_gru(sd, x, 2, True, lengths=lengths)
    np.testing.assert_allclose(y, npz[f"y_{case}"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, npz[f"h_n_{case}"], rtol=1e-5, atol=1e-5)


def test_gru_without_bias():
    sd = load_state_dict(fixture("gru_nobias.pt"))
    assert set(sd) == {"weight_ih_l0", "weight_hh_l0"}
    npz = expected("gru_nobias")
    y, h_n = numpy_gru(sd, npz["x"], 1, False)
    np.testing.assert_allclose(y, npz["y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, npz["h_n"], rtol=1e-5, atol=1e-5)


def test_training_checkpoint_is_flattened_with_prefixes():
    checkpoint = read_torch_file(fixture("seq_module.pt"))
    assert checkpoint["epoch"] == 3
    groups = checkpoint["optimizer_state_dict"]["param_groups"]
    assert groups[0]["lr"] == pytest.approx(1e-3) and groups[0]["betas"] == (0.9, 0.999)

    sd = load_state_dict(fixture("seq_module.pt"))
    npz = expected("seq_module")
    model = {}
    for key in npz.files:
        if key.startswith("sd_"):
            name = key[3:]
            np.testing.assert_array_equal(sd[f"model_state_dict.{name}"], npz[key])
            model[name] = sd[f"model_state_dict.{name}"]
    assert "optimizer_state_dict.state.0.exp_avg" in sd
    assert sd["optimizer_state_dict.state.0.step"].shape == ()
    assert not any(key.startswith("epoch") for key in sd)

    rnn = {k.removeprefix("model.encoder.rnn."): v for k, v in model.items()
           if k.startswith("model.encoder.rnn.")}
    y_gru, _ = numpy_gru(rnn, npz["x"], 1, False)
    y = linear(model, "model.decoder", y_gru[:, -1])
    np.testing.assert_allclose(y, npz["y"], rtol=1e-5, atol=1e-5)


def test_float64_gru():
    sd = load_state_dict(fixture("float64.pt"))
    assert all(v.dtype == np.float64 for v in sd.values())
    npz = expected("float64")
    y, h_n = numpy_gru(sd, npz["x"], 1, False)
    np.testing.assert_allclose(y, npz["y"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, npz["h_n"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, dtype", [("bf16", np.float32), ("fp16", np.float16)])
def test_half_precision_weights(name, dtype):
    sd = load_state_dict(fixture(f"{name}.pt"))
    npz = expected(name)
    assert set(sd) == {key[2:] for key in npz.files}
    for key, value in sd.items():
        assert value.dtype == dtype  # bfloat16 is widened to float32, exactly
        np.testing.assert_array_equal(value.astype(np.float32), npz[f"w_{key}"])


@pytest.mark.parametrize("name", ["noncontig", "noncontig_legacy"])
def test_views_offsets_strides_and_shared_storages(name):
    loaded = read_torch_file(fixture(f"{name}.pt"))
    npz = expected(name)
    assert set(loaded) == set(npz.files)
    for key in npz.files:
        assert loaded[key].dtype == npz[key].dtype, key
        assert loaded[key].shape == npz[key].shape, key
        np.testing.assert_array_equal(loaded[key], npz[key], err_msg=key)
    # Views of one storage come back as independent arrays.
    loaded["d"][:] = 0
    np.testing.assert_array_equal(loaded["a"], npz["a"])


# ---------------------------------------------------------------------------
# Helpers that write checkpoints by hand (no torch needed)
# ---------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_value(value) -> bytes:
    """Opcodes that push a plain value (without PROTO and STOP)."""
    data = pickle.dumps(value, protocol=2)
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1]


def op_storage(storage_class: str, key: str, numel: int) -> bytes:
    """A persistent id ('storage', torch.<class>, key, 'cpu', numel)."""
    return (b"(" + op_value("storage") + op_global("torch", storage_class)
            + op_value(key) + op_value("cpu") + op_value(numel) + b"tQ")


def op_tensor(storage: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    """_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    return (op_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage
            + op_value(offset) + op_value(size) + op_value(stride) + op_value(False)
            + op_global("collections", "OrderedDict") + b")R" + b"tR")


def op_dict(items: dict) -> bytes:
    body = b"".join(op_value(k) + v for k, v in items.items())
    return b"}(" + body + b"u"


def whole_pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def write_zip(path: Path, data_pkl: bytes, storages: dict, root: str = "archive",
              extra: dict | None = None, byteorder: bytes | None = b"little") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", data_pkl)
        if byteorder is not None:
            archive.writestr(f"{root}/byteorder", byteorder)
        for key, data in storages.items():
            archive.writestr(f"{root}/data/{key}", data)
        for name, data in (extra or {}).items():
            archive.writestr(f"{root}/{name}", data)
        archive.writestr(f"{root}/version", b"3\n")
    return path


def write_legacy(path: Path, main_pickle: bytes, storages: list) -> Path:
    """storages: [(key, element_count, raw_bytes)] in file order."""
    parts = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2),
             main_pickle, pickle.dumps([key for key, _, _ in storages], 2)]
    for _key, count, data in storages:
        parts += [count.to_bytes(8, "little"), data]
    path.write_bytes(b"".join(parts))
    return path


def float_tensor_pickle(values: np.ndarray, key: str = "0") -> tuple[bytes, bytes]:
    """data.pkl for {'w': tensor(values)} and the storage bytes."""
    flat = np.ascontiguousarray(values, "<f4")
    strides = tuple(s // 4 for s in flat.strides)
    body = op_dict({"w": op_tensor(op_storage("FloatStorage", key, flat.size), 0,
                                   flat.shape, strides)})
    return whole_pickle(body), flat.tobytes()


def test_hand_written_checkpoints_load(tmp_path):
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    data_pkl, raw = float_tensor_pickle(values)
    zipped = read_torch_file(write_zip(tmp_path / "a.pt", data_pkl, {"0": raw}))
    np.testing.assert_array_equal(zipped["w"], values)
    legacy = read_torch_file(write_legacy(tmp_path / "b.pt", data_pkl, [("0", 6, raw)]))
    np.testing.assert_array_equal(legacy["w"], values)


# ---------------------------------------------------------------------------
# Hostile checkpoints: refused in find_class, before anything runs
# ---------------------------------------------------------------------------

class _Reduce:
    """Pickles as a call of ``func(*args)``: what an attacker would write."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_pickles(marker: Path) -> dict:
    touch = f"touch {marker}"
    return {
        "os.system": pickle.dumps(_Reduce(os.system, (touch,)), protocol=2),
        "os.system (protocol 4)": pickle.dumps(_Reduce(os.system, (touch,)), protocol=4),
        "os.system (by name)": whole_pickle(op_global("os", "system") + op_value((touch,)) + b"R"),
        "builtins.eval": pickle.dumps(
            _Reduce(eval, (f"open({str(marker)!r}, 'w')",)), protocol=2),
        "subprocess.Popen": pickle.dumps(
            _Reduce(subprocess.Popen, (["touch", str(marker)],)), protocol=2),
        "torch.load": whole_pickle(op_global("torch", "load") + op_value((str(marker),)) + b"R"),
        # Hidden after a real tensor, inside the state dict itself.
        "os.system (inside a state dict)": whole_pickle(op_dict({
            "w": op_tensor(op_storage("FloatStorage", "0", 1), 0, (1,), (1,)),
            "evil": op_global("os", "system") + op_value((touch,)) + b"R"})),
    }


EXPECTED_NAME = {
    "os.system": ("os.system", "posix.system"),
    "os.system (protocol 4)": ("os.system", "posix.system"),
    "os.system (by name)": ("os.system",),
    "builtins.eval": ("builtins.eval",),
    "subprocess.Popen": ("subprocess.Popen",),
    "torch.load": ("torch.load",),
    "os.system (inside a state dict)": ("os.system",),
}


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("case", list(EXPECTED_NAME))
def test_hostile_checkpoint_is_refused_before_running(tmp_path, container, case):
    marker = tmp_path / "pwned"
    evil = _evil_pickles(marker)[case]
    raw = np.zeros(1, "<f4").tobytes()
    if container == "zip":
        path = write_zip(tmp_path / "evil.pt", evil, {"0": raw})
    else:
        path = write_legacy(tmp_path / "evil.pt", evil, [("0", 1, raw)])
    with pytest.raises(UnsafeCheckpointError) as info:
        read_torch_file(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in message
    assert any(name in message for name in EXPECTED_NAME[case]), message
    with pytest.raises(ValueError):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("body, name", [
    # functions of any module are never stood in for
    (op_global("__main__", "evil_function") + b")R", "__main__.evil_function"),
    (op_global("copyreg", "_reconstructor") + b")R", "copyreg._reconstructor"),
    (op_global("posix", "system") + op_value(("true",)) + b"R", "posix.system"),
    (op_global("numpy", "load") + op_value(("x",)) + b"R", "numpy.load"),
    (op_global("torch._utils", "_rebuild_tensor_v9") + b")R", "torch._utils._rebuild_tensor_v9"),
    (op_global("torch.serialization", "load") + b")R", "torch.serialization.load"),
    (op_global("__builtin__", "getattr") + b")R", "builtins.getattr"),
])
def test_non_allow_listed_globals_are_refused(tmp_path, body, name):
    path = write_zip(tmp_path / "evil.pt", whole_pickle(body), {})
    with pytest.raises(UnsafeCheckpointError, match=name.replace(".", r"\.")):
        read_torch_file(path)


def test_rebuild_from_type_only_calls_tensor_rebuilds(tmp_path):
    # _rebuild_from_type_v2 is allowed, but only with one of our own rebuild
    # functions as its ``func``.
    body = (op_global("torch._tensor", "_rebuild_from_type_v2") + b"("
            + op_global("collections", "OrderedDict") + op_global("torch", "Tensor")
            + op_value(()) + b"}tR")
    path = write_zip(tmp_path / "evil.pt", whole_pickle(body), {})
    with pytest.raises(UnsafeCheckpointError):
        read_torch_file(path)


@pytest.mark.parametrize("target", [
    op_global("torch", "FloatStorage"),
    op_global("torch", "float32"),
    op_global("collections", "Counter"),
    op_global("collections", "OrderedDict"),
    op_global("torch._utils", "_rebuild_tensor_v2"),
])
@pytest.mark.parametrize("state", [
    op_value({"dtype": "x"}),  # a __dict__ update
    # (None, {"dtype": torch.float64}): a setattr through the "slots" state
    b"N}(" + op_value("dtype") + op_global("torch", "float64") + b"u\x86",
])
def test_allow_listed_objects_cannot_be_modified_by_build(tmp_path, target, state):
    # BUILD aimed at an object find_class handed out must fail, so a hostile
    # file cannot re-type FloatStorage (or patch a class) for later loads.
    path = write_zip(tmp_path / "evil.pt", whole_pickle(target + state + b"b"), {})
    with pytest.raises(UnsafeCheckpointError, match="modify"):
        read_torch_file(path)
    # A good file still loads correctly afterwards.
    test_state_dict_equals_torch_copies("bigru2_linear_sd")


def test_user_classes_become_inert_stand_ins(tmp_path):
    # Instantiating, BUILD-ing and filling a stand-in runs no user code.
    body = op_dict({
        "model": op_global("mypackage.models", "Evil") + op_value(("rm -rf /",)) + b"R"
                 + op_value({"a": 1}) + b"b",
        "dictish": op_global("mypackage.models", "Config") + b")\x81"
                   + b"(" + op_value("k") + op_value("v") + b"u",
        "args": op_global("argparse", "Namespace") + b")\x81" + op_value({"lr": 0.1}) + b"b",
    })
    loaded = read_torch_file(write_zip(tmp_path / "a.pt", whole_pickle(body), {}))
    model = loaded["model"]
    assert isinstance(model, PickledObject)
    assert model.qualified_name == "mypackage.models.Evil"
    assert model.args == ("rm -rf /",) and model.attributes == {"a": 1}
    assert loaded["dictish"].items == {"k": "v"}
    assert loaded["args"].attributes == {"lr": 0.1}


# ---------------------------------------------------------------------------
# Damaged files: always ValueError naming the file, never anything else
# ---------------------------------------------------------------------------

def _assert_value_error(path: Path, match: str | None = None) -> ValueError:
    with pytest.raises(ValueError) as info:
        read_torch_file(path)
    assert str(path) in str(info.value)
    if match is not None:
        assert match in str(info.value), str(info.value)
    return info.value


@pytest.mark.parametrize("checkpoint", ALL_CHECKPOINTS)
def test_truncated_fixtures(tmp_path, checkpoint):
    data = fixture(checkpoint).read_bytes()
    cuts = sorted({0, 1, 2, 5, 13, 30, 64, 100, 500, len(data) // 3, len(data) // 2,
                   len(data) - 200, len(data) - 23, len(data) - 9, len(data) - 1})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        _assert_value_error(path)
        with pytest.raises(ValueError):
            load_state_dict(path)


def test_empty_file_and_wrong_magic(tmp_path):
    _assert_value_error(_write(tmp_path / "empty.pt", b""), "empty")
    wrong_magic = pickle.dumps(12345, 2) + pickle.dumps(1001, 2)
    _assert_value_error(_write(tmp_path / "magic.pt", wrong_magic), "magic number")
    wrong_protocol = pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(999, 2)
    _assert_value_error(_write(tmp_path / "proto.pt", wrong_protocol), "protocol version")
    _assert_value_error(_write(tmp_path / "text.pt", b"hello, world\n" * 10))
    tar = bytearray(1024)
    tar[257:262] = b"ustar"
    _assert_value_error(_write(tmp_path / "tar.pt", bytes(tar)), "tar")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_torch_file(tmp_path / "nope.pt")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip_records(checkpoint: str) -> dict:
    with zipfile.ZipFile(fixture(checkpoint)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _rezip(path: Path, records: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


def test_missing_and_short_records(tmp_path):
    records = _zip_records("bigru2_linear_sd.pt")
    root = "bigru2_linear_sd/"

    no_storage = {k: v for k, v in records.items() if k != f"{root}data/1"}
    _assert_value_error(_rezip(tmp_path / "a.pt", no_storage), "missing")

    no_pickle = {k: v for k, v in records.items() if k != f"{root}data.pkl"}
    _assert_value_error(_rezip(tmp_path / "b.pt", no_pickle), "data.pkl")

    short = dict(records)
    short[f"{root}data/0"] = records[f"{root}data/0"][:-4]
    _assert_value_error(_rezip(tmp_path / "c.pt", short), "holds")

    bad_order = dict(records)
    bad_order[f"{root}byteorder"] = b"middle"
    _assert_value_error(_rezip(tmp_path / "d.pt", bad_order), "byte order")

    script = dict(records)
    script[f"{root}constants.pkl"] = b""
    _assert_value_error(_rezip(tmp_path / "e.pt", script), "TorchScript")

    flat = {"data.pkl": records[f"{root}data.pkl"]}
    _assert_value_error(_rezip(tmp_path / "f.pt", flat), "folder")


def test_bad_views_and_memory_bombs(tmp_path):
    raw = np.arange(4, dtype="<f4").tobytes()

    def one_tensor(offset, size, stride, numel=4):
        return whole_pickle(op_tensor(op_storage("FloatStorage", "0", numel), offset,
                                      size, stride))

    cases = {
        "past the end": (one_tensor(2, (3,), (1,)), "reaches element"),
        "huge stride": (one_tensor(0, (2,), (10**6,)), "reaches element"),
        "negative offset": (one_tensor(-1, (2,), (1,)), ">= 0"),
        "negative stride": (one_tensor(3, (2,), (-1,)), ">= 0"),
        "size/stride mismatch": (one_tensor(0, (2, 2), (1,)), "differ in length"),
        "wrong numel": (one_tensor(0, (2,), (1,), numel=3), "expects 3"),
        "stride-0 bomb": (one_tensor(0, (10**6, 10**6), (0, 0)), "memory"),
        "storage size bomb": (one_tensor(0, (1,), (1,), numel=10**15), "holds 16 bytes"),
        "not a storage": (whole_pickle(op_global("torch._utils", "_rebuild_tensor_v2")
                                       + op_value((1, 0, (1,), (1,), False, None)) + b"R"),
                          "not a storage"),
    }
    for label, (data_pkl, match) in cases.items():
        path = write_zip(tmp_path / "v.pt", data_pkl, {"0": raw})
        error = _assert_value_error(path)
        assert match in str(error), (label, str(error))

    # Legacy: a storage count larger than what the file holds.
    legacy = write_legacy(tmp_path / "l.pt", one_tensor(0, (1,), (1,), numel=10**12),
                          [("0", 10**12, raw)])
    _assert_value_error(legacy, "truncated")

    # Many tensors sharing one storage, each a full copy: the budget stops it.
    storage = op_storage("FloatStorage", "0", 2**20)
    tensor = op_tensor(storage, 0, (2**20,), (1,))
    many = whole_pickle(b"]q\x00(" + tensor + b"q\x01" + b"h\x01" * 200 + b"e")
    # BINGET of a memoised tensor returns the same array: no blow-up there;
    # distinct REDUCEs are needed to allocate again.
    many_distinct = whole_pickle(b"](" + tensor * 40 + b"e")
    big = np.zeros(2**20, "<f4").tobytes()
    assert len(read_torch_file(write_zip(tmp_path / "m.pt", many, {"0": big}))) == 201
    path = write_zip(tmp_path / "n.pt", many_distinct, {"0": big})
    _assert_value_error(path, "memory")


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("body, match", [
    # LONG_BINPUT 2**31-1: the C unpickler would allocate and zero a 16 GiB memo.
    (op_value(1) + b"r\xff\xff\xff\x7f", "memo index"),
    # BINBYTES8 / BYTEARRAY8 / BINUNICODE8 claiming 2**56 bytes.
    (b"\x8e" + (2**56).to_bytes(8, "little") + b"abc", "truncated"),
    (b"\x96" + (2**56).to_bytes(8, "little") + b"abc", "truncated"),
    (b"\x8d" + (2**56).to_bytes(8, "little") + b"abc", "truncated"),
    (b"\xff", "corrupt"),
])
def test_pickle_level_bombs_are_caught_before_unpickling(tmp_path, container, body, match):
    data_pkl = whole_pickle(body)
    if container == "zip":
        path = write_zip(tmp_path / "bomb.pt", data_pkl, {})
    else:
        path = write_legacy(tmp_path / "bomb.pt", data_pkl, [])
    _assert_value_error(path, match)


def test_big_endian_archives_are_converted(tmp_path):
    for checkpoint, code in (("bigru2_linear_sd.pt", "f4"), ("bf16.pt", "u2"),
                             ("float64.pt", "f8")):
        records = _zip_records(checkpoint)
        root = checkpoint[:-3] + "/"
        swapped = {}
        for name, data in records.items():
            if name.startswith(f"{root}data/"):
                data = np.frombuffer(data, "<" + code).astype(">" + code).tobytes()
            elif name == f"{root}byteorder":
                data = b"big"
            swapped[name] = data
        big = load_state_dict(_rezip(tmp_path / checkpoint, swapped))
        little = load_state_dict(fixture(checkpoint))
        for key in little:
            assert big[key].dtype == little[key].dtype and big[key].dtype.isnative
            np.testing.assert_array_equal(big[key], little[key])


# ---------------------------------------------------------------------------
# Fuzzing (hypothesis): any bytes -> a result or ValueError, nothing else
# ---------------------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzz.pt"


def _load_or_value_error(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        load_state_dict(path)
    except ValueError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(fuzz_path, data):
    _load_or_value_error(fuzz_path, data)


@FUZZ
@given(st.sampled_from([b"PK\x03\x04", b"PK\x05\x06", b"\x80\x02\x8a\x0a",
                        pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2)]),
       st.binary(max_size=1024))
def test_fuzz_random_bytes_after_a_valid_header(fuzz_path, header, data):
    _load_or_value_error(fuzz_path, header + data)


def _mutate(data: bytes, edits) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


EDITS = st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=8)


@FUZZ
@given(st.sampled_from(ALL_CHECKPOINTS), EDITS)
def test_fuzz_mutated_fixture_files(fuzz_path, checkpoint, edits):
    _load_or_value_error(fuzz_path, _mutate(fixture(checkpoint).read_bytes(), edits))


@FUZZ
@given(st.sampled_from([c for c in ALL_CHECKPOINTS if "legacy" not in c]), EDITS)
def test_fuzz_mutated_data_pkl_with_valid_crc(fuzz_path, checkpoint, edits):
    # Mutations of a zip file mostly die on the CRC check; re-zipping a
    # mutated data.pkl makes the damage reach the unpickler.
    records = _zip_records(checkpoint)
    name = next(n for n in records if n.endswith("/data.pkl"))
    records[name] = _mutate(records[name], edits)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for record, data in records.items():
            archive.writestr(record, data)
    _load_or_value_error(fuzz_path, buffer.getvalue())


# ---------------------------------------------------------------------------
# Optional: compare with a live torch
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("checkpoint", [c for c in ALL_CHECKPOINTS if "module" not in c])
def test_matches_live_torch_load(checkpoint):
    torch = pytest.importorskip("torch")
    reference = torch.load(fixture(checkpoint), weights_only=True)
    ours = read_torch_file(fixture(checkpoint))

    def compare(a, b):
        if isinstance(a, torch.Tensor):
            a = a.resolve_neg()
            a = a.float() if a.dtype == torch.bfloat16 else a
            np.testing.assert_array_equal(a.numpy(), b)
        elif isinstance(a, dict):
            assert list(a) == list(b)
            for key in a:
                compare(a[key], b[key])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                compare(x, y)
        else:
            assert a == b

    compare(reference, ours)


@pytest.mark.parametrize("zip_format", [True, False])
def test_random_tensors_round_trip_through_live_torch(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(7, 5, 3, generator=generator)
    tensors = {
        "permuted": base.permute(2, 0, 1),
        "sliced": base[1:6:2, ::2, 1:],
        "double": base.double()[:, 2],
        "half": base.half().transpose(0, 1),
        "bfloat16": base.bfloat16()[3:],
        "int16": (base * 100).short(),
        "uint8": (base.abs() * 50).to(torch.uint8)[::2],
        "int8": (base * 20).to(torch.int8),
        "complex": torch.complex(base, -base)[0],
        "param": torch.nn.Parameter(base[0]),
        "uint16": torch.arange(9, dtype=torch.int32).to(torch.uint16).reshape(3, 3).t(),
    }
    path = tmp_path / "t.pt"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
    loaded = read_torch_file(path)
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        expected_array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        np.testing.assert_array_equal(loaded[key], expected_array, err_msg=key)


@pytest.mark.parametrize("zip_format", [True, False])
def test_whole_module_names_match_live_state_dict(tmp_path, zip_format):
    torch = pytest.importorskip("torch")

    # torch's own classes only: pickle cannot save a class local to a test.
    nn = torch.nn
    model = nn.ModuleDict({"gru": nn.GRU(3, 4, num_layers=2, batch_first=True),
                           "head": nn.Sequential(nn.Linear(4, 2), nn.ReLU())})
    model.register_buffer("scale", torch.ones(2))
    model.register_buffer("scratch", torch.zeros(1), persistent=False)
    path = tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch may warn about module source code
        torch.save(model, path, _use_new_zipfile_serialization=zip_format)
    ours = load_state_dict(path)
    reference = model.state_dict()
    assert list(ours) == list(reference)  # "scratch" is not persistent
    for key, value in reference.items():
        np.testing.assert_array_equal(ours[key], value.numpy())

