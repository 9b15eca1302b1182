"""TensorFlow-format Keras checkpoints (SavedModel folders, TF checkpoints),
CuDNNGRU weights, Windows-written .keras files and weights paired by order,
converted without TensorFlow and compared with the framework's own outputs
(tools/make_tf_fixtures.py); plus the readers' refusals of damaged and
hostile files."""

import io
import json
import os
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import _tf_writer as writer
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gru_infer
from gru_infer.converters import NotACheckpointError, detect_format
from gru_infer.converters._protobuf import ProtobufError, decode, iter_fields, read_varint
from gru_infer.converters.keras import KerasFileError
from gru_infer.converters.tf_bundle import (
    TABLE_MAGIC,
    TensorBundle,
    TensorBundleError,
    crc32c,
    mask_crc,
    read_table,
    unmask_crc,
)
from gru_infer.converters.tf_savedmodel import SAVED_METADATA, TFModelError, _decode_metadata_json
from gru_infer.errors import FormatError, GruInferError

pytest.importorskip("h5py")

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
BY_NAME = {f["name"]: f for f in MANIFEST}


def source_of(fixture, root=FIXTURES) -> tuple:
    """(checkpoint path, config path or None) of a manifest entry."""
    files = [f for f in fixture["files"] if not f.endswith((".npz", ".json"))]
    configs = [f for f in fixture["files"] if f.endswith(".json")]
    assert len(files) == 1, files
    return root / files[0], (root / configs[0]) if configs else None


def convert_fixture(name, root=FIXTURES):
    path, config = source_of(BY_NAME[name], root)
    return gru_infer.convert(path, config=config)


def expected(name):
    data = np.load(FIXTURES / f"{name}.npz")
    return data["x"], data["y"]


def copy_fixture(name, tmp_path) -> Path:
    """The fixture's files under tmp_path (the same relative names)."""
    for file in BY_NAME[name]["files"]:
        source = FIXTURES / file
        if source.is_dir():
            shutil.copytree(source, tmp_path / file)
        else:
            shutil.copy(source, tmp_path / file)
    return tmp_path


# -- the fixtures match the framework ----------------------------------------------------


@pytest.mark.parametrize("fixture", MANIFEST, ids=lambda f: f["name"])
def test_fixture_matches_framework(fixture):
    model = convert_fixture(fixture["name"])
    x, y = expected(fixture["name"])
    got = model(x)
    assert got.shape == y.shape
    np.testing.assert_allclose(got, y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["sm_func_tf2", "textgen_tf2", "cudnn_f16_tf2"])
def test_saved_weight_file_round_trips(name, tmp_path):
    model = convert_fixture(name)
    model.save(tmp_path / "m.safetensors")
    x, _ = expected(name)
    np.testing.assert_array_equal(gru_infer.load(tmp_path / "m.safetensors")(x), model(x))


def test_sources_say_what_was_read():
    assert convert_fixture("sm_seq_tf2").source["format"] == "TF SavedModel"
    assert convert_fixture("sm_seq_tf2").source["version"] == BY_NAME["sm_seq_tf2"]["keras_version"]
    assert convert_fixture("ckpt_object_tf2").source["format"] == "TF checkpoint"


# -- every way a user names a checkpoint ---------------------------------------------------


def test_every_spelling_of_a_tf_checkpoint_gives_the_same_model(tmp_path):
    root = copy_fixture("ckpt_object_tf2", tmp_path)
    folder, config = root / "ckpt_object_tf2", root / "ckpt_object_tf2.json"
    x, y = expected("ckpt_object_tf2")
    spellings = [folder, folder / "checkpoint", folder / "ckpt-1", folder / "ckpt-1.index",
                 folder / "ckpt-1.data-00000-of-00001"]
    for path in spellings:
        assert detect_format(path) == "tf_checkpoint", path
        np.testing.assert_allclose(gru_infer.convert(path, config=config)(x), y, atol=1e-5)
    shutil.copy(config, folder / "ckpt-1.json")  # beside the prefix: found without config=
    np.testing.assert_allclose(gru_infer.convert(folder / "ckpt-1")(x), y, atol=1e-5)


def test_every_spelling_of_a_savedmodel_gives_the_same_model():
    folder = FIXTURES / "sm_seq_tf2"
    x, y = expected("sm_seq_tf2")
    for path in (folder, folder / "saved_model.pb", folder / "keras_metadata.pb",
                 folder / "variables" / "variables.index", str(folder) + os.sep):
        assert detect_format(path) == "tf_savedmodel", path
        np.testing.assert_allclose(gru_infer.convert(path)(x), y, atol=1e-5)


def test_cli_converts_a_savedmodel_and_a_checkpoint(tmp_path, capsys):
    from gru_infer.cli import main

    assert main(["convert", str(FIXTURES / "sm_func_tf2"), str(tmp_path / "a.safetensors")]) == 0
    assert main(["convert", str(FIXTURES / "textgen_tf2"), str(tmp_path / "b.safetensors"),
                 "--config", str(FIXTURES / "textgen_tf2.json")]) == 0
    x, y = expected("textgen_tf2")
    np.testing.assert_allclose(gru_infer.load(tmp_path / "b.safetensors")(x), y, atol=1e-5)


# -- what is refused, and how ------------------------------------------------------------------


def test_a_checkpoint_needs_its_config():
    with pytest.raises(TFModelError, match=r"weights only.*config="):
        gru_infer.convert(FIXTURES / "ckpt_weights_tf2")


def test_a_missing_data_shard_is_named(tmp_path):
    root = copy_fixture("ckpt_weights_tf2", tmp_path)
    (root / "ckpt_weights_tf2" / "ckpt.data-00000-of-00001").unlink()
    with pytest.raises(TFModelError, match=r"data shard ckpt\.data-00000-of-00001 is missing"):
        gru_infer.convert(root / "ckpt_weights_tf2", config=root / "ckpt_weights_tf2.json")


def test_a_state_file_with_the_writers_absolute_path(tmp_path):
    root = copy_fixture("textgen_tf2", tmp_path) / "textgen_tf2"
    (root / "checkpoint").write_text('model_checkpoint_path: "/content/training/ckpt_1"\n'
                                     'all_model_checkpoint_paths: "/content/training/ckpt_1"\n')
    x, y = expected("textgen_tf2")
    np.testing.assert_allclose(gru_infer.convert(root, config=FIXTURES / "textgen_tf2.json")(x),
                               y, atol=1e-5)
    (root / "checkpoint").unlink()  # one .index in the folder: that one
    assert detect_format(root) == "tf_checkpoint"
    shutil.copy(root / "ckpt_1.index", root / "ckpt_2.index")
    with pytest.raises(NotACheckpointError, match=r"holds 2 TF checkpoints \(ckpt_1.index, "
                                                  r"ckpt_2.index\).*pass one of them"):
        detect_format(root)


@pytest.mark.parametrize("target", ["variables/variables.data-00000-of-00001",
                                    "variables/variables.index", "keras_metadata.pb"])
def test_git_lfs_pointers_inside_a_savedmodel(tmp_path, target):
    root = copy_fixture("sm_seq_tf2", tmp_path) / "sm_seq_tf2"
    (root / target).write_bytes(b"version https://git-lfs.github.com/spec/v1\n"
                                b"oid sha256:0123\nsize 11108\n")
    with pytest.raises(TFModelError, match=rf"{target.split('/')[-1]}: a Git LFS pointer.*"
                                           r"git lfs pull"):
        gru_infer.convert(root)


def test_a_state_file_naming_a_missing_checkpoint(tmp_path):
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt_9"\n')
    with pytest.raises(NotACheckpointError, match=r"ckpt_9\.index is missing"):
        gru_infer.convert(tmp_path / "checkpoint")


def test_a_config_with_fewer_layers_leaves_weights_unused():
    config = json.loads((FIXTURES / "ckpt_object_tf2.json").read_text())
    config["config"]["layers"] = config["config"]["layers"][:3]  # input, gru, gru_1
    config["config"]["output_layers"] = [[config["config"]["layers"][-1]["name"], 0, 0]]
    with pytest.raises(TFModelError, match=r"does not use: layer_with_weights-2"):
        gru_infer.convert(FIXTURES / "ckpt_object_tf2", config=config)


def test_a_config_with_more_layers_lists_what_the_checkpoint_has():
    config = json.loads((FIXTURES / "ckpt_object_tf2.json").read_text())
    layers = config["config"]["layers"]
    extra = json.loads(json.dumps(layers[-1]))
    extra["name"] = extra["config"]["name"] = "extra"
    extra["inbound_nodes"] = [[[layers[-1]["name"], 0, 0, {}]]]
    layers.append(extra)
    config["config"]["output_layers"] = [["extra", 0, 0]]
    with pytest.raises(TFModelError, match=r"'extra'.*the checkpoint has layers "
                                           r"layer_with_weights-0, layer_with_weights-1, "
                                           r"layer_with_weights-2"):
        gru_infer.convert(FIXTURES / "ckpt_object_tf2", config=config)


def test_a_config_of_other_sizes_is_refused():
    config = json.loads((FIXTURES / "ckpt_weights_tf2.json").read_text())
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "GRU":
            layer["config"]["units"] = 7
    with pytest.raises(KerasFileError, match=r"GRU\(7\) weights have shapes"):
        gru_infer.convert(FIXTURES / "ckpt_weights_tf2", config=config)


def test_a_subclassed_checkpoint_with_other_layer_names_says_what_it_has():
    config = json.loads((FIXTURES / "textgen_subclassed_tf2.json").read_text())
    config["config"]["layers"][-1]["config"]["name"] = "head"
    with pytest.raises(TFModelError, match=r"'head'.*object named 'head'.*embedding, gru, dense"):
        gru_infer.convert(FIXTURES / "textgen_subclassed_tf2", config=config)


def test_savedmodel_config_override_and_subclassed_metadata(tmp_path):
    root = copy_fixture("sm_seq_tf2", tmp_path) / "sm_seq_tf2"
    metadata = decode((root / "keras_metadata.pb").read_bytes(), SAVED_METADATA)
    top = json.loads(metadata["nodes"][0]["metadata"])
    config = {"class_name": "Sequential", "config": _decode_metadata_json(top["config"])}
    top["class_name"] = "MyModel"  # as a subclassed model's SavedModel says
    (root / "keras_metadata.pb").write_bytes(writer.field_bytes(1, writer.field_varint(2, 0)
                                             + writer.field_bytes(3, "root")
                                             + writer.field_bytes(5, json.dumps(top))))
    with pytest.raises(TFModelError, match="subclassed Keras model"):
        gru_infer.convert(root)
    x, y = expected("sm_seq_tf2")
    np.testing.assert_allclose(gru_infer.convert(root, config=config)(x), y, atol=1e-5)


def _saved_model_pb(root_metadata: str, identifier="_tf_keras_sequential") -> bytes:
    """saved_model.pb as TF 2.0 - 2.4 wrote it for Keras: the root object's
    SavedUserObject carries the Keras metadata (SavedModel.meta_graphs[0]
    .object_graph_def.nodes[0].user_object)."""
    user = writer.field_bytes(1, identifier) + writer.field_bytes(3, root_metadata)
    node = writer.field_bytes(4, user)
    return writer.field_varint(1, 1) + writer.field_bytes(2, writer.field_bytes(
        7, writer.field_bytes(1, node)))


def test_savedmodel_of_tf24_keeps_keras_metadata_in_saved_model_pb(tmp_path):
    root = copy_fixture("sm_func_tf2", tmp_path) / "sm_func_tf2"
    metadata = decode((root / "keras_metadata.pb").read_bytes(), SAVED_METADATA)
    (root / "keras_metadata.pb").unlink()
    (root / "saved_model.pb").write_bytes(_saved_model_pb(metadata["nodes"][0]["metadata"]))
    x, y = expected("sm_func_tf2")
    np.testing.assert_allclose(gru_infer.convert(root)(x), y, atol=1e-5)


def test_a_savedmodel_not_written_by_keras_is_refused(tmp_path):
    root = copy_fixture("sm_func_tf2", tmp_path) / "sm_func_tf2"
    (root / "keras_metadata.pb").unlink()
    (root / "saved_model.pb").write_bytes(_saved_model_pb("", "trackable_object"))
    with pytest.raises(TFModelError, match=r"not written by Keras.*config="):
        gru_infer.convert(root)
    (root / "variables" / "variables.index").unlink()
    with pytest.raises(TFModelError, match="without variables/variables.index"):
        gru_infer.convert(root)


def test_a_tf1_checkpoint_without_object_graph_is_refused(tmp_path):
    writer.write_bundle(tmp_path / "model.ckpt", {"rnn/gru_cell/kernel": np.zeros((3, 6),
                                                                                  np.float32)})
    with pytest.raises(TFModelError, match="no object graph"):
        gru_infer.convert(tmp_path / "model.ckpt", config=FIXTURES / "ckpt_weights_tf2.json")


def test_cudnn_weights_into_a_gru_config_are_converted_as_keras_does():
    """A GRU(reset_after=True) config loading CuDNNGRU weights: Keras converts them."""
    config = json.loads((FIXTURES / "cudnn_bidir_tf2.json").read_text())
    layers = config["config"]["layers"]
    layers[1]["config"]["layer"]["class_name"] = "GRU"
    layers[2]["class_name"] = "GRU"
    x, y = expected("cudnn_bidir_tf2")
    np.testing.assert_allclose(gru_infer.convert(FIXTURES / "cudnn_bidir_tf2.h5",
                                                 config=config)(x), y, atol=1e-5)


def test_keras3_checkpoint_uses_keras3_hard_sigmoid():
    model = convert_fixture("ckpt_k3_seq_tf2")
    assert model.source["version"].startswith("3")
    assert model.recurrent_layers[0].cells[0].activations[0] == "hard_sigmoid_keras3"


def test_cudnn_weights_into_a_reset_before_gru_are_refused():
    config = json.loads((FIXTURES / "cudnn_bidir_tf2.json").read_text())
    config["config"]["layers"][2] = {"class_name": "GRU", "config": dict(
        config["config"]["layers"][2]["config"], reset_after=False)}
    with pytest.raises(KerasFileError, match=r"not compatible with GRU\(reset_after=False\)"):
        gru_infer.convert(FIXTURES / "cudnn_bidir_tf2.h5", config=config)


# -- weights-only files paired by order --------------------------------------------------------


def test_order_matching_counts_must_agree():
    config = json.loads((FIXTURES / "order_tf2.json").read_text())
    del config["config"]["layers"][-1]  # no Dense
    with pytest.raises(KerasFileError, match=r"config has 2 layers with weights, the file 3\. "
                                             r"config layers with weights: gru_2 \(GRU\).*"
                                             r"File layers with weights: gru \[\(4, 21\)"):
        gru_infer.convert(FIXTURES / "order_tf2.h5", config=config)


def test_order_matching_shapes_must_agree():
    config = json.loads((FIXTURES / "order_tf2.json").read_text())
    config["config"]["layers"][-1]["config"]["units"] = 4
    with pytest.raises(KerasFileError, match=r"fails at config layer 'dense_1' \(Dense\) <-> "
                                             r"file layer 'dense': weight shapes \[\(5, 3\), "
                                             r"\(3,\)\] do not fit \[\(\?, 4\), \(4,\)\]"):
        gru_infer.convert(FIXTURES / "order_tf2.h5", config=config)


def test_names_that_match_are_used_as_names(tmp_path):
    """The file's own names in the config: paired by name, whatever the order."""
    import h5py

    config = json.loads((FIXTURES / "order_tf2.json").read_text())
    with h5py.File(FIXTURES / "order_tf2.h5") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
    for layer, name in zip(config["config"]["layers"][1:], names):
        layer["config"]["name"] = name
    x, y = expected("order_tf2")
    np.testing.assert_allclose(gru_infer.convert(FIXTURES / "order_tf2.h5", config=config)(x),
                               y, atol=1e-5)


# -- synthetic checkpoints: what TensorFlow writes rarely --------------------------------------


def _gru_weights(rng, inputs, units, reset_after=True):
    return {"cell/kernel": rng.standard_normal((inputs, 3 * units)).astype(np.float32),
            "cell/recurrent_kernel": rng.standard_normal((units, 3 * units)).astype(np.float32),
            "cell/bias": rng.standard_normal((2, 3 * units) if reset_after else (3 * units,))
            .astype(np.float32)}


def _sequential(*layers):
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, None, 3],
                                                "dtype": "float32", "name": "in"}}] + list(layers)}}


GRU4 = {"class_name": "GRU", "config": {"name": "gru", "units": 4, "return_sequences": True}}
DENSE2 = {"class_name": "Dense", "config": {"name": "dense", "units": 2}}
DROPOUT = {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.5}}


@pytest.mark.parametrize("options", [{"mode": "layer_with_weights"}, {"mode": "layer"},
                                     {"mode": "name", "under_model": True},
                                     {"mode": "layer_with_weights", "num_shards": 3},
                                     {"mode": "layer_with_weights", "big_endian": True}])
def test_synthetic_checkpoints_of_each_object_graph_shape(tmp_path, options):
    rng = np.random.default_rng(1)
    gru = _gru_weights(rng, 3, 4)
    dense = {"kernel": rng.standard_normal((4, 2)).astype(np.float32),
             "bias": rng.standard_normal(2).astype(np.float32)}
    layers = [("gru", gru), ("dense", dense)]
    if options["mode"] == "layer":  # layer-N counts weightless layers too
        layers = [("gru", gru), ("drop", {}), ("dense", dense)]
    writer.keras_checkpoint(tmp_path / "ckpt", layers, **options)
    model = gru_infer.convert(tmp_path / "ckpt", config=_sequential(GRU4, DROPOUT, DENSE2))
    cell = model.recurrent_layers[0].cells[0]
    np.testing.assert_array_equal(cell.W, gru["cell/kernel"].T)
    np.testing.assert_array_equal(cell.R, gru["cell/recurrent_kernel"].T)
    np.testing.assert_array_equal(cell.B, gru["cell/bias"].reshape(-1))
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    assert model(x).shape == (2, 5, 2)


def test_cudnn_gru_in_a_checkpoint_keeps_its_variables_on_the_layer(tmp_path):
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 12)).astype(np.float32)
    weights = {"kernel": kernel, "recurrent_kernel": rng.standard_normal((4, 12)).astype(
        np.float32), "bias": rng.standard_normal(24).astype(np.float32)}
    writer.keras_checkpoint(tmp_path / "ckpt", [("cu_dnngru", weights)])
    cudnn = {"class_name": "CuDNNGRU", "config": {"name": "cu_dnngru", "units": 4,
                                                  "return_sequences": True}}
    model = gru_infer.convert(tmp_path / "ckpt", config=_sequential(cudnn))
    expected_kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, 3)])
    np.testing.assert_array_equal(model.recurrent_layers[0].cells[0].W, expected_kernel.T)


def test_bfloat16_and_float16_variables_are_widened(tmp_path):
    values = np.array([1.5, -2.25, 3.0], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    writer.write_bundle(tmp_path / "b", {"half": values.astype(np.float16), "bf": bf16},
                        extra_entries=())
    index = (tmp_path / "b.index").read_bytes()
    entries = [(k, bytes(v)) for k, v in read_table(index, "b")]
    # retype the uint16 entry as DT_BFLOAT16 (14)
    entries = [(k, v.replace(writer.field_varint(1, 17), writer.field_varint(1, 14), 1))
               if k == b"bf" else (k, v) for k, v in entries]
    (tmp_path / "b.index").write_bytes(writer.table(entries))
    bundle = TensorBundle(tmp_path / "b")
    np.testing.assert_array_equal(bundle.array("bf"), values)
    assert bundle.array("bf").dtype == np.float32
    np.testing.assert_array_equal(bundle.array("half"), values)


def _bundle_with_entry(tmp_path, entry: bytes, data=b"\0" * 64):
    (tmp_path / "t.index").write_bytes(writer.table([(b"", writer.header_proto(1)),
                                                     (b"x", entry)]))
    (tmp_path / "t.data-00000-of-00001").write_bytes(data)
    return TensorBundle(tmp_path / "t")


def test_a_shape_of_1e12_elements_is_refused_before_any_allocation(tmp_path):
    tracemalloc.start()
    try:
        huge = writer.entry_proto(1, (10**6, 10**6), 0, 0, 4 * 10**12, 0)
        with pytest.raises(TensorBundleError, match=r"claims bytes \[0, 4000000000000\) of a "
                                                    r"64-byte shard"):
            _bundle_with_entry(tmp_path, huge).array("x")
        lying = writer.entry_proto(1, (10**6, 10**6), 0, 0, 64, 0)
        with pytest.raises(TensorBundleError, match="needs 4000000000000 bytes; its entry says 64"):
            _bundle_with_entry(tmp_path, lying).array("x")
        strings = writer.entry_proto(7, (10**12,), 0, 0, 64, 0)
        with pytest.raises(TensorBundleError, match="does not fit in 64 bytes"):
            _bundle_with_entry(tmp_path, strings).strings("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@pytest.mark.parametrize("entry, message", [
    (writer.entry_proto(1, (4,), 0, 0, 16, 0, slices=[[(0, 4)]]), "partitioned"),
    (writer.entry_proto(1, (4,), 0, 60, 16, 0), r"claims bytes \[60, 76\)"),
    (writer.entry_proto(1, (-4,), 0, 0, 16, 0), "negative dimension"),
    (writer.entry_proto(1, (1,) * 40, 0, 0, 4, 0), "40 dimensions"),
    (writer.entry_proto(20, (), 0, 0, 4, 0), "type resource"),
    (writer.entry_proto(1, (4,), 0, 0, 16, 12345), "checksum mismatch"),
    (writer.entry_proto(1, (4,), 5, 0, 16, 0), "shard 5 of 1"),
])
def test_malformed_entries_are_refused(tmp_path, entry, message):
    with pytest.raises(TensorBundleError, match=message):
        _bundle_with_entry(tmp_path, entry).array("x")


def test_compressed_blocks_and_damaged_tables_are_refused(tmp_path):
    entries = [(b"", writer.header_proto(1))]
    (tmp_path / "s.index").write_bytes(writer.table(entries, compression=1))
    (tmp_path / "s.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(TensorBundleError, match="snappy-compressed"):
        TensorBundle(tmp_path / "s")
    (tmp_path / "s.index").write_bytes(writer.table([]))
    with pytest.raises(TensorBundleError, match="no header entry"):
        TensorBundle(tmp_path / "s")
    good = writer.table(entries)
    (tmp_path / "s.index").write_bytes(good[:-1])
    with pytest.raises(TensorBundleError, match="no table magic"):
        TensorBundle(tmp_path / "s")
    flipped = bytearray(good)
    flipped[3] ^= 0x10
    (tmp_path / "s.index").write_bytes(bytes(flipped))
    with pytest.raises(TensorBundleError, match="checksum mismatch"):
        TensorBundle(tmp_path / "s")


def test_prefix_compressed_keys_cannot_blow_up(tmp_path):
    """A block whose entries each reuse a 60 KB prefix: 20 bytes of file per
    60 KB key.  Refused before the keys add up."""
    block = bytearray(writer.varint(0) + writer.varint(60000) + writer.varint(0)
                      + b"k" * 60000)
    for i in range(20000):
        block += writer.varint(60000) + writer.varint(3) + writer.varint(0) + \
            i.to_bytes(3, "big")
    block += struct.pack("<II", 0, 1)
    data = bytearray()
    trailer = b"\0"
    data += block + trailer + struct.pack("<I", mask_crc(crc32c(bytes(block) + trailer)))
    index = writer._block([(b"\xff", writer.varint(0) + writer.varint(len(block)))], 1)
    index_at = len(data)
    data += index + trailer + struct.pack("<I", mask_crc(crc32c(index + trailer)))
    footer = (writer.varint(0) + writer.varint(0) + writer.varint(index_at)
              + writer.varint(len(index))).ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    tracemalloc.start()
    try:
        with pytest.raises(TensorBundleError, match="keys longer than"):
            read_table(bytes(data + footer), "x.index")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


# -- the pieces: crc32c, the wire format ----------------------------------------------------------


def _crc_bytewise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0 and crc32c(bytes(32)) == 0x8A9136AA
    rng = np.random.default_rng(0)
    for size in (1, 1023, 8 * 1024 - 1, 8 * 1024, 8 * 1024 + 5, 37 * 1024 + 3):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == _crc_bytewise(data), size
        assert crc32c(data[size // 3:], crc32c(data[:size // 3])) == crc32c(data)
    assert unmask_crc(mask_crc(0xDEADBEEF)) == 0xDEADBEEF


@pytest.mark.parametrize("data, message", [
    (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    (b"\x08\xff\xff", "runs past the end"),
    (b"\x12\x05abc", "exceeds the 3 bytes left"),
    (b"\x0b", "wire type 3"),
    (b"\x00\x01", "field number 0"),
    (b"\x15\x01\x02", "fixed32 runs past the end"),
])
def test_protobuf_reader_is_strict(data, message):
    with pytest.raises(ProtobufError, match=message):
        list(iter_fields(data))


def test_protobuf_kinds_and_defaults():
    schema = {1: ("a", "int", False), 2: ("b", "string", False), 3: ("c", "int", True),
              4: ("d", {1: ("e", "bool", False)}, False)}
    data = writer.field_varint(1, -5) + writer.field_bytes(2, "hé") + writer.field_bytes(
        3, writer.varint(1) + writer.varint(300)) + writer.field_varint(3, 7)
    assert decode(data, schema) == {"a": -5, "b": "hé", "c": [1, 300, 7], "d": {}}
    with pytest.raises(ProtobufError, match="expected a message"):
        decode(writer.field_varint(4, 1), schema)
    with pytest.raises(ProtobufError, match="not valid UTF-8"):
        decode(writer.field_bytes(2, b"\xff"), schema)
    assert read_varint(b"\x80\x01", 0, 2) == (128, 2)


# -- what a path is, and what load() says ---------------------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
     r"Git LFS pointer.*git lfs pull"),
    (b"\n<!DOCTYPE html>\n<html lang='en'><head>", "HTML page"),
    (b'{"class_name": "Sequential"}', "JSON text file.*config="),
    (b"epoch,loss\n1,0.5\n", "a text file, not a checkpoint"),
])
@pytest.mark.parametrize("suffix", [".h5", ".keras", ".pt", ".index", ".onnx"])
def test_text_files_say_what_they_are(tmp_path, content, message, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError, match=message):
        gru_infer.convert(path)
    with pytest.raises(FormatError, match=message):
        gru_infer.load(path)


@pytest.mark.parametrize("path, message", [
    (FIXTURES / "windows_tf215.keras",
     r"a Keras file, not a gru_infer weight file: use gru_infer\.convert\(\)"),
    (FIXTURES / "sm_seq_tf2", "a TensorFlow SavedModel"),
    (FIXTURES / "textgen_tf2" / "ckpt_1.index", "a TensorFlow checkpoint"),
    (FIXTURES / "order_tf2.h5", "a Keras file"),
])
def test_load_given_a_checkpoint_points_to_convert(path, message):
    with pytest.raises(FormatError, match=message):
        gru_infer.load(path)


def test_an_index_that_is_not_a_table(tmp_path):
    (tmp_path / "x.index").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(NotACheckpointError, match="not a TensorFlow checkpoint index"):
        detect_format(tmp_path / "x.index")
    with pytest.raises(NotACheckpointError, match="a folder, not a checkpoint"):
        detect_format(FIXTURES)


# -- damaged and hostile files -------------------------------------------------------------------

# a few examples per target keep this file at seconds; GRU_INFER_FUZZ_EXAMPLES=500 digs deeper
FUZZ = settings(max_examples=int(os.environ.get("GRU_INFER_FUZZ_EXAMPLES", "12")), deadline=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# (fixture, file inside it to damage)
DAMAGE_TARGETS = [
    ("sm_seq_tf2", "sm_seq_tf2/variables/variables.index"),
    ("sm_seq_tf2", "sm_seq_tf2/variables/variables.data-00000-of-00001"),
    ("sm_func_tf2", "sm_func_tf2/keras_metadata.pb"),
    ("ckpt_object_tf2", "ckpt_object_tf2/ckpt-1.index"),
    ("ckpt_object_tf2", "ckpt_object_tf2/checkpoint"),
    ("textgen_subclassed_tf2", "textgen_subclassed_tf2/ckpt_1.data-00000-of-00001"),
    ("cudnn_bidir_tf2", "cudnn_bidir_tf2.h5"),
    ("windows_tf215", "windows_tf215.keras"),
]
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                        min_size=1, max_size=4)),
    st.tuples(st.just("inflate"), st.floats(0, 1), st.integers(1, 64)),
)


def _damaged(data: bytes, damage) -> bytes:
    kind = damage[0]
    if kind == "truncate":
        return data[:int(damage[1] * len(data))]
    if kind == "flip":
        buffer = bytearray(data)
        for where, bit in damage[1]:
            buffer[min(int(where * len(buffer)), len(buffer) - 1)] ^= 1 << bit
        return bytes(buffer)
    at = int(damage[1] * len(data))  # a run of 0xff: varints and sizes that claim the most
    return data[:at] + b"\xff" * damage[2] + data[at:]


def _convert_or_refuse(name, root):
    """A model, or one of gru_infer's own errors (a damaged .h5 may also
    reach the PyTorch reader's sniffing); never more memory than the files
    could hold (NumPy reports its allocations to tracemalloc)."""
    tracemalloc.start()
    try:
        convert_fixture(name, root)
    except ValueError as error:
        assert isinstance(error, GruInferError), repr(error)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak} bytes for files of ~100 KB"


@pytest.mark.parametrize("name, target", DAMAGE_TARGETS, ids=[t for _, t in DAMAGE_TARGETS])
@FUZZ
@given(damage=DAMAGE)
def test_damaged_files_convert_or_raise_project_errors(tmp_path_factory, name, target, damage):
    root = copy_fixture(name, tmp_path_factory.mktemp("damaged"))
    path = root / target
    path.write_bytes(_damaged(path.read_bytes(), damage))
    _convert_or_refuse(name, root)


def _rewrite_bundle(prefix: Path, change_entry=None, change_graph=None):
    """The same bundle with one entry's proto or the object graph changed,
    and every checksum made right again, so the damage reaches the parsers."""
    bundle = TensorBundle(prefix)
    graph = bundle.strings("_CHECKPOINTABLE_OBJECT_GRAPH")[0]
    tensors = {k: bundle.array(k) for k in bundle.entries if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    for stale in prefix.parent.glob(prefix.name + ".*"):
        stale.unlink()
    writer.write_bundle(prefix, tensors, object_graph=change_graph(graph) if change_graph
                        else graph)
    if change_entry is not None:
        index = Path(str(prefix) + ".index")
        entries = [(k, bytes(v)) for k, v in read_table(index.read_bytes(), index)]
        keys = [k for k, _ in entries if k not in (b"", b"_CHECKPOINTABLE_OBJECT_GRAPH")]
        victim = change_entry[0] % len(keys)
        entries = [(k, change_entry[1](v) if k == keys[victim] else v) for k, v in entries]
        index.write_bytes(writer.table(entries))


@pytest.mark.parametrize("name, prefix", [("ckpt_object_tf2", "ckpt_object_tf2/ckpt-1"),
                                          ("sm_func_tf2", "sm_func_tf2/variables/variables")])
@FUZZ
@given(victim=st.integers(0, 1000), damage=DAMAGE)
def test_damaged_entries_with_valid_checksums(tmp_path_factory, name, prefix, victim, damage):
    root = copy_fixture(name, tmp_path_factory.mktemp("entries"))
    _rewrite_bundle(root / prefix, change_entry=(victim, lambda v: _damaged(v, damage)))
    _convert_or_refuse(name, root)


@pytest.mark.parametrize("name, prefix", [("ckpt_object_tf2", "ckpt_object_tf2/ckpt-1"),
                                          ("sm_seq_tf2", "sm_seq_tf2/variables/variables")])
@FUZZ
@given(damage=DAMAGE)
def test_damaged_object_graphs_with_valid_checksums(tmp_path_factory, name, prefix, damage):
    root = copy_fixture(name, tmp_path_factory.mktemp("graph"))
    _rewrite_bundle(root / prefix, change_graph=lambda g: _damaged(g, damage))
    _convert_or_refuse(name, root)


def test_a_cycle_of_objects_does_not_hang(tmp_path):
    """Every node a child of every other: the searches stay bounded."""
    count = 60
    nodes = [([(f"c{j}", j) for j in range(count)], None) for _ in range(count)]
    writer.write_bundle(tmp_path / "ckpt", {}, object_graph=writer.object_graph_proto(nodes))
    with pytest.raises(TFModelError, match="no weights for layer"):
        gru_infer.convert(tmp_path / "ckpt", config=_sequential(GRU4))


def test_a_wide_object_graph_stays_linear(tmp_path):
    """5000 children of the model sharing one hub with 5000 children: the
    searches for layers with variables visit each edge a bounded number of
    times (a search from each child took 25 million steps)."""
    import time

    count = 5000
    hub = count + 1
    nodes = [([(f"c{i}", 1 + i) for i in range(count)], None)]
    nodes += [([("hub", hub)], None) for _ in range(count)]
    nodes += [([(f"x{i}", hub + 1 + i) for i in range(count)], None)]
    nodes += [([], None) for _ in range(count)]
    writer.write_bundle(tmp_path / "ckpt", {}, object_graph=writer.object_graph_proto(nodes))
    start = time.perf_counter()
    with pytest.raises(TFModelError, match="object named 'gru'; the checkpoint has layers none"):
        gru_infer.convert(tmp_path / "ckpt", config=_sequential(GRU4))
    assert time.perf_counter() - start < 5


def test_windows_keras_reads_like_the_linux_layout(tmp_path):
    """The Windows fixture with its groups nested again ('/' paths, as on
    Linux) gives the same model."""
    import h5py

    with zipfile.ZipFile(FIXTURES / "windows_tf215.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    nested = io.BytesIO()
    with h5py.File(io.BytesIO(members["model.weights.h5"])) as src, h5py.File(nested, "w") as dst:
        assert "layers" not in src and "layers\\gru\\cell" in src
        for name in src:
            if name != "vars":
                src.copy(src[name]["vars"], dst.require_group(name.replace("\\", "/")),
                         name="vars")
    members["model.weights.h5"] = nested.getvalue()
    with zipfile.ZipFile(tmp_path / "linux.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    x, _ = expected("windows_tf215")
    np.testing.assert_array_equal(gru_infer.convert(tmp_path / "linux.keras")(x),
                                  gru_infer.convert(FIXTURES / "windows_tf215.keras")(x))
