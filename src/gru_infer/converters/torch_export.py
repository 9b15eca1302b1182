"""Read ``torch.export.save`` archives (``.pt2``) without torch.

An archive (torch >= 2.6; this reader is checked against 2.13) is a zip whose
records sit under one root folder named after the file at save time::

    <root>/archive_format                         b"pt2"
    <root>/archive_version, .data/version, byteorder ("little"/"big"), ...
    <root>/models/<model>.json                    the ExportedProgram (JSON)
    <root>/data/weights/<model>_weights_config.json
    <root>/data/weights/weight_<i>                raw bytes of one storage
    <root>/data/constants/<model>_constants_config.json
    <root>/data/constants/tensor_<i>              raw bytes of a tensor constant
    <root>/data/sample_inputs/<model>.pt          torch.save of the example inputs

``<model>`` is ``model`` for ``torch.export.save(ep, f)``.  ``models/*.json``
is ``torch._export.serde.schema.ExportedProgram`` as JSON (schema 8.x):
``graph_module.graph`` has ``inputs``/``outputs`` (Arguments), ``nodes`` (each
a ``target`` such as ``"torch.ops.aten.gru.input"``, ``inputs`` as named
Arguments in schema order, ``outputs`` as Arguments, string ``metadata``),
``tensor_values`` (name -> TensorMeta: dtype code, sizes, strides, ...) and
``sym_int_values``; ``graph_module.signature.input_specs`` says which graph
inputs are parameters, buffers, tensor constants or user inputs, and
``output_specs`` which outputs are the user's.  An Argument is a one-key
union: ``{"as_tensor": {"name": ...}}``, ``{"as_int": 1}``,
``{"as_sym_ints": [{"as_int": 1}, {"as_name": "sym_size_int_1"}]}``, ...

A weights config maps each state-dict key to a PayloadMeta: ``path_name``
(the record), ``use_pickle``, ``tensor_meta`` (dtype, sizes, strides,
storage_offset).  Raw records hold a whole storage, shared by every tensor
that views it; a tensor is (offset, sizes, strides) into it.  torch pickles
(``torch.save``) only tensor subclasses; those records go through the
project's allow-listed unpickler (``_pickle.py``), never ``pickle.load``.

The reader parses JSON and copies bytes; it never evaluates anything from the
archive (symbolic sizes such as ``Symbol('s77', ...)`` are kept as strings),
never reads the sample-inputs pickle, and refuses ops it does not know by
name.  The result is a checked ``OpGraph`` (see ``_opgraph.py``).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConversionError, FormatError, GruInferError
from ..spec.graph import ModelSpec
from ..spec.layers import Embedding, compute_dtype
from ._graph_to_spec import (
    _BIG,
    _Builder,
    _describe,
    _relayout,
    _Val,
    map_graph,
)
from ._opgraph import Op, OpGraph, Ref, ValueInfo
from ._pickle import _DTYPE_BY_NAME, CheckpointError, MemoryBudget, TorchDType, strided_view

__all__ = ["SUPPORTED_OPS", "TorchGRULayer", "gru_layers", "is_torch_export_archive",
           "read_torch_export"]

# The ATen ops a GRU model's exported graph is made of ("torch.ops." dropped).
SUPPORTED_OPS = frozenset({
    "aten.gru.input",
    "aten.linear.default", "aten.addmm.default", "aten.matmul.default", "aten.t.default",
    "aten.relu.default", "aten.sigmoid.default", "aten.tanh.default",
    "aten.hardsigmoid.default", "aten.softmax.int", "aten._softmax.default",
    "aten.log_softmax.int", "aten._log_softmax.default",
    "aten.select.int", "aten.slice.Tensor", "aten.embedding.default",
    "aten.dropout.default", "aten.cat.default",
    "aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.div.Tensor",
    "aten.layer_norm.default", "aten.conv1d.default",
    "aten.permute.default", "aten.transpose.int", "aten.view.default",
    "aten.reshape.default", "aten.flatten.using_ints", "aten.contiguous.default",
    "aten.clone.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default",
    "aten.unsqueeze.default",
    # Initial states built in the graph (nn.GRU's zeros h0) and their shapes.
    "aten.zeros.default", "aten.sym_size.int",
})

# torch._export.serde.schema.ScalarType -> torch dtype name (as _pickle knows it).
_SCALAR_TYPES = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16",
    7: "float32", 8: "float64", 10: "complex64", 11: "complex128", 12: "bool",
    13: "bfloat16", 28: "uint16", 34: "uint32", 35: "uint64",
}
_UNSUPPORTED_SCALAR_TYPES = {0: "unknown", 9: "complex32", 29: "float8_e4m3fn",
                             30: "float8_e5m2", 31: "float8_e4m3fnuz",
                             32: "float8_e5m2fnuz", 33: "float8_e8m0fnu"}
_LAYOUTS = {0: "unknown", 1: "sparse_coo", 2: "sparse_csr", 3: "sparse_csc",
            4: "sparse_bsr", 5: "sparse_bsc", 6: "mkldnn", 7: "strided"}
_MEMORY_FORMATS = {0: "unknown", 1: "contiguous_format", 2: "channels_last",
                   3: "channels_last_3d", 4: "preserve_format"}
_STRIDED = 7

# Schema majors this reader understands (torch 2.6 wrote 8.x, as does 2.13).
_SCHEMA_MAJORS = {8}

_BUDGET_PER_FILE_BYTE = 4
_BUDGET_FLOOR = 64 * 2**20
_MAX_NODES = 100_000
_MAX_NDIM = 32
_RECORD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
_SYMBOL = re.compile(r"Symbol\('([A-Za-z_][A-Za-z0-9_]*)'(?:, [a-z_]+=(?:True|False))*\)")


def is_torch_export_archive(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a zip with a ``<root>/archive_format`` of ``pt2``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not names or "/" not in names[0]:
                return False
            record = names[0].split("/", 1)[0] + "/archive_format"
            return record in names and archive.getinfo(record).file_size <= 16 and \
                archive.read(record).strip() == b"pt2"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, KeyError):
        return False


def read_torch_export(path: str | os.PathLike[str], model_name: str | None = None) -> OpGraph:
    """Read a ``torch.export.save`` archive into a checked ``OpGraph``.

    ``model_name`` picks one program of an archive that holds several
    (``torch.export.save`` writes one, named ``model``).  Raises
    ``FormatError`` for a damaged or hostile archive,
    ``ConversionError`` for a readable program gru_infer cannot take
    (an unknown op, a custom object), ``CheckpointError``/
    ``UnsafeCheckpointError`` from the allow-listed unpickler; all are
    ``ValueError``s whose message starts with the path.  A missing file raises
    ``FileNotFoundError``.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        budget = MemoryBudget(_BUDGET_FLOOR + _BUDGET_PER_FILE_BYTE * size)
        try:
            return _Reader(file, budget).read(model_name)
        except GruInferError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
        except RecursionError as exc:
            raise FormatError(f"{path}: the archive's JSON is nested too deeply") from exc
        except Exception as exc:
            raise FormatError(
                f"{path}: could not read the archive ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------------------------------
# aten.gru.input
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchGRULayer:
    """One layer of an ``aten.gru.input`` op, in the canonical (ONNX) form.

    ``W`` (D, 3H, I), ``R`` (D, 3H, H), ``B`` (D, 6H) = [Wb | Rb] (None
    without biases), gates z, r, h (PyTorch packs r, z, n: reordered here);
    linear-before-reset, sigmoid and tanh, as nn.GRU always is.  ``sources``
    are the state-dict keys of the layer's tensors, forward then reverse.
    """

    index: int
    bidirectional: bool
    hidden_size: int
    input_size: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray | None
    parameter_values: tuple[str, ...]


def _rzn_to_zrn(array: np.ndarray) -> np.ndarray:
    r, z, n = np.split(array, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def gru_layers(op: Op, constants: dict[str, np.ndarray]) -> list[TorchGRULayer]:
    """Check an ``aten.gru.input`` op and return its layers in canonical form.

    The op's ``params`` are, per layer and direction (forward, then reverse),
    ``weight_ih`` (3H, I), ``weight_hh`` (3H, H)[, ``bias_ih`` (3H),
    ``bias_hh`` (3H)]; ``hx`` is (num_layers * D, B, H); ``batch_first`` says
    whether ``input`` is (B, T, I) or (T, B, I).  Outputs: the last layer's
    sequence (D*H features, fwd || bwd) and h_n (num_layers * D, B, H).
    """
    where = f"aten.gru.input node {op.name!r}"
    attrs = op.attrs
    for key, kind in (("has_biases", bool), ("num_layers", int), ("train", bool),
                      ("bidirectional", bool), ("batch_first", bool), ("params", list)):
        if not isinstance(attrs.get(key), kind) or (kind is int and isinstance(
                attrs.get(key), bool)):
            raise FormatError(f"{where}: argument {key!r} is missing or mistyped")
    if attrs["train"]:
        raise ConversionError(f"{where}: exported in training mode; export in eval mode")
    layers, D = attrs["num_layers"], 2 if attrs["bidirectional"] else 1
    per_direction = 4 if attrs["has_biases"] else 2
    params = attrs["params"]
    if layers < 1 or len(params) != layers * D * per_direction:
        raise FormatError(
            f"{where}: {len(params)} parameters for num_layers={layers}, D={D}, "
            f"has_biases={attrs['has_biases']}")
    if not all(isinstance(p, Ref) and p.name in constants for p in params):
        raise ConversionError(
            f"{where}: its weights are computed in the graph, not stored parameters")
    result = []
    input_size = None
    for layer in range(layers):
        W, R, B, names = [], [], [], []
        for d in range(D):
            chunk = params[(layer * D + d) * per_direction:(layer * D + d + 1) * per_direction]
            arrays = [constants[p.name] for p in chunk]
            names += [p.name for p in chunk]
            w_ih, w_hh = arrays[0], arrays[1]
            if w_hh.ndim != 2 or w_ih.ndim != 2 or w_hh.shape[0] != 3 * w_hh.shape[1] or \
                    w_ih.shape[0] != w_hh.shape[0] or w_hh.shape[1] < 1:
                raise FormatError(
                    f"{where}: layer {layer}: weight_ih {w_ih.shape} and weight_hh "
                    f"{w_hh.shape} are not (3H, I) and (3H, H)")
            H = w_hh.shape[1]
            expected_input = input_size if layer == 0 else D * result[-1].hidden_size
            if expected_input is not None and w_ih.shape[1] != expected_input:
                raise FormatError(
                    f"{where}: layer {layer} takes {w_ih.shape[1]} features, expected "
                    f"{expected_input}")
            if layer == 0:
                input_size = w_ih.shape[1]
            if W and (w_ih.shape != W[0].shape or w_hh.shape != R[0].shape):
                raise FormatError(f"{where}: layer {layer}: directions differ in shape")
            if any(a.dtype.kind != "f" for a in arrays):
                raise FormatError(f"{where}: layer {layer}: weights are not floating point")
            W.append(_rzn_to_zrn(w_ih))
            R.append(_rzn_to_zrn(w_hh))
            if per_direction == 4:
                if arrays[2].shape != (3 * H,) or arrays[3].shape != (3 * H,):
                    raise FormatError(f"{where}: layer {layer}: biases are not (3H,)")
                B.append(np.concatenate([_rzn_to_zrn(arrays[2]), _rzn_to_zrn(arrays[3])]))
        result.append(TorchGRULayer(layer, D == 2, R[0].shape[1], W[0].shape[1],
                                    np.stack(W), np.stack(R), np.stack(B) if B else None,
                                    tuple(names)))
    return result


# ---------------------------------------------------------------------------------------
# Small checked accessors for untrusted JSON
# ---------------------------------------------------------------------------------------

def _get(obj: Any, key: str, kind: type | tuple[type, ...], what: str,
         default: Any = ...) -> Any:
    if not isinstance(obj, dict):
        raise FormatError(f"{what}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        if default is not ...:
            return default
        raise FormatError(f"{what}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise FormatError(
            f"{what}: {key!r} should be {names}, got {type(value).__name__}")
    return value


def _union(obj: Any, what: str) -> tuple[str, Any]:
    """The (tag, value) of a one-key union object."""
    if not isinstance(obj, dict) or len(obj) != 1:
        raise FormatError(f"{what}: expected a one-key union object, got {_short(obj)}")
    ((tag, value),) = obj.items()
    if not isinstance(tag, str):
        raise FormatError(f"{what}: union tag is not a string")
    return tag, value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{what}: expected an int, got {_short(value)}")
    return value


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise FormatError(f"{what}: expected a name, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------

def _sym(value: Any, what: str) -> Any:
    """SymIntArgument / SymFloatArgument / SymBoolArgument: a Ref or a constant."""
    tag, inner = _union(value, what)
    if tag == "as_name":
        return Ref(_name(inner, what))
    if tag in ("as_int", "as_float", "as_bool"):
        return _scalar(tag, inner, what)
    raise FormatError(f"{what}: unknown symbolic argument {tag!r}")


def _scalar(tag: str, value: Any, what: str) -> Any:
    if tag == "as_int":
        return _int(value, what)
    if tag == "as_bool":
        if not isinstance(value, bool):
            raise FormatError(f"{what}: expected a bool, got {_short(value)}")
        return value
    if tag == "as_float":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FormatError(f"{what}: expected a float, got {_short(value)}")
        try:
            return float(value)  # the serializer writes inf/nan as strings
        except ValueError:
            raise FormatError(f"{what}: expected a float, got {_short(value)}") from None
    if tag == "as_string":
        if not isinstance(value, str):
            raise FormatError(f"{what}: expected a string, got {_short(value)}")
        return value
    raise AssertionError(tag)


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise FormatError(f"{what}: expected a list, got {_short(value)}")
    return value


def _tensor_ref(value: Any, what: str) -> Ref:
    return Ref(_name(_get(value, "name", str, what), what))


def _optional_tensor(value: Any, what: str) -> Ref | None:
    tag, inner = _union(value, what)
    if tag == "as_none":
        return None
    if tag == "as_tensor":
        return _tensor_ref(inner, what)
    raise FormatError(f"{what}: unknown optional tensor {tag!r}")


def _argument(value: Any, what: str) -> Any:
    """An Argument as plain data, tensors (and symbolic ints) as Refs."""
    tag, inner = _union(value, what)
    if tag == "as_none":
        return None
    if tag == "as_tensor":
        return _tensor_ref(inner, what)
    if tag == "as_tensors":
        return [_tensor_ref(v, what) for v in _list(inner, what)]
    if tag == "as_optional_tensor":
        return _optional_tensor(inner, what)
    if tag == "as_optional_tensors":
        return [_optional_tensor(v, what) for v in _list(inner, what)]
    if tag in ("as_int", "as_float", "as_bool", "as_string"):
        return _scalar(tag, inner, what)
    if tag in ("as_ints", "as_floats", "as_bools", "as_strings"):
        return [_scalar(tag[:-1], v, what) for v in _list(inner, what)]
    if tag in ("as_int_lists", "as_float_lists"):
        return [[_scalar(tag[:-6], v, what) for v in _list(row, what)]
                for row in _list(inner, what)]
    if tag in ("as_sym_int", "as_sym_float", "as_sym_bool"):
        return _sym(inner, what)
    if tag in ("as_sym_ints", "as_sym_floats", "as_sym_bools"):
        return [_sym(v, what) for v in _list(inner, what)]
    if tag == "as_scalar_type":
        return _dtype_name(inner, what)
    if tag == "as_layout":
        return _LAYOUTS.get(_int(inner, what), "unknown")
    if tag == "as_memory_format":
        return _MEMORY_FORMATS.get(_int(inner, what), "unknown")
    if tag == "as_device":
        kind = _get(inner, "type", str, what)
        index = _get(inner, "index", (int, type(None)), what, None)
        return kind if index is None else f"{kind}:{index}"
    if tag == "as_complex":
        return complex(_scalar("as_float", _get(inner, "real", (int, float), what), what),
                       _scalar("as_float", _get(inner, "imag", (int, float), what), what))
    if tag in ("as_graph", "as_custom_obj", "as_operator", "as_nested_tensors",
               "as_string_to_argument"):
        raise ConversionError(
            f"{what}: arguments of kind {tag!r} (subgraphs, custom objects, operators) are "
            "not supported")
    raise FormatError(f"{what}: unknown argument kind {tag!r}")


def _refs(value: Any) -> list[str]:
    """Names of the Refs inside a parsed argument, in order."""
    if isinstance(value, Ref):
        return [value.name]
    if isinstance(value, list):
        return [name for item in value for name in _refs(item)]
    return []


def _output_names(value: Any, what: str) -> list[str]:
    tag, inner = _union(value, what)
    if tag == "as_none":
        return [""]
    if tag == "as_tensor":
        return [_tensor_ref(inner, what).name]
    if tag == "as_tensors":
        return [_tensor_ref(v, what).name for v in _list(inner, what)]
    if tag == "as_optional_tensors":
        return [ref.name if ref else "" for ref in
                (_optional_tensor(v, what) for v in _list(inner, what))]
    if tag in ("as_sym_int", "as_sym_float", "as_sym_bool"):
        sym = _sym(inner, what)
        if not isinstance(sym, Ref):
            raise FormatError(f"{what}: a node output must be named")
        return [sym.name]
    raise ConversionError(f"{what}: node outputs of kind {tag!r} are not supported")


def _dtype_name(code: Any, what: str) -> str:
    code = _int(code, what)
    if code in _SCALAR_TYPES:
        return _SCALAR_TYPES[code]
    if code in _UNSUPPORTED_SCALAR_TYPES:
        raise ConversionError(
            f"{what}: tensors of type {_UNSUPPORTED_SCALAR_TYPES[code]} are not supported")
    raise FormatError(f"{what}: unknown scalar type code {code}")


def _numpy_dtype_name(torch_name: str) -> str:
    return np.dtype(_DTYPE_BY_NAME[torch_name].loaded).name


def _sym_size(value: Any, what: str) -> int | str:
    """A SymInt of tensor metadata: an int, or the symbol's name (never evaluated)."""
    tag, inner = _union(value, what)
    if tag == "as_int":
        return _int(inner, what)
    if tag == "as_expr":
        expr = _get(inner, "expr_str", str, what)
        match = _SYMBOL.fullmatch(expr)
        return match.group(1) if match else expr[:200]
    raise FormatError(f"{what}: unknown size kind {tag!r}")


def _tensor_meta(meta: Any, what: str) -> dict[str, Any]:
    sizes = [_sym_size(v, what) for v in _list(_get(meta, "sizes", list, what), what)]
    strides = [_sym_size(v, what) for v in _list(_get(meta, "strides", list, what), what)]
    if len(sizes) > _MAX_NDIM or len(sizes) != len(strides):
        raise FormatError(f"{what}: bad tensor rank ({len(sizes)} sizes, "
                               f"{len(strides)} strides)")
    return {
        "dtype": _dtype_name(_get(meta, "dtype", int, what), what),
        "sizes": tuple(sizes),
        "strides": tuple(strides),
        "storage_offset": _sym_size(_get(meta, "storage_offset", dict, what,
                                         {"as_int": 0}), what),
        "layout": _get(meta, "layout", int, what, _STRIDED),
    }


def _module_of(metadata: dict[str, Any]) -> tuple[str, str]:
    """(fqn, class) of the innermost module in ``nn_module_stack``
    ("key,fqn,class;key,fqn,class;..."), or ("", "")."""
    stack = metadata.get("nn_module_stack")
    if not isinstance(stack, str) or not stack:
        return "", ""
    parts = stack.split(";")[-1].split(",")
    # Nodes torch adds after tracing carry a placeholder stack.
    if len(parts) != 3 or parts[2].startswith("_empty_nn_module_stack"):
        return "", ""
    return parts[1], parts[2]


# ---------------------------------------------------------------------------------------
# The archive
# ---------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, file: Any, budget: MemoryBudget) -> None:
        self._file = file
        self._budget = budget
        self._raw_cache: dict[str, np.ndarray] = {}

    def read(self, model_name: str | None) -> OpGraph:
        head = self._file.read(4)
        self._file.seek(0)
        if head not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise FormatError("not a torch.export archive (not a zip file)")
        try:
            archive = zipfile.ZipFile(self._file)
        except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, ...
            raise FormatError(
                f"damaged or truncated zip archive ({type(exc).__name__}: {exc})") from None
        with archive:
            self._archive = archive
            self._records = set(archive.namelist())
            self._root = ""
            self._root = self._find_root(archive.namelist())
            self._byteorder = self._read_byteorder()
            model = self._pick_model(model_name)
            program = self._read_json(f"models/{model}.json")
            weights = self._payload_config(f"data/weights/{model}_weights_config.json",
                                           f"data/weights/{model}.pt", required=True)
            constants = self._payload_config(f"data/constants/{model}_constants_config.json",
                                             f"data/constants/{model}.pt", required=False)
            return self._program(program, model, weights, constants)

    # -- records ------------------------------------------------------------------------

    def _find_root(self, names: list[str]) -> str:
        if not names:
            raise FormatError("the zip archive is empty")
        if "/" not in names[0]:
            raise FormatError(f"zip record {names[0][:100]!r} is not inside a folder; "
                                   "not a torch.export archive")
        root = names[0].split("/", 1)[0] + "/"
        if f"{root}archive_format" not in self._records:
            if f"{root}data.pkl" in self._records:
                raise FormatError(
                    "this is a torch.save checkpoint, not a torch.export archive")
            if f"{root}constants.pkl" in self._records or any(
                    n.startswith(f"{root}code/") for n in names):
                raise FormatError(
                    "this is a TorchScript archive (torch.jit.save), not a torch.export "
                    "archive; export with torch.export.export and torch.export.save")
            if any(n.endswith("serialized_exported_program.json") for n in names):
                raise ConversionError(
                    "this archive was written by torch.export.save of torch < 2.6, whose "
                    "layout is not supported; load and re-save it with torch >= 2.6")
            raise FormatError("not a torch.export archive (no archive_format record)")
        fmt = self._read_bytes(f"{root}archive_format", limit=64, rooted=False).strip()
        if fmt != b"pt2":
            raise FormatError(f"archive_format is {fmt[:20]!r}, expected b'pt2'")
        return root

    def _read_bytes(self, name: str, limit: int | None = None, rooted: bool = True) -> bytes:
        full = self._root + name if rooted else name
        try:
            info = self._archive.getinfo(full)
        except KeyError:
            raise FormatError(f"the archive has no {full[:200]!r} record") from None
        if limit is not None and info.file_size > limit:
            raise FormatError(f"record {full!r} is {info.file_size} bytes, more than "
                                   f"the {limit} expected")
        self._budget.charge(info.file_size, f"zip record {full!r}")
        try:
            data = self._archive.read(info)
        except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, ...
            raise FormatError(
                f"zip record {full!r} is damaged or truncated ({type(exc).__name__}: "
                f"{exc})") from None
        if len(data) != info.file_size:
            raise FormatError(f"zip record {full!r} is truncated")
        return data

    def _read_json(self, name: str) -> Any:
        data = self._read_bytes(name)
        try:
            return json.loads(data.decode("utf-8"))
        except RecursionError:
            raise FormatError(f"{name}: JSON nested too deeply") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"{name} is not valid JSON ({exc})") from None

    def _read_byteorder(self) -> str:
        if f"{self._root}byteorder" not in self._records:
            return "little"
        value = self._read_bytes("byteorder", limit=16).strip()
        if value not in (b"little", b"big"):
            raise FormatError(f"unknown byte order {value!r}")
        return value.decode("ascii")

    def _pick_model(self, model_name: str | None) -> str:
        prefix = f"{self._root}models/"
        models = sorted(n[len(prefix):-len(".json")] for n in self._records
                        if n.startswith(prefix) and n.endswith(".json")
                        and "/" not in n[len(prefix):])
        if not models:
            if any(n.startswith(f"{self._root}data/aotinductor/") for n in self._records):
                raise ConversionError(
                    "the archive holds an AOTInductor-compiled model only, no exported "
                    "program; save the ExportedProgram with torch.export.save")
            raise FormatError("the archive holds no models/*.json program")
        if model_name is not None:
            if model_name not in models:
                raise ConversionError(
                    f"no program named {model_name!r} in the archive; it has {models}")
            return model_name
        if len(models) == 1:
            return models[0]
        if "model" in models:
            return "model"
        raise ConversionError(
            f"the archive holds several programs {models}; choose one with model_name=")

    def _payload_config(self, name: str, legacy: str, required: bool) -> dict[str, Any]:
        if f"{self._root}{name}" not in self._records:
            if f"{self._root}{legacy}" in self._records:
                raise ConversionError(
                    f"the archive stores its tensors in the legacy {legacy!r} form of torch "
                    "2.6/2.7; re-save it with a current torch.export.save")
            if required:
                raise FormatError(f"the archive has no {name!r} record")
            return {}
        config = _get(self._read_json(name), "config", dict, name)
        return config

    # -- tensors ------------------------------------------------------------------------

    def _payload_tensor(self, config: dict[str, Any], key: str, directory: str,
                        what: str) -> np.ndarray:
        meta = config.get(key)
        if meta is None:
            raise FormatError(f"{what} {key!r} has no entry in the {directory} config")
        where = f"{directory} config entry {key!r}"
        path_name = _get(meta, "path_name", str, where)
        if not _RECORD_NAME.fullmatch(path_name) or path_name in (".", ".."):
            raise FormatError(f"{where}: bad record name {path_name[:100]!r}")
        record = f"data/{directory}/{path_name}"
        if path_name.startswith(("custom_obj", "opaque_obj")):
            raise ConversionError(
                f"{what} {key!r} is a custom or opaque object ({path_name}); only tensors "
                "are supported")
        if _get(meta, "use_pickle", bool, where):
            return self._pickled_tensor(record, where)
        tensor_meta = _get(meta, "tensor_meta", dict, where)
        return self._raw_tensor(record, _tensor_meta(tensor_meta, where), where)

    def _pickled_tensor(self, record: str, where: str) -> np.ndarray:
        # torch pickles tensor subclasses with torch.save: the project's
        # allow-listed unpickler reads them (or refuses them) without torch.
        from .torch_file import _read as read_torch_save

        data = self._read_bytes(record)
        try:
            obj = read_torch_save(io.BytesIO(data), len(data), self._budget)
        except CheckpointError as exc:
            raise type(exc)(f"{where} ({record}): {exc}") from exc
        if not isinstance(obj, np.ndarray):
            raise ConversionError(
                f"{where}: the pickled record {record!r} holds {type(obj).__name__}, "
                "not a tensor")
        return obj

    def _raw_tensor(self, record: str, meta: dict[str, Any], where: str) -> np.ndarray:
        if meta["layout"] != _STRIDED:
            raise ConversionError(
                f"{where}: {_LAYOUTS.get(meta['layout'], 'unknown')} tensors are not "
                "supported")
        shape, strides, offset = meta["sizes"], meta["strides"], meta["storage_offset"]
        if not all(isinstance(v, int) for v in (*shape, *strides, offset)):
            raise FormatError(f"{where}: a stored tensor has a symbolic size or stride")
        if any(v < 0 for v in (*shape, *strides, offset)):
            raise FormatError(f"{where}: negative size, stride or offset")
        dtype: TorchDType = _DTYPE_BY_NAME[meta["dtype"]]
        raw = self._raw_cache.get(record)
        if raw is None:
            raw = np.frombuffer(self._read_bytes(record), dtype=np.uint8)
            self._raw_cache[record] = raw
        numel = math.prod(shape)
        self._budget.charge(numel * np.dtype(dtype.loaded).itemsize,
                            f"tensor of shape {shape}")
        if numel == 0:
            return np.zeros(shape, np.dtype(dtype.loaded))
        if raw.size % dtype.itemsize:
            raise FormatError(
                f"{where}: record {record!r} holds {raw.size} bytes, not a whole number of "
                f"{dtype.name} elements")
        order = "<" if self._byteorder == "little" else ">"
        elements = raw.view(np.dtype(order + dtype.stored))
        view = strided_view(elements, offset, shape, strides, lambda last: FormatError(
            f"{where}: the tensor (offset {offset}, sizes {shape}, strides {strides}) "
            f"needs element {last} of {record!r}, which holds only {elements.size} "
            f"{dtype.name} elements ({raw.size} bytes)"))
        return dtype.to_numpy(view)

    # -- the program --------------------------------------------------------------------

    def _program(self, program: Any, model: str, weights: dict[str, Any],
                 constants_config: dict[str, Any]) -> OpGraph:
        what = f"models/{model}.json"
        version = _get(program, "schema_version", dict, what)
        major = _int(_get(version, "major", int, what), what)
        minor = _int(_get(version, "minor", int, what), what)
        if major not in _SCHEMA_MAJORS:
            raise ConversionError(
                f"the program uses export schema {major}.{minor}; this reader knows "
                f"{sorted(_SCHEMA_MAJORS)}.x (torch 2.6 to 2.13)")
        module = _get(program, "graph_module", dict, what)
        graph = _get(module, "graph", dict, what)
        signature = _get(module, "signature", dict, what)

        values = self._values(graph, what)
        inputs, constants, sources = self._inputs(graph, signature, values, weights,
                                                  constants_config, what)
        ops = self._nodes(_get(graph, "nodes", list, what), values, what)
        outputs = self._outputs(graph, signature, what)

        metadata = {
            "model_name": model,
            "torch_version": program.get("torch_version")
            if isinstance(program.get("torch_version"), str) else None,
            "schema_version": (major, minor),
            "opset_version": {k: v for k, v in program.get("opset_version", {}).items()
                              if isinstance(k, str) and isinstance(v, int)}
            if isinstance(program.get("opset_version"), dict) else {},
            "range_constraints": self._ranges(program.get("range_constraints")),
            "forward_arg_names": self._forward_arg_names(module),
        }
        graph = OpGraph("torch.export", inputs, outputs, ops, constants, sources,
                        values, metadata).check()
        for op in graph.ops:
            if op.op == "aten.gru.input":
                gru_layers(op, graph.constants)
        return graph

    def _values(self, graph: dict[str, Any], what: str) -> dict[str, ValueInfo]:
        values: dict[str, ValueInfo] = {}
        for name, meta in _get(graph, "tensor_values", dict, what).items():
            where = f"{what}: tensor_values[{name[:100]!r}]"
            parsed = _tensor_meta(meta, where)
            values[name] = ValueInfo(name, _numpy_dtype_name(parsed["dtype"]), parsed["sizes"])
        for name in _get(graph, "sym_int_values", dict, what, {}):
            values[name] = ValueInfo(name, "int64", (), kind="symint")
        return values

    def _inputs(self, graph: dict[str, Any], signature: dict[str, Any],
                values: dict[str, ValueInfo], weights: dict[str, Any],
                constants_config: dict[str, Any], what: str
                ) -> tuple[list[ValueInfo], dict[str, np.ndarray], dict[str, str]]:
        user_inputs: list[ValueInfo] = []
        constants: dict[str, np.ndarray] = {}
        sources: dict[str, str] = {}
        specs = _get(signature, "input_specs", list, what)
        for index, spec in enumerate(specs):
            where = f"{what}: input_specs[{index}]"
            tag, body = _union(spec, where)
            if tag == "user_input":
                arg_tag, arg = _union(_get(body, "arg", dict, where), where)
                if arg_tag != "as_tensor":
                    raise ConversionError(
                        f"{where}: user input of kind {arg_tag!r}; only tensor inputs are "
                        "supported (export with tensors for every forward argument)")
                name = _tensor_ref(arg, where).name
                user_inputs.append(values.get(name, ValueInfo(name)))
                continue
            if tag in ("parameter", "buffer", "tensor_constant"):
                name = _tensor_ref(_get(body, "arg", dict, where), where).name
                key_field = {"parameter": "parameter_name", "buffer": "buffer_name",
                             "tensor_constant": "tensor_constant_name"}[tag]
                key = _name(_get(body, key_field, str, where), where)
                if tag == "parameter" or (tag == "buffer" and key in weights):
                    array = self._payload_tensor(weights, key, "weights", tag)
                else:
                    array = self._payload_tensor(constants_config, key, "constants", tag)
                declared = values.get(name)
                if declared is not None and declared.shape is not None and \
                        tuple(declared.shape) != array.shape:
                    raise FormatError(
                        f"{where}: {tag} {key!r} is stored with shape {array.shape} but the "
                        f"graph declares {declared.shape}")
                if name in constants:
                    raise FormatError(f"{where}: input {name!r} is listed twice")
                constants[name] = array
                sources[name] = key
                continue
            if tag in ("custom_obj", "token", "constant_input"):
                raise ConversionError(
                    f"{where}: graph inputs of kind {tag!r} (custom objects, effect tokens, "
                    "constant inputs) are not supported")
            raise FormatError(f"{where}: unknown input spec {tag!r}")

        declared_inputs = []
        for index, arg in enumerate(_get(graph, "inputs", list, what)):
            tag, body = _union(arg, f"{what}: graph.inputs[{index}]")
            if tag == "as_tensor":
                declared_inputs.append(_tensor_ref(body, what).name)
        expected = [v.name for v in user_inputs]
        listed = [n for n in declared_inputs if n not in constants]
        if listed != expected or len(declared_inputs) != len(specs):
            raise FormatError(
                f"{what}: the graph's inputs {declared_inputs[:20]} do not match its "
                "signature's input specs")
        return user_inputs, constants, sources

    def _nodes(self, nodes: list, values: dict[str, ValueInfo], what: str) -> list[Op]:
        if len(nodes) > _MAX_NODES:
            raise FormatError(f"{what}: {len(nodes)} nodes, more than {_MAX_NODES}")
        unknown: dict[str, str] = {}
        ops = []
        for index, node in enumerate(nodes):
            where = f"{what}: nodes[{index}]"
            target = _get(node, "target", str, where)
            name = node.get("name") if isinstance(node.get("name"), str) else f"node{index}"
            op_name = target.removeprefix("torch.ops.")
            if op_name not in SUPPORTED_OPS:
                unknown.setdefault(op_name[:200], name[:100])
                continue
            attrs: dict[str, Any] = {}
            refs: list[str] = []
            for arg_index, named in enumerate(_get(node, "inputs", list, where)):
                arg_where = f"{where} ({op_name}) argument {arg_index}"
                arg_name = _name(_get(named, "name", str, arg_where), arg_where)
                value = _argument(_get(named, "arg", dict, arg_where), arg_where)
                if arg_name in attrs:
                    raise FormatError(f"{arg_where}: argument {arg_name!r} given twice")
                attrs[arg_name] = value
                refs.extend(_refs(value))
            outputs = [n for out in _get(node, "outputs", list, where)
                       for n in _output_names(out, f"{where} ({op_name}) outputs")]
            metadata = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
            module, module_class = _module_of(metadata)
            ops.append(Op(op_name, name, tuple(refs), tuple(outputs), attrs, module,
                          module_class))
        if unknown:
            listed = ", ".join(f"{op} (node {node!r})" for op, node in unknown.items())
            raise ConversionError(
                f"the program uses ops gru_infer does not support: {listed}")
        return ops

    def _outputs(self, graph: dict[str, Any], signature: dict[str, Any], what: str
                 ) -> list[str]:
        outputs = []
        for index, spec in enumerate(_get(signature, "output_specs", list, what)):
            where = f"{what}: output_specs[{index}]"
            tag, body = _union(spec, where)
            if tag != "user_output":
                raise ConversionError(
                    f"{where}: the program has a {tag!r} output (it mutates state or "
                    "computes a loss or gradients); export the model in eval mode for "
                    "inference")
            arg_tag, arg = _union(_get(body, "arg", dict, where), where)
            if arg_tag != "as_tensor":
                raise ConversionError(
                    f"{where}: output of kind {arg_tag!r}; only tensor outputs are supported")
            outputs.append(_tensor_ref(arg, where).name)
        declared = [n for i, out in enumerate(_get(graph, "outputs", list, what))
                    for n in _output_names(out, f"{what}: graph.outputs[{i}]")]
        if declared != outputs:
            raise FormatError(
                f"{what}: the graph's outputs {declared[:20]} do not match its signature's "
                f"output specs {outputs[:20]}")
        return outputs

    @staticmethod
    def _ranges(ranges: Any) -> dict[str, tuple[int | None, int | None]]:
        out: dict[str, tuple[int | None, int | None]] = {}
        if isinstance(ranges, dict):
            for name, bounds in ranges.items():
                if isinstance(bounds, dict):
                    low, high = bounds.get("min_val"), bounds.get("max_val")
                    out[str(name)] = (low if isinstance(low, int) else None,
                                      high if isinstance(high, int) else None)
        return out

    @staticmethod
    def _forward_arg_names(module: dict[str, Any]) -> list[str] | None:
        calls = module.get("module_call_graph")
        if isinstance(calls, list):
            for entry in calls:
                if isinstance(entry, dict) and entry.get("fqn") == "" and isinstance(
                        entry.get("signature"), dict):
                    names = entry["signature"].get("forward_arg_names")
                    if isinstance(names, list) and all(isinstance(n, str) for n in names):
                        return names
        return None


def convert_torch_export(path: str | os.PathLike[str], model_name: str | None = None):
    """The ModelSpec of a ``torch.export.save`` archive (see _graph_to_spec)."""
    graph = read_torch_export(path, model_name)
    source = {"framework": "pytorch", "format": ".pt2 (torch.export)",
              "file": os.path.basename(os.fspath(path)),
              "version": graph.metadata.get("torch_version")}
    try:
        return torch_export_to_spec(graph, source)
    except GruInferError as exc:
        raise type(exc)(f"{os.fspath(path)}: {exc}") from exc


# -- mapping onto a ModelSpec (see _graph_to_spec for the approach) --------------------

def torch_export_to_spec(graph: OpGraph, source: dict) -> ModelSpec:
    """A ModelSpec from a torch.export OpGraph."""
    return map_graph(_build_torch_export, graph, source)


def _build_torch_export(b: _Builder, source: dict) -> ModelSpec:
    g = b.graph
    for info in g.inputs:
        b.add_input(info.name, info.dtype, info.shape)
    for op in g.ops:
        where = f"{op.op} node {op.name!r}"
        a = op.attrs

        def arg(key, default=None, a=a):
            return a.get(key, default)

        def value(key, kinds=("seq", "vec"), where=where, a=a):
            ref = a.get(key)
            if not isinstance(ref, Ref):
                raise ConversionError(f"{where}: argument {key!r} is not a tensor")
            return b.tensor(ref.name, where, kinds)

        kind = op.op
        base = op.module or op.name
        out = op.outputs[0] if op.outputs else ""
        if kind == "aten.sym_size.int":
            b.vals[out] = _Val("shape")
        elif kind == "aten.zeros.default":
            b.vals[out] = _Val("zeros")
        elif kind == "aten.gru.input":
            x = value("input", ("seq",))
            hx = b.val(arg("hx").name, where)
            if hx.kind == "seq" and hx.ref and hx.ref[0] in {i.name for i in b.inputs}:
                name = hx.ref[0]  # the model input is a stacked h0, not a sequence
                b.inputs = [i for i in b.inputs if i.name != name]
                hx = _Val("state_input", input_name=name)
            layers = gru_layers(op, g.constants)
            layout_in = "BTF" if arg("batch_first") else "TBF"
            states, offset = [], 0
            for layer in layers:
                D = 2 if layer.bidirectional else 1
                cells = [{"W": layer.W[d], "R": layer.R[d],
                          "B": None if layer.B is None else layer.B[d]} for d in range(D)]
                initial = hx
                if hx.kind == "state_input":
                    initial = _Val("state_input", input_name=hx.input_name,
                                   rows=tuple(range(offset, offset + D)))
                offset += D
                name = b.gru(f"{base}_l{layer.index}" if len(layers) > 1 else base, x, cells,
                             layout_in, initial, None, where)
                x = _Val("seq", (name, 0), layout_in, D * layer.hidden_size, layer=name)
                states += [(name, d) for d in range(D)]
            b.vals[op.outputs[0]] = x
            b.vals[op.outputs[1]] = _Val("states", layout="SBH", states=tuple(states))
        elif kind == "aten.select.int":
            x = value("self", ("seq", "vec", "states"))
            dim, index = arg("dim"), arg("index")
            axis = x.layout[dim] if -len(x.layout) <= dim < len(x.layout) else "?"
            if x.kind == "states" and axis == "S":
                b.vals[out] = b.pick_state(x, index, where)
            elif x.kind == "seq" and axis == "T" and index == -1:
                b.vals[out] = b.last_step(x, where)
            elif x.kind == "seq" and axis == "T" and index == 0:
                b.vals[out] = b.first_step(x, where)
            else:
                raise ConversionError(f"{where}: selecting index {index} of axis {axis} of "
                                      f"{_describe(x)} is not supported")
        elif kind == "aten.slice.Tensor":
            x = value("self", ("seq", "vec", "states"))
            start, end, step = arg("start", 0) or 0, arg("end", _BIG), arg("step", 1)
            if start != 0 or step != 1 or (end is not None and end < _BIG):
                raise ConversionError(f"{where}: slicing [{start}:{end}:{step}] is not "
                                      "supported (only whole axes)")
            b.vals[out] = x
        elif kind in ("aten.relu.default", "aten.sigmoid.default", "aten.tanh.default",
                      "aten.hardsigmoid.default"):
            names = {"aten.relu.default": "relu", "aten.sigmoid.default": "sigmoid",
                     "aten.tanh.default": "tanh", "aten.hardsigmoid.default":
                     "hard_sigmoid_keras3"}
            b.vals[out] = b.activation(value("self"), names[kind], op.module or names[kind],
                                       where)
        elif kind in ("aten.softmax.int", "aten._softmax.default", "aten.log_softmax.int",
                      "aten._log_softmax.default"):
            act = "log_softmax" if "log" in kind else "softmax"
            x = value("self")
            b.vals[out] = b.activation(x, act, op.module or act, where, axis=arg("dim"))
        elif kind == "aten.linear.default":
            weight = b.const(arg("weight").name, where)
            bias = arg("bias")
            bias = None if bias is None else b.const(bias.name, where)
            b.vals[out] = b.dense(value("input"), weight.T, bias, base, where)
        elif kind == "aten.embedding.default":
            tokens = value("indices", ("tokens",))
            table = b.const(arg("weight").name, where)
            name = b.add(Embedding, base, [tokens.ref],
                         table=np.asarray(table, compute_dtype(table.dtype)))
            b.vals[out] = _Val("seq", (name, 0), tokens.layout + "F", table.shape[1])
        elif kind in ("aten.dropout.default", "aten.contiguous.default", "aten.clone.default"):
            if kind == "aten.dropout.default" and arg("train"):
                raise ConversionError(f"{where}: dropout in training mode")
            b.vals[out] = b.val(op.inputs[0], where)
        elif kind == "aten.cat.default":
            values = [b.tensor(r.name, where) for r in arg("tensors")]
            b.vals[out] = b.concat(values, arg("dim", 0), op.module or "concatenate", where)
        elif kind in ("aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor",
                      "aten.div.Tensor"):
            other = arg("other")
            op_name = {"aten.add.Tensor": "add", "aten.sub.Tensor": "subtract",
                       "aten.mul.Tensor": "multiply", "aten.div.Tensor": "divide"}[kind]
            if arg("alpha", 1) != 1:
                raise ConversionError(f"{where}: alpha={arg('alpha')} is not supported")
            if isinstance(other, (int, float)) or (isinstance(other, Ref)
                                                   and other.name in g.constants):
                constant = np.asarray(other if not isinstance(other, Ref)
                                      else g.constants[other.name], np.float32)
                b.vals[out] = b.affine(value("self"), constant, op_name,
                                       op.module or op_name, where)
            elif isinstance(other, Ref) and op_name != "divide":
                b.vals[out] = b.merge([value("self"), b.tensor(other.name, where)], op_name,
                                      op.module or op_name, where)
            else:
                raise ConversionError(f"{where}: {op_name} by {other!r} is not supported")
        elif kind in ("aten.permute.default", "aten.transpose.int"):
            x = value("self", ("seq", "vec", "tokens"))
            n = len(x.layout)
            if kind == "aten.transpose.int":
                d0, d1 = arg("dim0") % n, arg("dim1") % n
                perm = list(range(n))
                perm[d0], perm[d1] = perm[d1], perm[d0]
            else:
                perm = [d % n for d in arg("dims")]
            b.vals[out] = _Val(x.kind, x.ref, _relayout(x.layout, perm, where), x.size,
                               layer=x.layer)
        elif kind in ("aten.flatten.using_ints", "aten.squeeze.dim", "aten.squeeze.dims",
                      "aten.unsqueeze.default", "aten.view.default", "aten.reshape.default"):
            x = value("self", ("seq", "vec"))
            info = g.values.get(out)
            before = g.values.get(op.inputs[0])
            if info is None or before is None or info.shape != before.shape:
                raise ConversionError(f"{where}: reshaping {_describe(x)} is not supported")
            b.vals[out] = x
        elif kind == "aten.layer_norm.default":
            x = value("input")
            if list(arg("normalized_shape")) != [x.size]:
                raise ConversionError(f"{where}: normalising over {arg('normalized_shape')}; "
                                      "gru_infer normalises over the features")
            gamma, beta = arg("weight"), arg("bias")
            b.vals[out] = b.layer_norm(
                x, None if gamma is None else b.const(gamma.name, where),
                None if beta is None else b.const(beta.name, where), arg("eps", 1e-5),
                base, where)
        elif kind == "aten.conv1d.default":
            bias = arg("bias")
            padding = arg("padding", [0])
            padding = (padding[0], padding[0])
            b.vals[out] = b.conv1d(value("input"), b.const(arg("weight").name, where),
                                   None if bias is None else b.const(bias.name, where),
                                   arg("stride", [1])[0], padding, arg("dilation", [1])[0],
                                   arg("groups", 1), base, where)
        else:
            raise ConversionError(f"{where}: {kind} is not supported by the mapping")
    return b.finish(list(g.outputs), source)
