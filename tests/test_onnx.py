"""ONNX models with GRU ops (converters/onnx.py).

Fixtures: tests/fixtures/onnx/, from torch.onnx.export (both exporters) and
tf2onnx; hand-built models (onnx.helper) cover every GRU attribute the spec
has and the refusals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gru_infer

onnx = pytest.importorskip("onnx")
from conftest import run_converted  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from opgraph_numpy import evaluate  # noqa: E402

from gru_infer.converters.onnx import SUPPORTED_OPS, gru_node, read_onnx  # noqa: E402
from gru_infer.errors import ConversionError, FormatError, GruInferError  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
NAMES = sorted(MANIFEST)
PROJECT_ERRORS = GruInferError
CONFORMANCE = [root / "realworld/files/onnx+onnx/onnx/backend/test/data/node" / case / "model.onnx"
               for root in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))
               for case in ("test_gru_defaults", "test_gru_seq_length")]


def npz(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / MANIFEST[name]["npz"]) as data:
        return dict(data)


def torch_to_onnx_gates(array: np.ndarray) -> np.ndarray:
    """PyTorch packs gates r, z, n along the first axis; ONNX z, r, h."""
    r, z, n = np.split(array, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def grus(graph):
    return [gru_node(op, graph.constants) for op in graph.ops if op.op == "GRU"]


# -- every fixture --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fixture_reads_or_is_refused_saying_why(name):
    entry = MANIFEST[name]
    path = FIXTURES / entry["onnx"]
    if not entry["emits_gru_op"]:
        with pytest.raises(ConversionError, match="Loop"):
            read_onnx(path)
        return
    graph = read_onnx(path)
    assert graph.source == "onnx"
    assert set(graph.op_names()) <= SUPPORTED_OPS
    assert set(graph.op_names()) == set(entry["ops"]) - {"Constant"}  # folded
    assert [v.name for v in graph.inputs] == entry["inputs"]
    assert graph.outputs == entry["outputs"]
    for info in graph.inputs:
        for axis, label in entry["dynamic_axes"].get(info.name, {}).items():
            assert isinstance(info.shape[int(axis)], str), (info.name, axis, label)
    assert grus(graph)


TORCH_FIXTURES = [n for n in NAMES if MANIFEST[n]["generator"].endswith("torch_export_fixtures.py")]
TF2ONNX_FIXTURES = [n for n in NAMES if "tf2onnx" in MANIFEST[n]["generator"]
                    and MANIFEST[n]["emits_gru_op"]]


@pytest.mark.parametrize("name", TORCH_FIXTURES)
def test_torch_exported_gru_weights_equal_the_state_dict(name):
    graph = read_onnx(FIXTURES / MANIFEST[name]["onnx"])
    arrays = npz(name)
    layers = grus(graph)
    for layer_index, gru in enumerate(layers):
        suffixes = ("", "_reverse")[: gru.num_directions]
        assert gru.linear_before_reset and gru.has_bias
        assert (gru.gate_activation, gru.candidate_activation) == ("sigmoid", "tanh")
        for d, suffix in enumerate(suffixes):
            sd = {kind: torch_to_onnx_gates(arrays[f"sd_gru.{kind}_l{layer_index}{suffix}"])
                  for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            np.testing.assert_array_equal(gru.W[d], sd["weight_ih"])
            np.testing.assert_array_equal(gru.R[d], sd["weight_hh"])
            np.testing.assert_array_equal(gru.B[d], np.concatenate([sd["bias_ih"],
                                                                    sd["bias_hh"]]))
    heads = [k for k in arrays if k.startswith("sd_fc.weight")]
    if heads:
        weight = arrays["sd_fc.weight"]
        stored = [c for c in graph.constants.values() if c.shape in (weight.shape, weight.T.shape)
                  and (np.array_equal(c, weight) or np.array_equal(c, weight.T))]
        assert stored, "the head's weights are among the constants"


@pytest.mark.parametrize("name", TF2ONNX_FIXTURES)
def test_tf2onnx_gru_weights_equal_keras(name):
    graph = read_onnx(FIXTURES / MANIFEST[name]["onnx"])
    arrays = npz(name)
    # Keras GRU weights per direction: kernel (I, 3H), recurrent_kernel (H, 3H), bias (2, 3H),
    # gates z, r, h as in ONNX; a Bidirectional layer holds forward then backward.
    directions = [(gru, d) for gru in grus(graph) for d in range(gru.num_directions)]
    by_layer = {}
    for key, value in ((k, v) for k, v in arrays.items() if k.startswith("k_")):
        layer, index = key[2:].rsplit("_", 1)
        by_layer.setdefault(layer, {})[int(index)] = value
    recurrent = [by_layer[k] for k in sorted(by_layer) if k != "dense"]
    flat = [(layer[3 * i], layer[3 * i + 1], layer[3 * i + 2])
            for layer in recurrent for i in range(len(layer) // 3)]
    assert len(flat) == len(directions)
    for (gru, d), (kernel, recurrent_kernel, bias) in zip(directions, flat):
        assert gru.linear_before_reset
        np.testing.assert_array_equal(gru.W[d], kernel.T)
        np.testing.assert_array_equal(gru.R[d], recurrent_kernel.T)
        np.testing.assert_array_equal(gru.B[d], bias.reshape(-1))


def test_glue_of_the_torchscript_exporter():
    """What a mapper sees: the layout of one exported model, documented by example."""
    graph = read_onnx(FIXTURES / "ts_bigru2_h0_softmax.onnx")
    first, _second = grus(graph)
    assert first.direction == "bidirectional" and first.layout == 0
    assert graph.producer(first.x).op == "Transpose"  # batch_first -> time-major
    assert graph.producer(first.x).attrs["perm"] == [1, 0, 2]
    assert graph.producer(first.initial_h).op == "Slice"  # h0[0:2] of the h0 input
    assert graph.producer(first.initial_h).inputs[0] == "h0"
    # Y (T, D, B, H) -> Transpose (T, B, D, H) -> Reshape (T, B, D*H) feeds the next layer.
    transpose = graph.consumers(first.y)[0]
    assert transpose.op == "Transpose" and transpose.attrs["perm"] == [0, 2, 1, 3]
    assert graph.consumers(transpose.outputs[0])[0].op == "Reshape"
    assert graph.producer("h_n").op == "Concat"
    gemm = next(op for op in graph.ops if op.op == "Gemm")
    assert gemm.attrs.get("transB") == 1
    assert graph.constant_sources[gemm.inputs[1]] == "fc.weight"


def test_lengths_feed_sequence_lens():
    graph = read_onnx(FIXTURES / "ts_packed_lengths.onnx")
    (gru,) = grus(graph)
    cast = graph.producer(gru.sequence_lens)
    assert cast.op == "Cast" and cast.attrs["to"] == TensorProto.INT32
    assert graph.producer(gru.initial_h).op == "ConstantOfShape"


@pytest.mark.parametrize("path", [p for p in CONFORMANCE if p.exists()] or [None])
def test_conformance_models_with_weights_as_inputs_are_refused(path):
    if path is None:
        pytest.skip("shared/realworld ONNX conformance files not present")
    with pytest.raises(ConversionError, match="graph input"):
        read_onnx(path)


# -- hand-built models: every GRU attribute ------------------------------------------------

H, I = 3, 2


def gru_model(tmp_path: Path, *, direction="forward", weights_as_inputs=False,
              extra_nodes=(), **attributes) -> Path:
    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.normal(size=(D, 3 * H, I)).astype(np.float32), "W")
    R = numpy_helper.from_array(rng.normal(size=(D, 3 * H, H)).astype(np.float32), "R")
    B = numpy_helper.from_array(rng.normal(size=(D, 6 * H)).astype(np.float32), "B")
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], name="gru",
                            hidden_size=H, direction=direction, **attributes)
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", I])]
    initializers = [W, R, B]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims))
                   for t in initializers]
        initializers = []
    graph = helper.make_graph(
        [node, *extra_nodes], "g", inputs,
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "gru.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def only_gru(path: Path):
    graph = read_onnx(path)
    (gru,) = grus(graph)
    return gru


def test_defaults(tmp_path):
    gru = only_gru(gru_model(tmp_path))
    assert (gru.direction, gru.layout, gru.linear_before_reset) == ("forward", 0, False)
    assert (gru.gate_activation, gru.candidate_activation) == ("sigmoid", "tanh")
    assert gru.W.shape == (1, 3 * H, I) and gru.B.shape == (1, 6 * H)
    assert (gru.x, gru.y, gru.y_h, gru.sequence_lens, gru.initial_h) == ("X", "Y", "Y_h", "", "")


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lbr", [0, 1])
def test_direction_layout_linear_before_reset(tmp_path, direction, layout, lbr):
    gru = only_gru(gru_model(tmp_path, direction=direction, layout=layout,
                             linear_before_reset=lbr))
    assert (gru.direction, gru.layout, gru.linear_before_reset) == (direction, layout, bool(lbr))
    assert gru.W.shape[0] == (2 if direction == "bidirectional" else 1)


@pytest.mark.parametrize(("activations", "alpha", "beta", "expected"), [
    (["Sigmoid", "Tanh"], None, None, ("sigmoid", "tanh")),
    (["HardSigmoid", "Tanh"], None, None, ("hard_sigmoid_keras2", "tanh")),  # spec default
    (["HardSigmoid", "Tanh"], [0.2], [0.5], ("hard_sigmoid_keras2", "tanh")),
    (["HardSigmoid", "Tanh"], [1 / 6], [0.5], ("hard_sigmoid_keras3", "tanh")),
    (["Sigmoid", "Relu"], None, None, ("sigmoid", "relu")),
    (["Sigmoid", "Softsign"], None, None, ("sigmoid", "softsign")),
    (["Sigmoid", "Affine"], [1.0], [0.0], ("sigmoid", "linear")),
    (["sigmoid", "tanh"], None, None, ("sigmoid", "tanh")),
])
def test_supported_activations(tmp_path, activations, alpha, beta, expected):
    attributes = {"activations": activations}
    if alpha is not None:
        attributes["activation_alpha"] = alpha
    if beta is not None:
        attributes["activation_beta"] = beta
    gru = only_gru(gru_model(tmp_path, **attributes))
    assert (gru.gate_activation, gru.candidate_activation) == expected


def test_activation_parameters_are_consumed_in_order(tmp_path):
    gru = only_gru(gru_model(
        tmp_path, direction="bidirectional",
        activations=["HardSigmoid", "Affine", "HardSigmoid", "Affine"],
        activation_alpha=[0.2, 1.0, 0.2, 1.0], activation_beta=[0.5, 0.0, 0.5, 0.0]))
    assert (gru.gate_activation, gru.candidate_activation) == ("hard_sigmoid_keras2", "linear")


@pytest.mark.parametrize(("attributes", "message"), [
    ({"activations": ["LeakyRelu", "Tanh"]}, "LeakyRelu is not supported"),
    ({"activations": ["Sigmoid", "ThresholdedRelu"]}, "ThresholdedRelu is not supported"),
    ({"activations": ["Sigmoid", "ScaledTanh"], "activation_alpha": [1.0],
      "activation_beta": [1.0]}, "ScaledTanh is not supported"),
    ({"activations": ["Sigmoid", "Elu"]}, "Elu is not supported"),
    ({"activations": ["Sigmoid", "Softplus"]}, "Softplus is not supported"),
    ({"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.3]}, "HardSigmoid"),
    ({"activations": ["Sigmoid", "Affine"], "activation_alpha": [2.0],
      "activation_beta": [0.0]}, "Affine"),
    ({"activations": ["Swish", "Tanh"]}, "unknown GRU activation"),
    ({"clip": 3.0}, "clip"),
])
def test_unsupported_gru_attributes_are_refused_by_name(tmp_path, attributes, message):
    with pytest.raises(ConversionError, match=message):
        read_onnx(gru_model(tmp_path, **attributes))


def test_directions_with_different_activations_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="different activations"):
        read_onnx(gru_model(tmp_path, direction="bidirectional",
                            activations=["Sigmoid", "Tanh", "Sigmoid", "Relu"]))


def test_wrong_number_of_activations(tmp_path):
    with pytest.raises(FormatError, match="expected 4 names"):
        read_onnx(gru_model(tmp_path, direction="bidirectional", activations=["Sigmoid", "Tanh"]))


def test_weights_as_graph_inputs_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="conformance"):
        read_onnx(gru_model(tmp_path, weights_as_inputs=True))


def test_hidden_size_must_agree_with_weights(tmp_path):
    path = gru_model(tmp_path)
    model = onnx.load(str(path))
    (hidden,) = [a for a in model.graph.node[0].attribute if a.name == "hidden_size"]
    hidden.i = H + 1
    path.write_bytes(model.SerializeToString())
    with pytest.raises(FormatError, match="disagree"):
        read_onnx(path)


@pytest.mark.parametrize("op_type", ["LSTM", "Loop", "Scan", "Einsum"])
def test_other_ops_are_refused_by_name(tmp_path, op_type):
    node = helper.make_node(op_type, ["Y_h"], ["Z"], name="other")
    with pytest.raises(ConversionError, match=op_type):
        read_onnx(gru_model(tmp_path, extra_nodes=[node]))


def test_other_domains_are_refused(tmp_path):
    node = helper.make_node("Attention", ["Y_h"], ["Z"], name="attn", domain="com.microsoft")
    path = gru_model(tmp_path, extra_nodes=[node])
    with pytest.raises(ConversionError, match="com.microsoft::Attention"):
        read_onnx(path)


def test_external_data_is_refused(tmp_path):
    path = gru_model(tmp_path)
    model = onnx.load(str(path))
    weights = model.graph.initializer[0]
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ConversionError, match="external data"):
        read_onnx(path)


def test_tensor_claiming_more_bytes_than_stored(tmp_path):
    path = gru_model(tmp_path)
    model = onnx.load(str(path))
    model.graph.initializer[1].dims[1] = 3 * H * 1000
    path.write_bytes(model.SerializeToString())
    with pytest.raises(FormatError, match="bytes but"):
        read_onnx(path)


def test_memory_bomb_shape_is_refused(tmp_path):
    path = gru_model(tmp_path)
    model = onnx.load(str(path))
    model.graph.initializer[2].dims[:] = [2**20, 2**20]
    path.write_bytes(model.SerializeToString())
    with pytest.raises(FormatError, match="memory budget"):
        read_onnx(path)


def test_constant_nodes_are_folded(tmp_path):
    value = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "c")
    node = helper.make_node("Constant", [], ["C"], value=value)
    add = helper.make_node("Add", ["Y_h", "C"], ["Z"])
    graph = read_onnx(gru_model(tmp_path, extra_nodes=[node, add]))
    np.testing.assert_array_equal(graph.constants["C"], [1.0, 2.0])
    assert graph.op_names() == ["GRU", "Add"]


def test_not_onnx(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"\xff\xff\xff\xff not protobuf")
    with pytest.raises(FormatError):
        read_onnx(path)
    with pytest.raises(FileNotFoundError):
        read_onnx(tmp_path / "absent.onnx")


def test_missing_onnx_package_is_a_clear_import_error(tmp_path, monkeypatch):
    path = gru_model(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"gru_infer\[onnx\]"):
        read_onnx(path)


# -- fuzzing ------------------------------------------------------------------------------

SMALL = (FIXTURES / "ts_packed_lengths.onnx").read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(SMALL) - 1))
def test_truncated_models_raise_only_project_errors(tmp_path_factory, cut):
    path = tmp_path_factory.mktemp("cut") / "cut.onnx"
    path.write_bytes(SMALL[:cut])
    try:
        read_onnx(path)
    except PROJECT_ERRORS:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 7)),
                      min_size=1, max_size=4))
def test_bit_flips_raise_only_project_errors(tmp_path_factory, flips):
    data = bytearray(SMALL)
    for position, bit in flips:
        data[position] ^= 1 << bit
    path = tmp_path_factory.mktemp("flip") / "flip.onnx"
    path.write_bytes(bytes(data))
    try:
        read_onnx(path)
    except PROJECT_ERRORS:
        pass


# -- the op list carries the whole computation ---------------------------------------------


@pytest.mark.parametrize("name", [n for n in NAMES if MANIFEST[n]["emits_gru_op"]])
def test_op_list_reproduces_the_frameworks_outputs(name):
    """Run the op list with the NumPy reference at every check of the fixture (other
    batch sizes and lengths than traced): the framework's numbers at 1e-5."""
    entry = MANIFEST[name]
    graph = read_onnx(FIXTURES / entry["onnx"])
    arrays = npz(name)
    for index in range(len(entry["checks"])):
        suffix = "" if index == 0 else f"_{index}"
        feeds = {key: arrays[f"{key}{suffix}"] for key in entry["inputs"]}
        outputs = evaluate(graph, feeds)
        assert len(outputs) == len(entry["outputs"])
        for i, got in enumerate(outputs):
            np.testing.assert_allclose(got, arrays[f"y{i}{suffix}"], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} output {i} check {index}")


# -- conversion to a gru_infer model ----------------------------------------------------------

REFUSED = {
    "tf2onnx_gru_reset_before_seq": "Loop",
}




@pytest.mark.parametrize("name", NAMES)
def test_converts_to_the_frameworks_numbers(name):
    entry = MANIFEST[name]
    path = FIXTURES / entry["onnx"]
    if name in REFUSED:
        with pytest.raises(ConversionError, match=REFUSED[name]):
            gru_infer.convert(path)
        return
    model = gru_infer.convert(path)
    assert model.spec.source["format"] == ".onnx"
    arrays = npz(name)
    for index in range(len(entry["checks"])):
        suffix = "" if index == 0 else f"_{index}"
        outputs = run_converted(model, {n: arrays[f"{n}{suffix}"] for n in entry["inputs"]})
        assert len(outputs) == len(entry["outputs"])
        for i, got in enumerate(outputs):
            np.testing.assert_allclose(got, arrays[f"y{i}{suffix}"], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} output {i} check {index}")


def test_what_the_mapping_makes_of_exporter_glue():
    packed = gru_infer.convert(FIXTURES / "ts_packed_lengths.onnx").spec
    assert packed.source["lengths_input"] == "lengths"
    assert packed.source["state_outputs"] == ["h_n"]
    assert [i.name for i in packed.inputs] == ["x"] and not packed.time_major
    every_step = gru_infer.convert(FIXTURES / "ts_gru2_every_step.onnx").spec
    assert every_step.time_major  # x goes straight into a layout-0 GRU
    assert [layer.kind for layer in every_step.layers] == ["gru", "gru", "dense"]
    assert every_step.layers[2].activation == "sigmoid"  # MatMul + Add + Sigmoid: one Dense
    keras = gru_infer.convert(FIXTURES / "tf2onnx_bigru.onnx").spec
    gru = keras.layers[0]
    assert gru.directions == 2 and gru.return_state and not gru.return_sequences


def test_gru_attributes_reach_the_description(tmp_path):
    path = gru_model(tmp_path, layout=1, linear_before_reset=0,
                     activations=["HardSigmoid", "Softsign"], activation_alpha=[1 / 6],
                     activation_beta=[0.5])
    proto = onnx.load(str(path))  # output Y (B, T, 1, H) squeezed to (B, T, H)
    proto.graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "axis"))
    proto.graph.node.append(helper.make_node("Squeeze", ["Y", "axis"], ["Z"]))
    del proto.graph.output[:]
    proto.graph.output.append(helper.make_tensor_value_info("Z", TensorProto.FLOAT, None))
    path.write_bytes(proto.SerializeToString())
    model = gru_infer.convert(path)
    (cell,) = model.spec.layers[0].cells
    assert cell.linear_before_reset is False
    assert cell.activations == ("hard_sigmoid_keras3", "softsign")
    x = np.random.default_rng(1).normal(size=(2, 5, I)).astype(np.float32)
    (y,) = evaluate(read_onnx(path), {"X": x})
    np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-5)


def test_reverse_direction_alone_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="reverse"):
        gru_infer.convert(gru_model(tmp_path, direction="reverse", layout=1))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips=st.lists(st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 7)),
                      min_size=1, max_size=3))
def test_converting_damaged_models_raises_only_project_errors(tmp_path_factory, flips):
    data = bytearray(SMALL)
    for position, bit in flips:
        data[position] ^= 1 << bit
    path = tmp_path_factory.mktemp("convert") / "flip.onnx"
    path.write_bytes(bytes(data))
    try:
        gru_infer.convert(path)
    except PROJECT_ERRORS:
        pass
