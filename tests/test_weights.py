"""The weight file: round trips, and refusals that say what is wrong."""

import json
import struct

import numpy as np
import pytest
from test_model import seed_like_model

import gru_infer
from gru_infer import FormatError as WeightFileError


@pytest.fixture
def saved(rng, tmp_path):
    model = seed_like_model(rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    return model, path


def _rewrite_header(path, edit):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def test_round_trip_is_exact(saved, rng):
    model, path = saved
    loaded = gru_infer.load(path)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.parameter_count == model.parameter_count


def test_truncated_file_is_refused(saved):
    _, path = saved
    data = path.read_bytes()
    for cut in (0, 5, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightFileError, match="not a valid safetensors file|truncated"):
            gru_infer.load(path)


def test_wrong_tensor_shape_is_refused(saved):
    _, path = saved

    def shrink(header):
        entry = header["gru_1/cell0.R"]
        entry["shape"] = [1, 15, 4]  # claims a different shape for the same bytes
        begin = entry["data_offsets"][0]
        entry["data_offsets"] = [begin, begin + 15 * 4 * 4]

    _rewrite_header(path, shrink)
    with pytest.raises(WeightFileError, match="gru_1"):
        gru_infer.load(path)


def test_inconsistent_byte_range_is_refused(saved):
    _, path = saved
    _rewrite_header(path, lambda h: h["head/kernel"].update(data_offsets=[0, 3]))
    with pytest.raises(WeightFileError, match="not a valid safetensors file"):
        gru_infer.load(path)


def test_newer_format_version_is_refused(saved):
    _, path = saved

    def bump(header):
        config = json.loads(header["__metadata__"]["config"])
        config["format_version"] = 99
        header["__metadata__"]["config"] = json.dumps(config)

    _rewrite_header(path, bump)
    with pytest.raises(WeightFileError, match="version 99"):
        gru_infer.load(path)


def test_plain_safetensors_is_not_a_model(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(path))
    with pytest.raises(WeightFileError, match="not a gru_infer model"):
        gru_infer.load(path)


def test_readable_by_the_safetensors_package(saved):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model, path = saved
    tensors = safetensors_numpy.load_file(str(path))
    np.testing.assert_array_equal(tensors["head/kernel"], model.layer("head").kernel)


@pytest.mark.parametrize("edit", [
    lambda h: h.update(__metadata__="not an object"),
    lambda h: h["head/kernel"].update(shape=[2**32, 2**32], data_offsets=[0, 0]),
    lambda h: h["head/kernel"].update(shape=[2**70]),
    lambda h: h["head/kernel"].update(shape="abc"),
    lambda h: h.update(extra=[1, 2]),
])
def test_malformed_headers_are_refused(saved, edit):
    _, path = saved
    _rewrite_header(path, edit)
    with pytest.raises(WeightFileError):
        gru_infer.load(path)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_get_the_permissions_open_would_give(umask, rng, tmp_path):
    """Atomic writes go through a temporary file, which mkstemp and safetensors make
    0600; the published file must be readable as any new file would be."""
    import os
    import stat

    from gru_infer.cli import main

    previous = os.umask(umask)
    try:
        seed_like_model(rng).save(tmp_path / "m.safetensors")
        assert main(["run", str(tmp_path / "m.safetensors"), str(_input(tmp_path, rng)),
                     str(tmp_path / "y.npy")]) == 0
    finally:
        os.umask(previous)
    for name in ("m.safetensors", "y.npy"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name


def _input(tmp_path, rng):
    path = tmp_path / "x.npy"
    np.save(path, rng.standard_normal((2, 4, 6)).astype(np.float32))
    return path
