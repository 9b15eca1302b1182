"""torch.export archives read without torch (converters/torch_export.py).

Fixtures: tests/fixtures/torch_export/, made by tools/make_torch_export_fixtures.py
from real torch 2.13.  Each archive must read into a checked op list whose
weights equal the state dict torch saved beside it; hostile archives must fail
with the project's errors and run nothing.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_converted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opgraph_numpy import evaluate

import gru_infer
from gru_infer.converters._opgraph import Ref
from gru_infer.converters._pickle import CheckpointError, UnsafeCheckpointError
from gru_infer.converters.torch_export import (
    SUPPORTED_OPS,
    gru_layers,
    is_torch_export_archive,
    read_torch_export,
)
from gru_infer.converters.torch_file import load_state_dict
from gru_infer.errors import ConversionError, FormatError, GruInferError

FIXTURES = Path(__file__).parent / "fixtures" / "torch_export"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
NAMES = sorted(MANIFEST)
PROJECT_ERRORS = GruInferError


def npz(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / MANIFEST[name]["npz"]) as data:
        return dict(data)


# -- every fixture --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fixture_reads_into_checked_op_list(name):
    entry = MANIFEST[name]
    graph = read_torch_export(FIXTURES / entry["pt2"])
    assert graph.source == "torch.export"
    assert set(graph.op_names()) <= SUPPORTED_OPS
    # The in-memory graph's getitem nodes are folded into multi-output ops.
    expected_ops = {op for op in entry["ops"] if "getitem" not in op}
    assert set(graph.op_names()) == expected_ops
    assert graph.metadata["torch_version"].startswith("2.13")
    assert graph.metadata["forward_arg_names"] == list(entry["inputs"])
    assert len(graph.outputs) == len(entry["outputs"])

    # User inputs: names, dtypes, static sizes; the batch axis symbolic.
    assert [v.name for v in graph.inputs] == list(entry["inputs"])
    for info in graph.inputs:
        declared = entry["inputs"][info.name]
        assert info.dtype == declared["dtype"]
        assert len(info.shape) == len(declared["shape"])
        traced = entry["traced_shapes"][info.name]
        for size, traced_size in zip(info.shape, traced):
            assert size == traced_size or isinstance(size, str)
        assert any(isinstance(size, str) for size in info.shape)  # dynamic batch
        assert isinstance(info.shape[-1], int) or info.dtype == "int64"


@pytest.mark.parametrize("name", NAMES)
def test_weights_equal_the_state_dict_torch_saved(name):
    entry = MANIFEST[name]
    graph = read_torch_export(FIXTURES / entry["pt2"])
    arrays = npz(name)
    state = load_state_dict(FIXTURES / entry["state_dict"])
    beyond = entry["constants_beyond_state_dict"]  # non-persistent buffers, tensor constants
    assert sorted(graph.constant_sources.values()) == sorted([*state, *beyond])
    for value, key in graph.constant_sources.items():
        constant = graph.constants[value]
        expected = arrays[f"const_{key}"] if key in beyond else arrays[f"sd_{key}"]
        assert constant.dtype == expected.dtype
        np.testing.assert_array_equal(constant, expected)
        if key not in beyond:
            np.testing.assert_array_equal(constant, state[key])


@pytest.mark.parametrize("name", NAMES)
def test_gru_ops_carry_their_configuration(name):
    graph = read_torch_export(FIXTURES / MANIFEST[name]["pt2"])
    grus = [op for op in graph.ops if op.op == "aten.gru.input"]
    assert grus
    for op in grus:
        attrs = op.attrs
        assert isinstance(attrs["input"], Ref) and isinstance(attrs["hx"], Ref)
        assert attrs["has_biases"] is True and attrs["train"] is False
        directions = 2 if attrs["bidirectional"] else 1
        params = attrs["params"]
        assert len(params) == 4 * attrs["num_layers"] * directions
        assert all(isinstance(p, Ref) and p.name in graph.constants for p in params)
        assert op.module_class == "torch.nn.modules.rnn.GRU"
        assert op.outputs == tuple(op.outputs) and len(op.outputs) == 2
        w_ih = graph.constants[params[0].name]
        assert w_ih.shape[0] % 3 == 0
        source = graph.constant_sources[params[0].name]
        assert source.startswith(op.module + ".") and source.endswith("weight_ih_l0")


def test_argument_layouts_of_a_head():
    """What a mapper sees for fc(relu(out[:, -1])): documented by example."""
    graph = read_torch_export(FIXTURES / "last_relu_fc.pt2")
    by_op = {op.op: op for op in graph.ops}
    gru = by_op["aten.gru.input"]
    assert gru.attrs["batch_first"] is True and gru.attrs["num_layers"] == 1
    assert gru.attrs["input"] == Ref("x")
    zeros = graph.producer(gru.attrs["hx"].name)
    assert zeros.op == "aten.zeros.default"
    size = zeros.attrs["size"]
    assert size[0] == 1 and size[2] == 8 and isinstance(size[1], Ref)  # (1, batch, H)
    assert graph.values[size[1].name].kind == "symint"
    # out[:, -1]: the full slice over the (dynamic) batch axis is dropped by export.
    select = by_op["aten.select.int"]
    assert select.attrs["self"] == Ref(gru.outputs[0])
    assert select.attrs["dim"] == 1 and select.attrs["index"] == -1
    assert "aten.slice.Tensor" not in by_op
    relu, linear = by_op["aten.relu.default"], by_op["aten.linear.default"]
    assert relu.attrs["self"] == Ref(select.outputs[0])
    assert linear.attrs["input"] == Ref(relu.outputs[0])
    assert graph.constant_sources[linear.attrs["weight"].name] == "fc.weight"
    assert graph.outputs == [linear.outputs[0]]
    assert "aten.gru.input" in graph.describe()


def test_is_torch_export_archive():
    assert is_torch_export_archive(FIXTURES / "two_grus.pt2")
    assert not is_torch_export_archive(FIXTURES / "two_grus_sd.pt")
    assert not is_torch_export_archive(FIXTURES / "two_grus.npz")
    assert not is_torch_export_archive(FIXTURES / "README.md")


# -- hostile and damaged archives -------------------------------------------------------


def records_of(name: str) -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(FIXTURES / MANIFEST[name]["pt2"]) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    root = next(iter(records)).split("/", 1)[0] + "/"
    return root, records


def write_zip(path: Path, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


def edit_json(records: dict[str, bytes], name: str, edit) -> None:
    document = json.loads(records[name])
    edit(document)
    records[name] = json.dumps(document).encode()


class _RunsCode:
    """Pickles as a call of os.system: the payload of a hostile record."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def payload_checkpoint(marker: Path) -> bytes:
    """A torch.save-style zip whose data.pkl would run `touch marker` under pickle.load."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_RunsCode(f"touch {marker}"),
                                                          protocol=2))
        archive.writestr("archive/byteorder", b"little")
    return buffer.getvalue()


def test_bad_json_is_a_format_error(tmp_path):
    root, records = records_of("last_relu_fc")
    records[f"{root}models/model.json"] = b'{"graph_module": {"graph": '
    with pytest.raises(FormatError, match="not valid JSON"):
        read_torch_export(write_zip(tmp_path / "bad.pt2", records))


def test_deeply_nested_json_is_a_format_error(tmp_path):
    root, records = records_of("last_relu_fc")
    records[f"{root}models/model.json"] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(FormatError):
        read_torch_export(write_zip(tmp_path / "deep.pt2", records))


def test_wrongly_typed_json_is_a_format_error(tmp_path):
    root, records = records_of("last_relu_fc")
    edit_json(records, f"{root}models/model.json",
              lambda d: d["graph_module"]["graph"]["nodes"][2].update(inputs="x"))
    with pytest.raises(FormatError, match="should be list"):
        read_torch_export(write_zip(tmp_path / "typed.pt2", records))


@pytest.mark.parametrize("target", ["torch.ops.aten.lstm.input", "builtins.eval",
                                    "torch.ops.higher_order.cond"])
def test_unknown_op_is_refused_by_name(tmp_path, target):
    root, records = records_of("last_relu_fc")

    def swap_relu(document):
        for node in document["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.relu.default":
                node["target"] = target

    edit_json(records, f"{root}models/model.json", swap_relu)
    shown = target.removeprefix("torch.ops.")
    with pytest.raises(ConversionError, match=shown.replace(".", r"\.")):
        read_torch_export(write_zip(tmp_path / "op.pt2", records))


def test_tensor_claiming_more_bytes_than_stored(tmp_path):
    root, records = records_of("last_relu_fc")
    config = f"{root}data/weights/model_weights_config.json"
    edit_json(records, config, lambda d: d["config"]["fc.weight"]["tensor_meta"].update(
        sizes=[{"as_int": 3000}, {"as_int": 8}], strides=[{"as_int": 8}, {"as_int": 1}]))
    with pytest.raises(FormatError, match="holds only"):
        read_torch_export(write_zip(tmp_path / "big.pt2", records))


def test_truncated_weight_record(tmp_path):
    root, records = records_of("last_relu_fc")
    config = json.loads(records[f"{root}data/weights/model_weights_config.json"])
    record = f"{root}data/weights/{config['config']['gru.weight_hh_l0']['path_name']}"
    records[record] = records[record][:-4]
    with pytest.raises(FormatError, match="holds only"):
        read_torch_export(write_zip(tmp_path / "short.pt2", records))


def test_storage_offset_past_the_record(tmp_path):
    root, records = records_of("last_relu_fc")
    edit_json(records, f"{root}data/weights/model_weights_config.json",
              lambda d: d["config"]["fc.bias"]["tensor_meta"].update(
                  storage_offset={"as_int": 2**40}))
    with pytest.raises(FormatError):
        read_torch_export(write_zip(tmp_path / "offset.pt2", records))


def test_memory_bomb_shape_is_refused(tmp_path):
    root, records = records_of("last_relu_fc")
    edit_json(records, f"{root}data/weights/model_weights_config.json",
              lambda d: d["config"]["fc.bias"]["tensor_meta"].update(
                  sizes=[{"as_int": 2**40}], strides=[{"as_int": 0}]))
    with pytest.raises(CheckpointError, match="memory budget"):
        read_torch_export(write_zip(tmp_path / "bomb.pt2", records))


@pytest.mark.parametrize("path_name", ["../../etc/passwd", "/etc/passwd", "..", "a/b"])
def test_record_names_cannot_leave_the_folder(tmp_path, path_name):
    root, records = records_of("last_relu_fc")
    edit_json(records, f"{root}data/weights/model_weights_config.json",
              lambda d: d["config"]["fc.bias"].update(path_name=path_name))
    with pytest.raises(FormatError, match="bad record name"):
        read_torch_export(write_zip(tmp_path / "path.pt2", records))


def test_pickled_weight_with_a_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    root, records = records_of("last_relu_fc")
    config = f"{root}data/weights/model_weights_config.json"
    edit_json(records, config, lambda d: d["config"]["fc.bias"].update(
        use_pickle=True, path_name="weight_99"))
    records[f"{root}data/weights/weight_99"] = payload_checkpoint(marker)
    with pytest.raises(UnsafeCheckpointError, match="os.system|posix.system"):
        read_torch_export(write_zip(tmp_path / "payload.pt2", records))
    assert not marker.exists()


def test_sample_inputs_are_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    root, records = records_of("last_relu_fc")
    records[f"{root}data/sample_inputs/model.pt"] = payload_checkpoint(marker)
    graph = read_torch_export(write_zip(tmp_path / "sample.pt2", records))
    assert graph.ops and not marker.exists()


def test_symbolic_expressions_are_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    root, records = records_of("last_relu_fc")
    expression = f"__import__('os').system('touch {marker}')"

    def poison(document):
        meta = document["graph_module"]["graph"]["tensor_values"]["x"]
        meta["sizes"][0] = {"as_expr": {"expr_str": expression, "hint": {"as_int": 2}}}

    edit_json(records, f"{root}models/model.json", poison)
    graph = read_torch_export(write_zip(tmp_path / "expr.pt2", records))
    assert graph.inputs[0].shape[0] == expression
    assert not marker.exists()


def test_unknown_schema_major_is_refused(tmp_path):
    root, records = records_of("last_relu_fc")
    edit_json(records, f"{root}models/model.json",
              lambda d: d["schema_version"].update(major=99))
    with pytest.raises(ConversionError, match="schema 99"):
        read_torch_export(write_zip(tmp_path / "schema.pt2", records))


def test_missing_weight_record(tmp_path):
    root, records = records_of("last_relu_fc")
    del records[f"{root}data/weights/weight_0"]
    with pytest.raises(FormatError, match="no .*weight_0"):
        read_torch_export(write_zip(tmp_path / "missing.pt2", records))


def test_training_outputs_are_refused(tmp_path):
    root, records = records_of("last_relu_fc")

    def mutate(document):
        spec = document["graph_module"]["signature"]["output_specs"][0]
        spec["buffer_mutation"] = {"arg": spec.pop("user_output")["arg"]["as_tensor"],
                                   "buffer_name": "bn.running_mean"}

    edit_json(records, f"{root}models/model.json", mutate)
    with pytest.raises(ConversionError, match="eval mode"):
        read_torch_export(write_zip(tmp_path / "train.pt2", records))


def test_other_torch_files_are_told_apart(tmp_path):
    with pytest.raises(FormatError, match="torch.save checkpoint"):
        read_torch_export(FIXTURES / "two_grus_sd.pt")
    with pytest.raises(FormatError, match="not a zip"):
        read_torch_export(FIXTURES / "README.md")
    torchscript = write_zip(tmp_path / "ts.pt", {"m/constants.pkl": b"", "m/code/m.py": b""})
    with pytest.raises(FormatError, match="TorchScript"):
        read_torch_export(torchscript)
    with pytest.raises(FileNotFoundError):
        read_torch_export(tmp_path / "absent.pt2")


def test_several_programs_need_a_name(tmp_path):
    root, records = records_of("last_relu_fc")
    for suffix in ("models/{}.json", "data/weights/{}_weights_config.json",
                   "data/constants/{}_constants_config.json"):
        records[root + suffix.format("other")] = records[root + suffix.format("model")]
    path = write_zip(tmp_path / "two.pt2", records)
    assert read_torch_export(path).metadata["model_name"] == "model"
    assert read_torch_export(path, model_name="other").metadata["model_name"] == "other"
    with pytest.raises(ConversionError, match="no program named"):
        read_torch_export(path, model_name="nope")


# -- fuzzing ------------------------------------------------------------------------------

SMALL = (FIXTURES / "initial_state.pt2").read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(SMALL) - 1))
def test_truncated_archives_raise_only_project_errors(tmp_path_factory, cut):
    path = tmp_path_factory.mktemp("cut") / "cut.pt2"
    path.write_bytes(SMALL[:cut])
    with pytest.raises(PROJECT_ERRORS):
        read_torch_export(path)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 7)),
                      min_size=1, max_size=4))
def test_bit_flips_raise_only_project_errors(tmp_path_factory, flips):
    data = bytearray(SMALL)
    for position, bit in flips:
        data[position] ^= 1 << bit
    path = tmp_path_factory.mktemp("flip") / "flip.pt2"
    path.write_bytes(bytes(data))
    try:
        read_torch_export(path)
    except PROJECT_ERRORS:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mangled_program_json_raises_only_project_errors(tmp_path_factory, data):
    """Replace one value somewhere in model.json by another JSON value."""
    root, records = records_of("initial_state")
    document = json.loads(records[f"{root}models/model.json"])
    node, path = document, []
    while isinstance(node, (dict, list)) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        path.append(key)
        if data.draw(st.booleans()):
            break
        node = node[key]
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(st.one_of(
        st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                             st.integers(), max_size=2)))
    records[f"{root}models/model.json"] = json.dumps(document).encode()
    path_out = write_zip(tmp_path_factory.mktemp("json") / "m.pt2", records)
    try:
        read_torch_export(path_out)
    except PROJECT_ERRORS:
        pass


# -- the op list carries the whole computation ---------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_op_list_reproduces_torchs_outputs(name):
    """Run the op list with the NumPy reference: torch's numbers at 1e-5, at a batch
    size other than the traced one (so nothing of the trace's batch is baked in)."""
    entry = MANIFEST[name]
    graph = read_torch_export(FIXTURES / entry["pt2"])
    arrays = npz(name)
    outputs = evaluate(graph, {key: arrays[key] for key in entry["inputs"]})
    assert len(outputs) == len(entry["outputs"])
    for got, key in zip(outputs, entry["outputs"]):
        np.testing.assert_allclose(got, arrays[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_gru_layers_are_canonical(name):
    """gru_layers: PyTorch's r, z, n blocks reordered to z, r, h; biases [Wb | Rb]."""
    graph = read_torch_export(FIXTURES / MANIFEST[name]["pt2"])
    arrays = npz(name)
    for op in (op for op in graph.ops if op.op == "aten.gru.input"):
        for layer in gru_layers(op, graph.constants):
            D = 2 if layer.bidirectional else 1
            H = layer.hidden_size
            assert layer.W.shape == (D, 3 * H, layer.input_size)
            assert layer.R.shape == (D, 3 * H, H) and layer.B.shape == (D, 6 * H)
            for d, suffix in enumerate(("", "_reverse")[:D]):
                prefix = f"sd_{op.module}."
                w_ih = arrays[f"{prefix}weight_ih_l{layer.index}{suffix}"]
                b_hh = arrays[f"{prefix}bias_hh_l{layer.index}{suffix}"]
                np.testing.assert_array_equal(layer.W[d][:H], w_ih[H:2 * H])       # z
                np.testing.assert_array_equal(layer.W[d][H:2 * H], w_ih[:H])       # r
                np.testing.assert_array_equal(layer.W[d][2 * H:], w_ih[2 * H:])    # n
                np.testing.assert_array_equal(layer.B[d][3 * H:4 * H], b_hh[H:2 * H])


def test_malformed_gru_params_are_refused(tmp_path):
    root, records = records_of("final_state_fc")

    def drop_param(document):
        for node in document["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.gru.input":
                params = next(i for i in node["inputs"] if i["name"] == "params")
                params["arg"]["as_tensors"].pop()

    edit_json(records, f"{root}models/model.json", drop_param)
    with pytest.raises(FormatError, match="7 parameters for num_layers=2"):
        read_torch_export(write_zip(tmp_path / "params.pt2", records))


# -- conversion to a gru_infer model ----------------------------------------------------------

# What gru_infer's description cannot express yet, and the reason it gives.
REFUSED: dict[str, str] = {}




@pytest.mark.parametrize("name", NAMES)
def test_converts_to_torchs_numbers(name):
    entry = MANIFEST[name]
    path = FIXTURES / entry["pt2"]
    if name in REFUSED:
        with pytest.raises(ConversionError, match=REFUSED[name]):
            gru_infer.convert(path)
        return
    model = gru_infer.convert(path)
    assert model.spec.source["format"].startswith(".pt2")
    arrays = npz(name)
    outputs = run_converted(model, {n: arrays[n] for n in entry["inputs"]})
    assert len(outputs) == len(entry["outputs"])
    for got, key in zip(outputs, entry["outputs"]):
        np.testing.assert_allclose(got, arrays[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_converted_model_layers(tmp_path):
    """What the mapping makes of fc(relu(out[:, -1])) and of h_n picks, saved and reloaded."""
    model = gru_infer.convert(FIXTURES / "last_relu_fc.pt2")
    gru, relu, fc = model.spec.layers
    assert (gru.kind, relu.kind, fc.kind) == ("gru", "activation", "dense")
    assert gru.return_sequences is False and gru.return_state is False  # last step only
    assert relu.activation == "relu" and fc.activation == "linear"
    bidirectional = gru_infer.convert(FIXTURES / "bigru2_timemajor.pt2").spec
    assert bidirectional.time_major and bidirectional.layers[2].kind == "select"  # out[-1]
    normalised = gru_infer.convert(FIXTURES / "buffers_constants.pt2").spec
    kinds = [layer.kind for layer in normalised.layers]
    assert kinds == ["batch_normalization", "batch_normalization", "gru", "dense",
                     "batch_normalization"]  # (x - mean) * inv_std, then * scale
    conv = gru_infer.convert(FIXTURES / "conv_front.pt2").spec
    assert [layer.kind for layer in conv.layers] == ["conv1d", "gru", "dense"]
    assert conv.layers[0].activation == "relu" and conv.layers[0].padding == (1, 1)
    softmax = gru_infer.convert(FIXTURES / "softmax_head.pt2")
    assert [layer.kind for layer in softmax.spec.layers] == ["gru", "dense"]
    assert softmax.spec.layers[1].activation == "softmax"  # folded into the Dense
    states = gru_infer.convert(FIXTURES / "bigru2_final_states.pt2").spec
    last = states.layers[1]
    assert last.directions == 2 and last.return_state and not last.return_sequences
    concat = states.nodes[2]
    assert concat.inputs == ((last.name, 1), (last.name, 2))  # h_n[-2], h_n[-1]
    path = tmp_path / "model.safetensors"
    gru_infer.convert(FIXTURES / "bigru2_final_states.pt2").save(path)
    arrays = npz("bigru2_final_states")
    np.testing.assert_allclose(gru_infer.load(path)(arrays["x"]), arrays["y"], rtol=1e-5,
                               atol=1e-5)


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(TypeError, match="do not apply"):
        gru_infer.convert(FIXTURES / "two_grus.pt2", head_on="last_step")
    model = gru_infer.convert(FIXTURES / "two_grus.pt2", model_name="model")
    assert model.spec.layers


@pytest.mark.parametrize("name", [n for n in NAMES if MANIFEST[n]["forward"]])
def test_state_dict_with_the_recorded_forward_gives_the_same_numbers(name):
    """The state dict saved beside each archive, converted with the forward= list the
    manifest records, computes what the archive computes."""
    entry = MANIFEST[name]
    arrays = npz(name)
    options = {"forward": entry["forward"]}
    if name == "bigru2_timemajor":
        options["batch_first"] = False
    model = gru_infer.convert(FIXTURES / entry["state_dict"], **options)
    feeds = [arrays[key] for key in entry["inputs"]]
    if name == "initial_state":
        out = model(feeds[0], initial_states=feeds[1])
    else:
        out = model(*feeds)
    out = out[0] if isinstance(out, list) else out
    np.testing.assert_allclose(out, arrays[entry["outputs"][0]], rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_converting_mangled_programs_raises_only_project_errors(tmp_path_factory, data):
    """Change one argument of one node (a dim, an index, a flag, a name) and convert."""
    root, records = records_of("bigru2_final_states")
    document = json.loads(records[f"{root}models/model.json"])
    nodes = document["graph_module"]["graph"]["nodes"]
    node = data.draw(st.sampled_from(nodes))
    argument = data.draw(st.sampled_from(node["inputs"]))
    argument["arg"] = data.draw(st.sampled_from([
        {"as_int": data.draw(st.integers(-3, 3))}, {"as_bool": data.draw(st.booleans())},
        {"as_none": True}, {"as_ints": [0, 2, 1]}, {"as_float": 0.5},
        {"as_tensor": {"name": data.draw(st.sampled_from(["x", "getitem", "zeros"]))}}]))
    records[f"{root}models/model.json"] = json.dumps(document).encode()
    path = write_zip(tmp_path_factory.mktemp("convert") / "m.pt2", records)
    try:
        gru_infer.convert(path)
    except PROJECT_ERRORS:
        pass


@pytest.mark.parametrize("name", ["every_step_sigmoid", "last_relu_fc", "two_grus"])
def test_converted_models_stream(name):
    """One-direction models, last steps mapped to final states: a stream gives, one
    step at a time, what torch computed on the whole sequence."""
    arrays = npz(name)
    model = gru_infer.convert(FIXTURES / MANIFEST[name]["pt2"])
    x = arrays["x"]
    stream = model.stream(batch_size=x.shape[0])
    steps = [stream.step(x[:, t]) for t in range(x.shape[1])]
    expected = arrays["y"]
    got = np.stack(steps, axis=1) if expected.ndim == 3 else steps[-1]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
