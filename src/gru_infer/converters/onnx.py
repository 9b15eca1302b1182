"""Read ONNX models with GRU ops into a checked ``OpGraph``.

Needs the ``onnx`` package (the optional extra ``gru_infer[onnx]``), imported
only when an ONNX file is read.  The file is parsed as protobuf and nothing
in it runs: initializers are copied into NumPy after their byte counts are
checked against their shapes, ``Constant`` nodes are folded into constants,
and every node must be a default-domain op on the list below.

What exporters write, and what this reader makes of it:

* ``torch.onnx.export`` (TorchScript and dynamo exporters alike): one ``GRU``
  per ``nn.GRU`` layer, all directions in the op, ``linear_before_reset=1``,
  weights as initializers already in ONNX gate order (z, r, h); ``initial_h``
  sliced from an ``h0`` input, or zeros built in the graph (Shape, Gather,
  Unsqueeze, Concat, ConstantOfShape); packed sequences give ``sequence_lens``
  (a Cast of the lengths input); Transpose/Reshape/Squeeze glue around the
  op; heads as Gemm (2-D) or MatMul + Add (3-D), then Sigmoid/Softmax/...
* tf2onnx: a ``GRU`` for Keras ``GRU(reset_after=True)`` (initial state from
  Shape/Slice/Concat/Expand, heads as MatMul + Add); a ``Loop`` for layers it
  cannot fuse (Keras ``reset_after=False`` with tf2onnx 1.16), refused.
* ONNX conformance tests (``test_gru_*``): GRU weights are graph inputs,
  refused: there is nothing to convert without the weights.

Every ``GRU`` node is checked at read time (``gru_node``): weights stored in
the file with consistent shapes, a direction, activations gru_infer's core
runs (Sigmoid, Tanh, Relu, Softsign, HardSigmoid with the Keras 2 (0.2, 0.5)
or Keras 3 / PyTorch (1/6, 0.5) constants, Affine(1, 0) as linear), no
``clip``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConversionError, FormatError, GruInferError
from ..spec.graph import ModelSpec
from ..spec.layers import Dense, Embedding, compute_dtype
from ._graph_to_spec import (
    _BIG,
    _Builder,
    _describe,
    _relayout,
    _Val,
    const_of,
    ints,
    map_graph,
)
from ._opgraph import Op, OpGraph, ValueInfo

__all__ = ["SUPPORTED_OPS", "OnnxGRU", "gru_node", "read_onnx"]

SUPPORTED_OPS = frozenset({
    "GRU",
    # glue that torch.onnx.export and tf2onnx put around it
    "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather",
    "Shape", "ConstantOfShape", "Expand", "Identity", "Cast", "Flatten", "Dropout",
    # arithmetic of heads (and of shapes)
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
    "Sigmoid", "Tanh", "Relu", "Softmax", "LogSoftmax", "HardSigmoid", "Softsign",
    "LayerNormalization", "Conv",
})
_RECURRENCE_SUBGRAPHS = {"Loop", "Scan", "If"}
_OTHER_RNNS = {"LSTM", "RNN"}

# TensorProto.DataType -> NumPy type of the values
_ELEMENT_TYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
    7: "int64", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    16: "bfloat16",
}
_ELEMENT_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128",
                  17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
                  20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"}
_MAX_NDIM = 32
_BUDGET_PER_FILE_BYTE = 4
_BUDGET_FLOOR = 64 * 2**20


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "reading ONNX files needs the onnx package: pip install 'gru_infer[onnx]' "
            "(or pip install onnx)") from exc
    return onnx


def read_onnx(path: str | os.PathLike[str]) -> OpGraph:
    """Read an ONNX model into a checked ``OpGraph``.

    Raises ``FormatError`` for a damaged file (not protobuf, tensors
    whose bytes do not match their shapes, external data), and
    ``ConversionError`` for a model gru_infer cannot take (unknown ops,
    a Loop/Scan recurrence, GRU weights that are graph inputs, unsupported
    GRU activations or clip); both ``ValueError``s whose message starts with
    the path.  ``ImportError`` when the onnx package is missing;
    ``FileNotFoundError`` for a missing file.
    """
    onnx = _import_onnx()
    path = os.fspath(path)
    with open(path, "rb") as file:
        data = file.read()
    try:
        model = onnx.ModelProto()
        try:
            model.ParseFromString(data)
        except Exception as exc:  # noqa: BLE001 - google.protobuf DecodeError and friends
            raise FormatError(f"not an ONNX model (protobuf: {exc})") from None
        return _Reader(model, _BUDGET_FLOOR + _BUDGET_PER_FILE_BYTE * len(data)).read()
    except GruInferError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise FormatError(f"{path}: the model is nested too deeply") from exc
    except Exception as exc:
        raise FormatError(
            f"{path}: could not read the model ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------------------------------
# Tensors and attributes
# ---------------------------------------------------------------------------------------

def _element_type(code: int, what: str) -> str:
    if code in _ELEMENT_TYPES:
        return _ELEMENT_TYPES[code]
    name = _ELEMENT_NAMES.get(code)
    if name is None:
        raise FormatError(f"{what}: unknown element type {code}")
    raise ConversionError(f"{what}: tensors of type {name} are not supported")


def _tensor(proto: Any, what: str, budget: list[int]) -> np.ndarray:
    """A TensorProto as a NumPy array, its stored size checked against its shape first."""
    if proto.data_location == 1 or len(proto.external_data):
        raise ConversionError(
            f"{what}: the tensor is stored as external data (a separate file); gru_infer "
            "reads self-contained models only: re-save it with onnx.save(model, path, "
            "save_as_external_data=False)")
    if proto.HasField("segment"):
        raise ConversionError(f"{what}: segmented tensors are not supported")
    dims = tuple(int(d) for d in proto.dims)
    if len(dims) > _MAX_NDIM or any(d < 0 for d in dims):
        raise FormatError(f"{what}: bad tensor shape {dims[:8]}")
    dtype_name = _element_type(proto.data_type, what)
    numel = math.prod(dims)
    loaded = np.dtype("float32" if dtype_name == "bfloat16" else dtype_name)
    if numel * loaded.itemsize > budget[0]:
        raise FormatError(
            f"{what}: a tensor of shape {dims} would take {numel * loaded.itemsize} bytes, "
            "beyond this file's memory budget")
    budget[0] -= numel * loaded.itemsize
    if proto.HasField("raw_data"):
        stored = np.dtype("uint16" if dtype_name == "bfloat16" else dtype_name)
        raw = proto.raw_data
        if len(raw) != numel * stored.itemsize:
            raise FormatError(
                f"{what}: the tensor of shape {dims} ({dtype_name}) needs "
                f"{numel * stored.itemsize} bytes but {len(raw)} are stored")
        values = np.frombuffer(raw, dtype=stored.newbyteorder("<"))
    else:
        field_name, stored = _typed_field(dtype_name)
        values = np.asarray(getattr(proto, field_name), dtype=stored)
        if values.size != numel:
            raise FormatError(
                f"{what}: the tensor of shape {dims} needs {numel} values but "
                f"{values.size} are stored")
    if dtype_name == "bfloat16":
        array = (values.astype(np.uint32) << np.uint32(16)).view(np.float32)
    elif dtype_name == "float16" and not proto.HasField("raw_data"):
        array = values.astype(np.uint16).view(np.float16)  # int32_data holds the bits
    else:
        array = values.astype(dtype_name, copy=True)
    return array.reshape(dims)


def _typed_field(dtype_name: str) -> tuple[str, str]:
    if dtype_name == "float32":
        return "float_data", "float32"
    if dtype_name == "float64":
        return "double_data", "float64"
    if dtype_name == "int64":
        return "int64_data", "int64"
    if dtype_name in ("uint32", "uint64"):
        return "uint64_data", "uint64"
    return "int32_data", "int64"  # int8/16/32, uint8/16, bool, float16/bfloat16 bits


def _attribute(attr: Any, what: str, budget: list[int]) -> Any:
    kind = attr.type
    where = f"{what} attribute {attr.name!r}"
    if attr.ref_attr_name:
        raise ConversionError(f"{where}: function attribute references are not supported")
    if kind == 1:
        return float(attr.f)
    if kind == 2:
        return int(attr.i)
    if kind == 3:
        return _text(attr.s, where)
    if kind == 4:
        return _tensor(attr.t, where, budget)
    if kind == 6:
        return [float(v) for v in attr.floats]
    if kind == 7:
        return [int(v) for v in attr.ints]
    if kind == 8:
        return [_text(v, where) for v in attr.strings]
    if kind == 9:
        return [_tensor(t, where, budget) for t in attr.tensors]
    if kind in (5, 10):
        raise ConversionError(f"{where}: subgraph attributes are not supported")
    raise ConversionError(f"{where}: attributes of type {kind} are not supported")


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: string is not UTF-8") from None


def _plain_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _value_info(proto: Any) -> ValueInfo:
    kind = proto.type.WhichOneof("value")
    if kind != "tensor_type":
        return ValueInfo(proto.name)
    tensor_type = proto.type.tensor_type
    dtype = _ELEMENT_TYPES.get(tensor_type.elem_type)
    if dtype == "bfloat16":
        dtype = "float32"
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(int(d.dim_value) if d.HasField("dim_value")
                      else (d.dim_param or "?") for d in tensor_type.shape.dim)
    return ValueInfo(proto.name, dtype, shape)


# ---------------------------------------------------------------------------------------
# GRU nodes
# ---------------------------------------------------------------------------------------

# ONNX activation -> (parameters it takes, in order, with the spec's defaults)
_ACTIVATION_PARAMETERS: dict[str, tuple[tuple[str, float | None], ...]] = {
    "Relu": (), "Tanh": (), "Sigmoid": (), "Softsign": (), "Softplus": (),
    "Affine": (("alpha", None), ("beta", None)),
    "LeakyRelu": (("alpha", 0.01),),
    "ThresholdedRelu": (("alpha", 1.0),),
    "ScaledTanh": (("alpha", None), ("beta", None)),
    "HardSigmoid": (("alpha", 0.2), ("beta", 0.5)),
    "Elu": (("alpha", 1.0),),
}


def _core_activation(name: str, params: dict[str, float], where: str) -> str:
    """The gru_infer name of an ONNX GRU activation, or ConversionError."""
    simple = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Softsign": "softsign"}
    if name in simple:
        return simple[name]
    if name == "HardSigmoid":
        alpha, beta = params["alpha"], params["beta"]
        if math.isclose(beta, 0.5, abs_tol=1e-6):
            if math.isclose(alpha, 0.2, abs_tol=1e-6):
                return "hard_sigmoid_keras2"
            if math.isclose(alpha, 1 / 6, abs_tol=1e-6):
                return "hard_sigmoid_keras3"
        raise ConversionError(
            f"{where}: HardSigmoid(alpha={alpha}, beta={beta}) is not supported; gru_infer "
            "runs alpha=0.2 (Keras 2) or 1/6 (Keras 3, PyTorch) with beta=0.5")
    if name == "Affine":
        if params["alpha"] == 1.0 and params["beta"] == 0.0:
            return "linear"
        raise ConversionError(
            f"{where}: Affine(alpha={params['alpha']}, beta={params['beta']}) is not "
            "supported; only Affine(1, 0) (linear)")
    raise ConversionError(
        f"{where}: the GRU activation {name} is not supported (gru_infer's GRU runs "
        "Sigmoid, Tanh, Relu, Softsign, HardSigmoid and Affine(1, 0))")


@dataclass(frozen=True)
class OnnxGRU:
    """One ONNX GRU node, checked; arrays exactly as stored (ONNX gate order z, r, h).

    ``W`` (D, 3H, I), ``R`` (D, 3H, H), ``B`` (D, 6H) = [Wb | Rb] (zeros when
    the node has none).  ``x``, ``sequence_lens`` and ``initial_h`` name the
    values the node reads ("" when omitted); ``y``/``y_h`` the ones it writes
    ("" when unused).  ``layout`` 0: X (T, B, I), Y (T, D, B, H), Y_h
    (D, B, H); 1: X (B, T, I), Y (B, T, D, H), Y_h (B, D, H).
    """

    name: str
    direction: str                 # "forward", "reverse" or "bidirectional"
    hidden_size: int
    input_size: int
    linear_before_reset: bool
    gate_activation: str           # gru_infer names: "sigmoid", "hard_sigmoid_keras2", ...
    candidate_activation: str
    layout: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray
    has_bias: bool
    x: str
    sequence_lens: str
    initial_h: str
    y: str
    y_h: str

    @property
    def num_directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1


def gru_node(op: Op, constants: dict[str, np.ndarray]) -> OnnxGRU:
    """Check one GRU op of an ONNX OpGraph against the spec and gru_infer's core."""
    where = f"GRU node {op.name!r}"
    inputs = list(op.inputs) + [""] * (6 - len(op.inputs))
    outputs = list(op.outputs) + [""] * (2 - len(op.outputs))
    if len(op.inputs) > 6 or len(op.outputs) > 2 or not inputs[0]:
        raise FormatError(f"{where}: expected X, W, R[, B, sequence_lens, initial_h] "
                               f"and at most 2 outputs, got {len(op.inputs)} inputs, "
                               f"{len(op.outputs)} outputs")
    x, w_name, r_name, b_name, lens, h0 = inputs
    for role, name in (("W", w_name), ("R", r_name), ("B", b_name)):
        if name and name not in constants:
            raise ConversionError(
                f"{where}: its {role} weights come from {name!r}, which is a graph input "
                "or computed in the graph, not stored in the file (as in the ONNX "
                "conformance tests); gru_infer needs the weights as initializers")
    if not w_name or not r_name:
        raise FormatError(f"{where}: W and R are required")
    attrs = op.attrs
    known = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
             "hidden_size", "layout", "linear_before_reset"}
    unknown = sorted(set(attrs) - known)
    if unknown:
        raise ConversionError(f"{where}: unknown attributes {unknown}")
    if "clip" in attrs:
        raise ConversionError(
            f"{where}: clip={attrs['clip']} is not supported (gru_infer's GRU does not clip "
            "gate inputs); export without clip")
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise FormatError(f"{where}: unknown direction {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    W, R = constants[w_name], constants[r_name]
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
        raise FormatError(
            f"{where}: W {W.shape} and R {R.shape} must be (D, 3H, I) and (D, 3H, H) with "
            f"D={D} for direction {direction!r}")
    H = R.shape[2]
    hidden_size = attrs.get("hidden_size", H)
    if not isinstance(hidden_size, int) or hidden_size != H or W.shape[1] != 3 * H or \
            R.shape[1] != 3 * H or H < 1 or W.shape[2] < 1:
        raise FormatError(
            f"{where}: W {W.shape}, R {R.shape} and hidden_size={hidden_size} disagree")
    if b_name:
        B = constants[b_name]
        if B.shape != (D, 6 * H):
            raise FormatError(f"{where}: B is {B.shape}, expected {(D, 6 * H)}")
    else:
        B = np.zeros((D, 6 * H), W.dtype)
    for name, array in (("W", W), ("R", R), ("B", B)):
        if array.dtype.kind != "f":
            raise FormatError(f"{where}: {name} is {array.dtype}, not floating point")
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise FormatError(f"{where}: layout={layout}, expected 0 or 1")
    lbr = attrs.get("linear_before_reset", 0)
    if lbr not in (0, 1):
        raise FormatError(f"{where}: linear_before_reset={lbr}, expected 0 or 1")

    names = attrs.get("activations", ["Sigmoid", "Tanh"] * D)
    if not isinstance(names, list) or len(names) != 2 * D:
        raise FormatError(
            f"{where}: activations {names!r}: expected {2 * D} names (gate f and candidate "
            "g per direction)")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    resolved = []
    for raw in names:
        # Names are matched case-insensitively in practice (ORT); the spec spells them so.
        canonical = {k.lower(): k for k in _ACTIVATION_PARAMETERS}.get(str(raw).lower())
        if canonical is None:
            raise ConversionError(f"{where}: unknown GRU activation {raw!r}")
        params: dict[str, float] = {}
        for param, default in _ACTIVATION_PARAMETERS[canonical]:
            source = alphas if param == "alpha" else betas
            if source:
                params[param] = float(source.pop(0))
            elif default is not None:
                params[param] = default
            else:
                raise FormatError(f"{where}: activation {canonical} needs {param}")
        resolved.append(_core_activation(canonical, params, where))
    gates, candidates = resolved[0::2], resolved[1::2]
    if len(set(gates)) != 1 or len(set(candidates)) != 1:
        raise ConversionError(
            f"{where}: the two directions use different activations {resolved}; gru_infer "
            "runs one pair per layer")
    return OnnxGRU(op.name, direction, H, W.shape[2], bool(lbr), gates[0], candidates[0],
                   layout, W, R, B, bool(b_name), x, lens, h0, outputs[0], outputs[1])


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, model: Any, budget_bytes: int) -> None:
        self._model = model
        self._budget = [budget_bytes]

    def read(self) -> OpGraph:
        model = self._model
        if not model.HasField("graph"):
            raise FormatError("the model has no graph")
        graph = model.graph
        opsets = {(imp.domain or "ai.onnx"): int(imp.version) for imp in model.opset_import}
        if "ai.onnx" not in opsets:
            raise FormatError("the model imports no default-domain opset")
        if len(graph.sparse_initializer):
            raise ConversionError("sparse initializers are not supported")

        constants: dict[str, np.ndarray] = {}
        sources: dict[str, str] = {}
        for index, proto in enumerate(graph.initializer):
            name = proto.name
            if not name:
                raise FormatError(f"initializer {index} has no name")
            if name in constants:
                raise FormatError(f"initializer {name!r} is stored twice")
            constants[name] = _tensor(proto, f"initializer {name!r}", self._budget)
            sources[name] = name

        values: dict[str, ValueInfo] = {}
        for proto in list(graph.value_info) + list(graph.input) + list(graph.output):
            values[proto.name] = _value_info(proto)
        # Before IR 4 initializers were listed as inputs too: they are constants here.
        inputs = [values[p.name] for p in graph.input if p.name not in constants]

        ops = self._nodes(graph, constants, sources)
        outputs = [p.name for p in graph.output]
        metadata = {
            "ir_version": int(model.ir_version),
            "opset_version": opsets,
            # Damaged files can carry non-UTF-8 bytes in string fields.
            "producer_name": _plain_text(model.producer_name),
            "producer_version": _plain_text(model.producer_version),
            "graph_name": _plain_text(graph.name),
        }
        result = OpGraph("onnx", inputs, outputs, ops, constants, sources, values,
                         metadata).check()
        for op in result.ops:
            if op.op == "GRU":
                gru_node(op, result.constants)
        return result

    def _nodes(self, graph: Any, constants: dict[str, np.ndarray],
               sources: dict[str, str]) -> list[Op]:
        ops: list[Op] = []
        unknown: dict[str, str] = {}
        for index, node in enumerate(graph.node):
            name = node.name or f"{node.op_type}_{index}"
            what = f"node {name!r} ({node.op_type})"
            domain = node.domain or "ai.onnx"
            if domain != "ai.onnx":
                unknown.setdefault(f"{domain}::{node.op_type}", name)
                continue
            if node.op_type in _RECURRENCE_SUBGRAPHS:
                raise ConversionError(
                    f"{what}: the model computes with a {node.op_type} subgraph; tf2onnx "
                    "writes the recurrence of layers it cannot fuse into a GRU op (Keras "
                    "GRU(reset_after=False), custom cells) as a Loop or Scan, and gru_infer "
                    "needs an ONNX GRU op: convert the Keras model itself, or re-export "
                    "with reset_after=True")
            if node.op_type in _OTHER_RNNS:
                raise ConversionError(f"{what}: {node.op_type} layers are not supported")
            if node.op_type == "Constant":
                self._fold_constant(node, what, constants, sources)
                continue
            if node.op_type not in SUPPORTED_OPS:
                unknown.setdefault(node.op_type, name)
                continue
            attrs = {attr.name: _attribute(attr, what, self._budget) for attr in node.attribute}
            ops.append(Op(node.op_type, name, tuple(node.input), tuple(node.output), attrs))
        if unknown:
            listed = ", ".join(f"{op} (node {node!r})" for op, node in unknown.items())
            raise ConversionError(f"the model uses ops gru_infer does not support: {listed}")
        return ops

    def _fold_constant(self, node: Any, what: str, constants: dict[str, np.ndarray],
                       sources: dict[str, str]) -> None:
        if len(node.output) != 1 or not node.output[0] or len(node.attribute) != 1:
            raise FormatError(f"{what}: a Constant has one output and one attribute")
        attr = node.attribute[0]
        value = _attribute(attr, what, self._budget)
        kinds = {"value": None, "value_float": np.float32, "value_floats": np.float32,
                 "value_int": np.int64, "value_ints": np.int64}
        if attr.name not in kinds:
            raise ConversionError(f"{what}: Constant {attr.name} is not supported")
        array = value if kinds[attr.name] is None else np.asarray(value, kinds[attr.name])
        if not isinstance(array, np.ndarray):
            raise FormatError(f"{what}: the Constant's value is not a tensor")
        name = node.output[0]
        if name in constants:
            raise FormatError(f"{what}: value {name!r} is defined twice")
        constants[name] = array
        sources[name] = f"Constant node {node.name or name}"


def convert_onnx(path: str | os.PathLike[str]):
    """The ModelSpec of an ONNX model with GRU ops (see _graph_to_spec)."""
    graph = read_onnx(path)
    producer = " ".join(p for p in (graph.metadata["producer_name"],
                                    graph.metadata["producer_version"]) if p)
    source = {"framework": "onnx", "format": ".onnx", "file": os.path.basename(os.fspath(path)),
              "version": f"opset {graph.metadata['opset_version'].get('ai.onnx')}",
              "producer": producer}
    try:
        return onnx_to_spec(graph, source)
    except GruInferError as exc:
        raise type(exc)(f"{os.fspath(path)}: {exc}") from exc


# -- mapping onto a ModelSpec (see _graph_to_spec for the approach) --------------------

def onnx_to_spec(graph: OpGraph, source: dict) -> ModelSpec:
    """A ModelSpec from an ONNX OpGraph."""
    return map_graph(_build_onnx, graph, source)


def _build_onnx(b: _Builder, source: dict) -> ModelSpec:
    g = b.graph
    lengths_like = set()
    # Which inputs feed GRU sequence_lens or initial_h (directly or via Cast/Slice).
    for op in g.ops:
        if op.op == "GRU":
            for index in (4, 5):
                name = op.inputs[index] if len(op.inputs) > index else ""
                seen = 0
                while name and seen < 8:
                    producer = g.producer(name)
                    if producer is None:
                        lengths_like.add((name, index))
                        break
                    if producer.op not in ("Cast", "Slice", "Identity"):
                        break
                    name, seen = producer.inputs[0], seen + 1
    for info in g.inputs:
        if (info.name, 4) in lengths_like:
            b.vals[info.name] = _Val("lengths_input", input_name=info.name)
        elif (info.name, 5) in lengths_like:
            b.vals[info.name] = _Val("state_input", input_name=info.name,
                                     rows=tuple(range(info.shape[0]))
                                     if info.shape and isinstance(info.shape[0], int) else ())
        else:
            b.add_input(info.name, info.dtype, info.shape)

    for op in g.ops:
        where = f"{op.op} node {op.name!r}"
        a = op.attrs
        kind = op.op
        out = op.outputs[0] if op.outputs else ""
        ins = [b.val(n, where) if n else None for n in op.inputs]
        base = op.name.split("/")[-2] if op.name.count("/") >= 2 else op.name

        if kind == "Shape":
            b.vals[out] = _Val("shape")
            continue
        if all(v is not None and v.kind in ("const", "shape", "zeros") for v in ins) and \
                kind != "GRU" and ins:
            b.vals[out] = _shape_op(kind, a, ins, where)
            continue
        if kind == "GRU":
            gru = gru_node(op, g.constants)
            if gru.direction == "reverse":
                raise ConversionError(f"{where}: a lone reverse direction has no equivalent in "
                                      "gru_infer's description yet")
            x = ins[0]
            layout_in = "TBF" if gru.layout == 0 else "BTF"
            cells = [{"W": gru.W[d], "R": gru.R[d], "B": gru.B[d] if gru.has_bias else None,
                      "linear_before_reset": gru.linear_before_reset,
                      "activations": (gru.gate_activation, gru.candidate_activation)}
                     for d in range(gru.num_directions)]
            initial = ins[5] if len(ins) > 5 else None
            lengths = ins[4] if len(ins) > 4 else None
            name = b.gru(base or "gru", x, cells, layout_in, initial, lengths, where)
            D, H = gru.num_directions, gru.hidden_size
            y_layout = "TDBH" if gru.layout == 0 else "BTDH"
            if gru.y:
                b.vals[gru.y] = _Val("gru_y", layout=y_layout, size=H, layer=name,
                                     has_lengths=lengths is not None)
            if gru.y_h:
                b.vals[gru.y_h] = _Val("states", layout="SBH" if gru.layout == 0 else "BSH",
                                       states=tuple((name, d) for d in range(D)))
            continue
        if kind in ("Identity", "Dropout"):
            b.vals[out] = ins[0]
        elif kind == "Cast":
            b.vals[out] = ins[0]
        elif kind == "Transpose":
            x = ins[0]
            perm = a.get("perm") or list(range(len(x.layout)))[::-1]
            if x.kind not in ("seq", "vec", "gru_y", "dirseq", "states", "tokens"):
                raise ConversionError(f"{where}: transposing {_describe(x)}")
            layout = _relayout(x.layout, perm, where)
            b.vals[out] = _Val(**{**x.__dict__, "layout": layout})
        elif kind == "Slice":
            b.vals[out] = _onnx_slice(b, ins, where)
        elif kind in ("Squeeze", "Unsqueeze"):
            b.vals[out] = _onnx_squeeze(b, kind, a, ins, where)
        elif kind == "Reshape":
            b.vals[out] = _onnx_reshape(b, ins, a, where)
        elif kind == "Gather":
            x, index = ins
            if x.kind == "const" and ins[1].kind == "tokens":  # an embedding table
                table = x.array
                name = b.add(Embedding, base or "embedding", [ins[1].ref],
                             table=np.asarray(table, compute_dtype(table.dtype)))
                b.vals[out] = _Val("seq", (name, 0), ins[1].layout + "F", table.shape[1])
                continue
            axis = a.get("axis", 0)
            if index.kind != "const" or index.array.ndim != 0:
                raise ConversionError(f"{where}: gathering {_describe(index)}")
            position = int(index.array)
            letter = x.layout[axis] if -len(x.layout) <= axis < len(x.layout) else "?"
            if x.kind == "states" and letter == "S":
                b.vals[out] = b.pick_state(x, position, where)
            elif x.kind in ("seq", "dirseq") and letter == "T" and position == -1:
                b.vals[out] = b.last_step(x, where)
            elif x.kind in ("seq", "dirseq") and letter == "T" and position == 0:
                b.vals[out] = b.first_step(x, where)
            else:
                raise ConversionError(f"{where}: gathering index {position} of axis {letter} "
                                      f"of {_describe(x)}")
        elif kind == "Concat":
            axis = a["axis"]
            if all(v.kind == "states" for v in ins):
                letter = ins[0].layout[axis]
                if letter != "S" or any(v.layout != ins[0].layout for v in ins):
                    raise ConversionError(f"{where}: joining states on axis {letter}")
                b.vals[out] = _Val("states", layout=ins[0].layout,
                                   states=tuple(s for v in ins for s in v.states))
            else:
                b.vals[out] = b.concat(ins, axis, "concatenate", where)
        elif kind == "Gemm":
            x, weight = ins[0], ins[1]
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise ConversionError(f"{where}: Gemm with transA/alpha/beta is not supported")
            kernel = weight.array.T if a.get("transB", 0) else weight.array
            bias = ins[2].array if len(ins) > 2 and ins[2] is not None else None
            if weight.kind != "const" or (len(ins) > 2 and ins[2] is not None
                                          and ins[2].kind != "const"):
                raise ConversionError(f"{where}: Gemm weights must be stored in the file")
            b.vals[out] = b.dense(x, kernel, bias, base or "dense", where)
        elif kind == "MatMul":
            x, weight = ins
            if weight.kind != "const" or weight.array.ndim != 2:
                raise ConversionError(f"{where}: MatMul by {_describe(weight)}")
            b.vals[out] = b.dense(x, weight.array, None, base or "dense", where)
        elif kind in ("Add", "Sub", "Mul", "Div"):
            consts = [v for v in ins if v.kind == "const"]
            tensors = [v for v in ins if v.kind != "const"]
            op_name = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "divide"}[kind]
            read_once = len(consts) == 1 and all(
                len(g.consumers(n)) == 1 and n not in g.outputs
                for n, v in zip(op.inputs, ins) if v.kind != "const")
            if kind == "Add" and read_once and _can_fold_bias(b, tensors[0]):
                b.vals[out] = _fold_bias(b, tensors[0], consts[0].array, where)
            elif len(consts) == 1 and (ins[1].kind == "const" or kind in ("Add", "Mul")):
                b.vals[out] = b.affine(tensors[0], consts[0].array, op_name, op_name, where)
            elif not consts and kind != "Div":
                b.vals[out] = b.merge(ins, op_name, op_name, where)
            else:
                raise ConversionError(f"{where}: {op_name} of {[_describe(v) for v in ins]} is "
                                      "not supported")
        elif kind in ("Sigmoid", "Tanh", "Relu", "Softsign"):
            b.vals[out] = b.activation(ins[0], kind.lower(), kind.lower(), where)
        elif kind == "HardSigmoid":
            alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
            act = "hard_sigmoid_keras2" if math.isclose(alpha, 0.2, abs_tol=1e-6) else \
                "hard_sigmoid_keras3" if math.isclose(alpha, 1 / 6, abs_tol=1e-6) else None
            if act is None or not math.isclose(beta, 0.5, abs_tol=1e-6):
                raise ConversionError(f"{where}: HardSigmoid({alpha}, {beta}) is not supported")
            b.vals[out] = b.activation(ins[0], act, act, where)
        elif kind in ("Softmax", "LogSoftmax"):
            act = "softmax" if kind == "Softmax" else "log_softmax"
            b.vals[out] = b.activation(ins[0], act, act, where, axis=a.get("axis", -1))
        elif kind == "Flatten":
            x = ins[0]
            if x.kind != "vec" or a.get("axis", 1) != 1:
                raise ConversionError(f"{where}: flattening {_describe(x)}")
            b.vals[out] = x
        elif kind == "LayerNormalization":
            x = ins[0]
            if a.get("axis", -1) not in (-1, len(x.layout) - 1) or \
                    any(v is not None and v.kind != "const" for v in ins[1:]):
                raise ConversionError(f"{where}: normalising over axis {a.get('axis')}; "
                                      "gru_infer normalises over the features")
            beta = ins[2].array if len(ins) > 2 and ins[2] is not None else None
            b.vals[out] = b.layer_norm(x, ins[1].array, beta, a.get("epsilon", 1e-5),
                                       base or "layer_norm", where)
        elif kind == "Conv":
            x, weight = ins[0], ins[1]
            pads = a.get("pads", [0, 0])
            if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or len(pads) != 2 or \
                    weight.kind != "const" or weight.array.ndim != 3:
                raise ConversionError(f"{where}: only 1-D convolutions with explicit pads and "
                                      "stored weights are supported")
            bias = ins[2].array if len(ins) > 2 and ins[2] is not None else None
            b.vals[out] = b.conv1d(x, weight.array, bias, a.get("strides", [1])[0],
                                   (pads[0], pads[1]), a.get("dilations", [1])[0],
                                   a.get("group", 1), base or "conv", where)
        else:
            raise ConversionError(f"{where}: {kind} on {[_describe(v) for v in ins if v]} is "
                                  "not supported by the mapping")
    return b.finish(list(g.outputs), source)


def _can_fold_bias(b: _Builder, x: _Val) -> bool:
    draft = next((d for d in b.nodes if x.ref and d.name == x.ref[0]), None)
    return draft is not None and draft.cls is Dense and draft.kwargs.get("bias") is None


def _fold_bias(b: _Builder, x: _Val, bias: np.ndarray, where: str) -> _Val:
    """MatMul + Add(bias): the bias of the Dense the MatMul made."""
    draft = next((d for d in b.nodes if x.ref and d.name == x.ref[0]), None)
    bias = np.asarray(bias).reshape(-1)
    if draft is None or draft.cls is not Dense or draft.kwargs.get("bias") is not None or \
            bias.shape != (x.size,):
        raise ConversionError(f"{where}: adding a constant to {_describe(x)} has no layer in "
                              "gru_infer's description yet")
    draft.kwargs["bias"] = np.asarray(bias, draft.kwargs["kernel"].dtype)
    return x


def _shape_op(kind: str, a: dict, ins: list, where: str) -> _Val:
    """Ops on constants, shapes and zeros: initial states built in the graph."""
    if any(v.kind == "zeros" for v in ins) or kind == "ConstantOfShape":
        if kind == "ConstantOfShape":
            fill = a.get("value")
            if fill is not None and np.any(np.asarray(fill) != 0):
                raise ConversionError(f"{where}: a constant of shape filled with {fill}")
        if kind == "Expand" and ins[0].kind == "const" and np.any(ins[0].array != 0):
            raise ConversionError(f"{where}: expanding a non-zero constant")
        return _Val("zeros")
    if kind == "Expand" and ins[0].kind == "const":
        if np.any(ins[0].array != 0):
            raise ConversionError(f"{where}: expanding a non-zero constant")
        return _Val("zeros")
    if all(v.kind == "const" for v in ins):
        return _fold_constants(kind, a, [v.array for v in ins], where)
    return _Val("shape")


def _fold_constants(kind: str, a: dict, arrays: list, where: str) -> _Val:
    if kind in ("Identity", "Cast"):
        return _Val("const", array=arrays[0])
    if kind == "Unsqueeze":
        out = arrays[0]
        axes = a.get("axes") if len(arrays) < 2 else ints(arrays[1])
        for axis in sorted(axes):
            out = np.expand_dims(out, axis)
        return _Val("const", array=out)
    if kind == "Concat":
        return _Val("const", array=np.concatenate([np.atleast_1d(x) for x in arrays],
                                                  axis=a["axis"]))
    if kind in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[kind]
        return _Val("const", array=f(arrays[0], arrays[1]))
    return _Val("shape")


def _onnx_slice(b: _Builder, ins: list, where: str) -> _Val:
    x = ins[0]
    starts, ends = ints(const_of(ins[1], where)), ints(const_of(ins[2], where))
    axes = ints(const_of(ins[3], where)) if len(ins) > 3 and ins[3] is not None \
        else list(range(len(starts)))
    steps = ints(const_of(ins[4], where)) if len(ins) > 4 and ins[4] is not None \
        else [1] * len(starts)
    if len(starts) != 1 or steps != [1]:
        raise ConversionError(f"{where}: multi-axis or strided slices are not supported")
    start, end, axis = starts[0], ends[0], axes[0]
    if x.kind == "state_input" and axis == 0:
        rows = x.rows[start:end] if x.rows else tuple(range(start, end))
        return _Val("state_input", input_name=x.input_name, rows=tuple(rows))
    letter = x.layout[axis] if x.layout and -len(x.layout) <= axis < len(x.layout) else "?"
    if x.kind == "gru_y" and letter == "D":
        if end - start != 1:
            raise ConversionError(f"{where}: slicing directions {start}:{end}")
        return _Val("gru_y1", layout=x.layout, size=x.size, layer=x.layer, direction=start,
                    has_lengths=x.has_lengths)
    if x.kind in ("seq", "dirseq") and letter == "T":
        if start == -1 and end >= _BIG:
            return _Val(x.kind, x.ref, x.layout.replace("T", "t"), x.size, x.layer,
                        x.direction, has_lengths=x.has_lengths)  # t: one step, the last
        if start == 0 and end == 1:
            return _Val(x.kind, x.ref, x.layout.replace("T", "0"), x.size, x.layer,
                        x.direction, has_lengths=x.has_lengths)  # 0: one step, the first
    if start == 0 and end >= _BIG:
        return x
    raise ConversionError(f"{where}: slicing [{start}:{end}] on axis {letter} of {_describe(x)}")


def _onnx_squeeze(b: _Builder, kind: str, a: dict, ins: list, where: str) -> _Val:
    x = ins[0]
    axes = a.get("axes") if len(ins) < 2 or ins[1] is None else ints(const_of(ins[1], where))
    if axes is None or len(axes) != 1:
        raise ConversionError(f"{where}: {kind} needs one explicit axis")
    axis = axes[0]
    if kind == "Unsqueeze":
        raise ConversionError(f"{where}: unsqueezing {_describe(x)}")
    letter = x.layout[axis] if -len(x.layout) <= axis < len(x.layout) else "?"
    rest = x.layout[:axis % len(x.layout)] + x.layout[axis % len(x.layout) + 1:]
    if x.kind == "gru_y" and letter == "D":
        draft = b.recurrent[x.layer]
        if len(draft.kwargs["cells"]) != 1:
            raise ConversionError(f"{where}: squeezing the direction axis of a bidirectional "
                                  "GRU's output")
        return _Val("seq", (x.layer, 0), rest.replace("H", "F"), x.size, layer=x.layer,
                    has_lengths=x.has_lengths)
    if x.kind == "gru_y1" and letter == "D":
        return _Val("dirseq", None, rest.replace("H", "F"), x.size, layer=x.layer,
                    direction=x.direction, has_lengths=x.has_lengths)
    if x.kind in ("seq", "dirseq") and letter == "t":
        return b.last_step(_Val(x.kind, x.ref, x.layout.replace("t", "T"), x.size, x.layer,
                                x.direction, has_lengths=x.has_lengths), where)
    if x.kind in ("seq", "dirseq") and letter == "0":
        return b.first_step(_Val(x.kind, x.ref, x.layout.replace("0", "T"), x.size, x.layer,
                                 x.direction, has_lengths=x.has_lengths), where)
    raise ConversionError(f"{where}: squeezing axis {letter} of {_describe(x)}")


def _onnx_reshape(b: _Builder, ins: list, a: dict, where: str) -> _Val:
    """Reshape of a GRU output (T, B, D, H) -> (T, B, D*H): the layer's sequence."""
    x, shape = ins
    if x.kind != "gru_y" or x.layout not in ("TBDH", "BTDH"):
        raise ConversionError(f"{where}: reshaping {_describe(x)} is not supported")
    D = len(b.recurrent[x.layer].kwargs["cells"])
    if shape.kind == "const":
        target = ints(shape.array)
        if len(target) != 3 or target[2] not in (-1, D * x.size) or \
                target[0] not in (0, -1) or target[1] not in (0, -1) or target[:2] == [-1, -1]:
            raise ConversionError(f"{where}: reshaping to {target}")
    elif shape.kind != "shape":
        raise ConversionError(f"{where}: reshaping to {_describe(shape)}")
    # A computed target (the dynamo exporter's Shape/Slice/Mul/Concat) is the same merge.
    return _Val("seq", (x.layer, 0), x.layout[:2] + "F", D * x.size, layer=x.layer,
                has_lengths=x.has_lengths)
