"""Layer specs: what each layer of a model is, as plain data.

One frozen dataclass per layer kind.  Fields marked tensor() are weights
(NumPy arrays, stored in the weight file under "<layer>/<field>"); every other
field is JSON-able config.  config(), tensors() and from_config() come from
the fields, so a kind is declared once.  Nothing here runs a model: the
runtime compiles specs into ops (runtime/ops.py), and reference.py holds the
NumPy ground truth.

Shapes are per row (the batch axis left out): (time, features) for
sequences, (features,) for vectors, (time,) for token ids; None where any size
goes (time, usually).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

import numpy as np

from . import activations

Shape = tuple  # per-row shape: ints or None


def compute_dtype(dtype) -> np.dtype:
    """The dtype a layer computes in: float64 stays float64, every other float
    (float16, bfloat16 widened, float32) computes in float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def tensor(optional: bool = False):
    """A weight field: an array stored in the weight file."""
    return field(default=None, metadata={"tensor": True}) if optional else \
        field(metadata={"tensor": True})


def as_weight(value, where: str, ndim: int) -> np.ndarray:
    """A float weight array of ndim dimensions, in its compute dtype, read-only."""
    array = np.asarray(value)
    if array.dtype.kind != "f" or array.ndim != ndim or 0 in array.shape:
        raise ValueError(f"{where} must be a non-empty {ndim}-D float array, "
                         f"got {array.dtype} {array.shape}")
    array = np.ascontiguousarray(array, compute_dtype(array.dtype))
    array.flags.writeable = False
    return array


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value):
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


def _fits(value, hint) -> bool:
    """Whether a JSON value fits a config field's type hint."""
    origin = typing.get_origin(hint)
    if origin is Union:
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is tuple or origin is tuple:
        return isinstance(value, (list, tuple))
    return True


def same_shape(shapes: list, where: str) -> Shape:
    """The common shape of several inputs (None matches any size)."""
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first) or any(a is not None and b is not None and a != b
                                           for a, b in zip(first, other)):
            raise ValueError(f"{where}: inputs of different shapes {[tuple(s) for s in shapes]}")
    return tuple(next((s[i] for s in shapes if s[i] is not None), None)
                 for i in range(len(first)))


@dataclass(frozen=True, eq=False)
class Layer:
    """Base of every layer spec: a named node kind with config and tensors."""

    name: str
    kind: ClassVar[str] = ""
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int] = 1
    # What a layer does with its inputs' Keras masks: "pass" (the first input's
    # mask flows on), "merge" (the masks of all inputs, combined), "none"
    # (the output has no mask); Masking and Embedding make one, and a GRU
    # decides per output.
    mask_rule: ClassVar[str] = "pass"
    # Whether a stream can run the layer one timestep at a time with the same
    # result as on the whole sequence (None) or why not (a reason).
    step_refusal: ClassVar[Optional[str]] = None

    @property
    def output_count(self) -> int:
        return 1

    def refuses_step(self, shapes: list) -> Optional[str]:
        """Why a stream cannot run this layer on inputs of these per-row
        shapes, or None."""
        return self.step_refusal

    @classmethod
    def _fields(cls):
        return [f for f in dataclasses.fields(cls) if f.name != "name"]

    def config(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in self._fields()
                if not f.metadata.get("tensor")}

    def tensors(self) -> dict:
        return {f.name: getattr(self, f.name) for f in self._fields()
                if f.metadata.get("tensor") and getattr(self, f.name) is not None}

    @classmethod
    def tensor_names(cls, config: dict) -> tuple:
        """(required, optional) tensor names for a stored config."""
        fields = [f for f in cls._fields() if f.metadata.get("tensor")]
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        return required, {f.name for f in fields} - required

    @classmethod
    def from_config(cls, name: str, config: dict, tensors: dict) -> "Layer":
        """The layer from a stored config and its tensors; unknown keys and
        values of the wrong type are refused (a stored config is untrusted)."""
        unknown = set(tensors) - {f.name for f in cls._fields() if f.metadata.get("tensor")}
        if unknown:
            raise ValueError(f"{cls.kind} layer {name!r}: unknown tensors {sorted(unknown)}")
        return cls(name=name, **cls._checked_config(name, config), **tensors)

    @classmethod
    def _checked_config(cls, name: str, config: dict) -> dict:
        """config's values, each checked against its field's type."""
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in cls._fields() if not f.metadata.get("tensor")}
        values = {}
        for key, value in config.items():
            if key not in fields:
                raise ValueError(f"{cls.kind} layer {name!r}: unknown config key {key!r}")
            if not _fits(value, hints[key]):
                raise ValueError(f"{cls.kind} layer {name!r}: {key} = {value!r} does not fit "
                                 f"{hints[key]}")
            values[key] = _from_json(value)
        return values

    @property
    def dtype(self) -> Optional[np.dtype]:
        """The compute dtype of the layer's weights, or None without weights."""
        weights = list(self.tensors().values())
        return weights[0].dtype if weights else None

    def output_shapes(self, shapes: list) -> list:
        """Per-row output shapes for per-row input shapes; ValueError if they don't fit."""
        return [shapes[0]]

    def _where(self) -> str:
        return f"{self.kind} layer {self.name!r}"


# -- recurrent ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GRUCell:
    """One direction of a GRU in the canonical (ONNX) form: W (3H, I),
    R (3H, H), B (6H,) = [Wb | Rb] or None, gate blocks z, r, h."""

    W: np.ndarray
    R: np.ndarray
    B: Optional[np.ndarray] = None
    linear_before_reset: bool = True
    activations: tuple = ("sigmoid", "tanh")  # (gate, candidate), table names

    def __post_init__(self):
        W = as_weight(self.W[0] if np.ndim(self.W) == 3 else self.W, "GRU W", 2)
        if W.shape[0] % 3:
            raise ValueError(f"GRU W must have 3*hidden_size rows, got shape {W.shape}")
        H = W.shape[0] // 3
        R = as_weight(self.R[0] if np.ndim(self.R) == 3 else self.R, "GRU R", 2)
        if R.shape != (3 * H, H):
            raise ValueError(f"GRU R must have shape {(3 * H, H)} for W {W.shape}, got {R.shape}")
        B = self.B
        if B is not None:
            B = as_weight(np.reshape(B, -1), "GRU B", 1)
            if B.shape != (6 * H,):
                raise ValueError(f"GRU B must have shape {(6 * H,)} = [Wb | Rb], got {B.shape}")
        acts = tuple(self.activations)
        if len(acts) != 2:
            raise ValueError(f"GRU activations must be (gate, candidate), got {acts}")
        acts = tuple(activations.check(a, "GRU", gate=True) for a in acts)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "B", B)
        object.__setattr__(self, "activations", acts)
        object.__setattr__(self, "linear_before_reset", bool(self.linear_before_reset))

    @property
    def hidden_size(self) -> int:
        return self.R.shape[1]

    @property
    def input_size(self) -> int:
        return self.W.shape[1]

    def options(self) -> tuple:
        """What must agree for two directions to run in one core call."""
        return (self.linear_before_reset, self.activations, self.B is None, self.W.shape,
                self.W.dtype)


MERGE_MODES = ("concat", "sum", "mul", "ave", None)


@dataclass(frozen=True, eq=False)
class Recurrent(Layer):
    """A GRU: one direction, or two (Keras Bidirectional, PyTorch
    bidirectional=True; the second runs backwards) merged by merge_mode.

    Outputs: the sequence (return_sequences) or the output of the last
    processed step of each direction (Keras; the state at each row's last
    valid step with PyTorch lengths); two outputs when a Bidirectional has
    merge_mode None; then, with return_state, each direction's final state.
    go_backwards (one direction, Keras): run backwards and return the
    sequence in processing order.  zero_masked_outputs: masked steps output 0
    instead of repeating the previous output (Keras, inside Bidirectional).
    """

    kind: ClassVar[str] = "gru"
    cells: tuple = ()
    return_sequences: bool = True
    go_backwards: bool = False
    merge_mode: Optional[str] = "concat"
    zero_masked_outputs: bool = False
    return_state: bool = False

    def __post_init__(self):
        cells = tuple(c if isinstance(c, GRUCell) else GRUCell(**c) for c in self.cells)
        if not 1 <= len(cells) <= 2:
            raise ValueError(f"GRU {self.name!r}: one or two directions, got {len(cells)}")
        if self.merge_mode not in MERGE_MODES:
            raise ValueError(f"GRU {self.name!r}: merge_mode must be one of {MERGE_MODES}, "
                             f"got {self.merge_mode!r}")
        if self.go_backwards and len(cells) != 1:
            raise ValueError(f"GRU {self.name!r}: go_backwards applies to one direction")
        if len(cells) == 2:
            a, b = cells
            if a.input_size != b.input_size:
                raise ValueError(f"GRU {self.name!r}: both directions must take the same "
                                 f"input size, got {a.input_size} and {b.input_size}")
            if self.merge_mode != "concat" and a.hidden_size != b.hidden_size:
                raise ValueError(f"GRU {self.name!r}: merge_mode {self.merge_mode!r} needs "
                                 "directions of the same size")
        object.__setattr__(self, "cells", cells)
        if len(cells) == 1:
            object.__setattr__(self, "merge_mode", "concat")

    @property
    def output_count(self) -> int:
        split = len(self.cells) == 2 and self.merge_mode is None
        return (2 if split else 1) + (len(self.cells) if self.return_state else 0)

    @property
    def state_outputs(self) -> int:
        """Index of the first state output (return_state)."""
        return self.output_count - (len(self.cells) if self.return_state else 0)

    @property
    def hidden_sizes(self) -> list:
        return [c.hidden_size for c in self.cells]

    @property
    def input_size(self) -> int:
        return self.cells[0].input_size

    @property
    def directions(self) -> int:
        return len(self.cells)

    @property
    def runs_backwards(self) -> bool:
        return len(self.cells) == 2 or self.go_backwards

    @property
    def step_refusal(self) -> Optional[str]:  # type: ignore[override]
        if self.runs_backwards:
            kind = "bidirectional" if len(self.cells) == 2 else "go_backwards"
            return f"it runs backwards in time ({kind}), so it needs the whole sequence"
        return None

    @property
    def dtype(self) -> np.dtype:
        return self.cells[0].W.dtype

    @property
    def output_size(self) -> int:
        if len(self.cells) == 2 and self.merge_mode == "concat":
            return sum(self.hidden_sizes)
        return self.hidden_sizes[0]

    def config(self) -> dict:
        return {
            "cells": [{"linear_before_reset": c.linear_before_reset,
                       "activations": list(c.activations), "use_bias": c.B is not None}
                      for c in self.cells],
            "return_sequences": self.return_sequences,
            "go_backwards": self.go_backwards,
            "merge_mode": self.merge_mode,
            "zero_masked_outputs": self.zero_masked_outputs,
            "return_state": self.return_state,
        }

    def tensors(self) -> dict:
        out = {}
        for i, cell in enumerate(self.cells):
            out[f"cell{i}.W"], out[f"cell{i}.R"] = cell.W, cell.R
            if cell.B is not None:
                out[f"cell{i}.B"] = cell.B
        return out

    @classmethod
    def tensor_names(cls, config):
        required, optional = set(), set()
        for i, cell in enumerate(config["cells"]):
            required |= {f"cell{i}.W", f"cell{i}.R"}
            (required if cell.get("use_bias", True) else optional).add(f"cell{i}.B")
        return required, optional

    @classmethod
    def from_config(cls, name, config, tensors):
        config = dict(config)
        if not isinstance(config.get("cells"), list) or not all(
                isinstance(c, dict) for c in config["cells"]):
            raise ValueError(f"GRU {name!r}: cells must be a list of objects")
        cells = []
        for i, cell_config in enumerate(config.pop("cells")):
            cell_config = dict(cell_config)
            use_bias = cell_config.pop("use_bias", True)
            hard_sigmoid = cell_config.pop("hard_sigmoid", "keras3")  # format version 1
            acts = [activations.resolve(a, hard_sigmoid)
                    for a in cell_config.pop("activations", ("sigmoid", "tanh"))]
            W, R = tensors.get(f"cell{i}.W"), tensors.get(f"cell{i}.R")
            B = tensors.get(f"cell{i}.B")
            if W is None or R is None or (use_bias and B is None):
                raise ValueError(f"GRU {name!r}: tensors of direction {i} are missing")
            cells.append(GRUCell(W, R, B if use_bias else None, activations=tuple(acts),
                                 **cell_config))
        return cls(name, tuple(cells), **cls._checked_config(name, config))

    def output_shapes(self, shapes):
        shape = shapes[0]
        if len(shape) != 2 or shape[1] not in (None, self.input_size):
            raise ValueError(f"{self._where()} takes (time, {self.input_size}) per row, "
                             f"got {shape}")
        H0 = self.hidden_sizes[0]
        time = (shape[0],) if self.return_sequences else ()
        if len(self.cells) == 2 and self.merge_mode is None:
            outs = [time + (H0,), time + (self.hidden_sizes[1],)]
        else:
            outs = [time + (self.output_size,)]
        if self.return_state:
            outs += [(h,) for h in self.hidden_sizes]
        return outs


# -- per-step layers -----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dense(Layer):
    """y = activation(x @ kernel + bias) over the last axis; kernel (in, out).
    Also Keras TimeDistributed(Dense) and PyTorch nn.Linear (weight = kernel.T)."""

    kind: ClassVar[str] = "dense"
    kernel: np.ndarray = tensor()
    bias: Optional[np.ndarray] = tensor(optional=True)
    activation: str = "linear"

    def __post_init__(self):
        kernel = as_weight(self.kernel, f"Dense {self.name!r} kernel", 2)
        object.__setattr__(self, "kernel", kernel)
        if self.bias is not None:
            bias = as_weight(np.reshape(self.bias, -1), f"Dense {self.name!r} bias", 1)
            if bias.shape != (kernel.shape[1],):
                raise ValueError(f"Dense {self.name!r} bias must have shape "
                                 f"({kernel.shape[1]},), got {bias.shape}")
            object.__setattr__(self, "bias", bias.astype(kernel.dtype, copy=False))
        object.__setattr__(self, "activation",
                           activations.check(self.activation, f"Dense {self.name!r}"))

    @property
    def units(self) -> int:
        return self.kernel.shape[1]

    @property
    def input_size(self) -> int:
        return self.kernel.shape[0]

    def output_shapes(self, shapes):
        shape = shapes[0]
        if not shape or shape[-1] not in (None, self.input_size):
            raise ValueError(f"{self._where()} takes {self.input_size} features on the last "
                             f"axis, got per-row shape {shape}")
        return [tuple(shape[:-1]) + (self.units,)]


@dataclass(frozen=True, eq=False)
class Activation(Layer):
    kind: ClassVar[str] = "activation"
    activation: str = "linear"

    def __post_init__(self):
        object.__setattr__(self, "activation",
                           activations.check(self.activation, f"Activation {self.name!r}"))


@dataclass(frozen=True, eq=False)
class Identity(Layer):
    """Dropout, SpatialDropout1D, GaussianNoise...: identity at inference."""

    kind: ClassVar[str] = "identity"
    original_class: str = "Dropout"


@dataclass(frozen=True, eq=False)
class Masking(Layer):
    """Keras Masking: a step whose features all equal mask_value is masked,
    and its features are zeroed."""

    kind: ClassVar[str] = "masking"
    mask_value: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "mask_value", float(self.mask_value))


@dataclass(frozen=True, eq=False)
class NotEqual(Layer):
    """A boolean tensor: input != value (Keras 3 writes the mask of
    Embedding(mask_zero=True) in functional models as this op)."""

    kind: ClassVar[str] = "not_equal"
    mask_rule: ClassVar[str] = "none"
    value: float = 0


@dataclass(frozen=True, eq=False)
class ReduceAny(Layer):
    """any(input, axis) (Keras 3 writes the mask of Masking in functional
    models as NotEqual, then Any over the features)."""

    kind: ClassVar[str] = "any"
    mask_rule: ClassVar[str] = "none"
    axis: int = -1
    keepdims: bool = False

    def output_shapes(self, shapes):
        shape = list(shapes[0])
        if not -len(shape) <= self.axis < len(shape):
            raise ValueError(f"{self._where()}: axis {self.axis} out of range for {tuple(shape)}")
        axis = self.axis % len(shape)
        if self.keepdims:
            shape[axis] = 1
        else:
            del shape[axis]
        return [tuple(shape)]


@dataclass(frozen=True, eq=False)
class Embedding(Layer):
    """Token ids (time,) -> vectors (time, dim); mask_zero masks id 0."""

    kind: ClassVar[str] = "embedding"
    table: np.ndarray = tensor()
    mask_zero: bool = False

    def __post_init__(self):
        object.__setattr__(self, "table", as_weight(self.table, f"Embedding {self.name!r} table", 2))
        object.__setattr__(self, "mask_zero", bool(self.mask_zero))

    def config(self) -> dict:
        return {"mask_zero": self.mask_zero}

    def output_shapes(self, shapes):
        return [tuple(shapes[0]) + (self.table.shape[1],)]


# -- merges --------------------------------------------------------------------

MERGE_OPS = ("add", "subtract", "multiply", "average", "maximum", "minimum")
# How merges treat Keras masks.  "keras2": the output mask is the and of the
# inputs' masks (unmasked inputs left out), values are the plain op.
# "keras3": the or of the masks, no mask as soon as one input has none, and
# Multiply / Maximum / Minimum substitute masked inputs (tests/fixtures/keras_graph/README.md).
MASK_SEMANTICS = ("keras2", "keras3")


@dataclass(frozen=True, eq=False)
class Merge(Layer):
    """Keras Add, Subtract, Multiply, Average, Maximum, Minimum: element-wise
    over inputs of one shape."""

    kind: ClassVar[str] = "merge"
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int] = 64
    mask_rule: ClassVar[str] = "merge"
    op: str = "add"
    mask_semantics: str = "keras2"

    def __post_init__(self):
        if self.op not in MERGE_OPS:
            raise ValueError(f"merge layer {self.name!r}: op must be one of {MERGE_OPS}, "
                             f"got {self.op!r}")
        if self.mask_semantics not in MASK_SEMANTICS:
            raise ValueError(f"merge layer {self.name!r}: mask_semantics must be one of "
                             f"{MASK_SEMANTICS}, got {self.mask_semantics!r}")

    def output_shapes(self, shapes):
        if self.op == "subtract" and len(shapes) != 2:
            raise ValueError(f"{self._where()}: subtract takes exactly 2 inputs, got {len(shapes)}")
        return [same_shape(shapes, self._where())]


@dataclass(frozen=True, eq=False)
class Concatenate(Layer):
    """Inputs joined along axis (per-row axis: -1 features, 0 time)."""

    kind: ClassVar[str] = "concatenate"
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int] = 64
    mask_rule: ClassVar[str] = "merge"
    axis: int = -1
    mask_semantics: str = "keras2"

    def refuses_step(self, shapes):
        rank = len(shapes[0])
        if rank >= 2 and self.axis % rank == 0:
            return "it joins sequences in time, so it needs them whole"
        return None

    def output_shapes(self, shapes):
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes) or not -rank <= self.axis < rank:
            raise ValueError(f"{self._where()}: cannot join per-row shapes "
                             f"{[tuple(s) for s in shapes]} on axis {self.axis}")
        axis = self.axis % rank
        rest = same_shape([tuple(s[:axis]) + tuple(s[axis + 1:]) for s in shapes], self._where())
        sizes = [s[axis] for s in shapes]
        joined = None if None in sizes else sum(sizes)
        return [tuple(rest[:axis]) + (joined,) + tuple(rest[axis:])]


@dataclass(frozen=True, eq=False)
class ExpandDims(Layer):
    """A new axis of size 1 (Keras 3 writes masks through merges with it)."""

    kind: ClassVar[str] = "expand_dims"
    mask_rule: ClassVar[str] = "none"
    axis: int = -1

    def output_shapes(self, shapes):
        shape = list(shapes[0])
        if not -len(shape) - 1 <= self.axis <= len(shape):
            raise ValueError(f"{self._where()}: axis {self.axis} out of range for {tuple(shape)}")
        shape.insert(self.axis % (len(shape) + 1), 1)
        return [tuple(shape)]


@dataclass(frozen=True, eq=False)
class FillLike(Layer):
    """A constant tensor of its input's shape (Keras 3 ZerosLike / OnesLike)."""

    kind: ClassVar[str] = "fill_like"
    mask_rule: ClassVar[str] = "none"
    value: float = 0.0
    dtype_name: str = "bool"

    def __post_init__(self):
        if np.dtype(self.dtype_name).kind not in "biuf":
            raise ValueError(f"{self._where()}: dtype {self.dtype_name!r} is not supported")


LOGICAL_OPS = ("and", "or")


@dataclass(frozen=True, eq=False)
class Logical(Layer):
    """Element-wise logical and / or of boolean tensors, broadcast (Keras 3
    LogicalAnd / LogicalOr mask nodes)."""

    kind: ClassVar[str] = "logical"
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int] = 2
    mask_rule: ClassVar[str] = "none"
    op: str = "or"

    def __post_init__(self):
        if self.op not in LOGICAL_OPS:
            raise ValueError(f"{self._where()}: op must be one of {LOGICAL_OPS}, got {self.op!r}")

    def output_shapes(self, shapes):
        a, b = shapes
        if len(a) != len(b):
            raise ValueError(f"{self._where()}: cannot broadcast {a} and {b}")
        out = []
        for x, y in zip(a, b):
            if x == 1 or y == 1:
                out.append(y if x == 1 else x)
            elif x is None or y is None or x == y:
                out.append(x if x is not None else y)
            else:
                raise ValueError(f"{self._where()}: cannot broadcast {a} and {b}")
        return [tuple(out)]


CORE_LAYERS = (Recurrent, Dense, Activation, Identity, Masking, NotEqual, ReduceAny, Embedding,
               Merge, Concatenate, ExpandDims, FillLike, Logical)
