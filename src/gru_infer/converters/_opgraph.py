"""A neutral, checked list of ops read from a graph file (torch.export, ONNX).

The graph readers (``torch_export.py``, ``onnx.py``) turn a file into an
``OpGraph``: the user inputs, the ops in topological order, the outputs, and
every constant tensor (parameters, buffers, initializers) as a NumPy array.
Nothing in it is executable: op names are strings, arguments are plain data,
and a tensor argument is a ``Ref`` to a value by name.  Mapping an OpGraph
onto gru_infer's model description is a separate step; this layer only
promises that what it hands on is well formed:

* every value an op reads is a user input, a constant, or the output of an
  earlier op; no value is defined twice; every graph output is defined;
* every op is one the reader knows (anything else was refused by name);
* constants are NumPy arrays whose shapes agree with the file's metadata.

Values are named as in the file (torch.export node names such as ``getitem``
or ``p_gru_weight_ih_l0``; ONNX value names).  ``constant_sources`` says where
a constant came from (a state-dict key such as ``gru.weight_ih_l0``, an ONNX
initializer name), so a mapper can compare with a state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConversionError, FormatError

__all__ = [
    "GraphConversionError",
    "GraphFormatError",
    "Op",
    "OpGraph",
    "Ref",
    "ValueInfo",
]


# The readers raise the project's errors; these names are kept for callers that
# imported them before gru_infer.errors existed.
GraphFormatError = FormatError
GraphConversionError = ConversionError


@dataclass(frozen=True)
class Ref:
    """A reference, inside an op's attributes, to a value of the graph."""

    name: str

    def __repr__(self) -> str:
        return f"Ref({self.name!r})"


@dataclass(frozen=True)
class ValueInfo:
    """What the file says about one value.

    ``dtype`` is a NumPy dtype name (``"float32"``, ``"int64"``) or None when
    unknown; ``shape`` a tuple whose entries are ints, or strings for symbolic
    sizes (``"s77"`` from torch.export, ``"batch"`` from ONNX; ``"?"`` for an
    unnamed unknown one), or None when even the rank is unknown.  ``kind`` is
    ``"tensor"``, or ``"symint"`` for torch.export's symbolic integers
    (``aten.sym_size.int``).
    """

    name: str
    dtype: str | None = None
    shape: tuple[int | str, ...] | None = None
    kind: str = "tensor"


@dataclass(frozen=True)
class Op:
    """One operation.

    ``op`` is the source's own name: ``"aten.gru.input"`` (torch.export,
    ``torch.ops.`` dropped) or ``"GRU"`` (ONNX op_type, default domain).
    ``inputs`` are the values read, in argument order (for torch.export, the
    tensors and symbolic ints among the arguments, flattened; for ONNX the
    node's inputs, ``""`` for an omitted optional one).  ``outputs`` the values
    written (``""`` for an output the file leaves unnamed).  ``attrs`` holds
    every other argument by name: for torch.export *all* arguments by their
    schema names, tensors as ``Ref``s (``attrs["params"]`` of aten.gru.input is
    a list of Refs); for ONNX the node attributes (ints, floats, strings,
    lists of them, tensors as NumPy arrays).  ``module``/``module_class`` say,
    for torch.export, which ``nn.Module`` the op was traced in (e.g. ``"gru"``,
    ``"torch.nn.modules.rnn.GRU"``; names only, never imported), ``""`` when
    unknown.
    """

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    module: str = ""
    module_class: str = ""


@dataclass
class OpGraph:
    """A whole graph; see the module docstring for what ``check`` promises."""

    source: str                                   # "torch.export" or "onnx"
    inputs: list[ValueInfo]                       # user inputs, in call order
    outputs: list[str]                            # user outputs, in order
    ops: list[Op]
    constants: dict[str, np.ndarray]              # value name -> array
    constant_sources: dict[str, str]              # value name -> name in the file
    values: dict[str, ValueInfo] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def check(self) -> OpGraph:
        """Raise FormatError unless the graph is well formed; return self."""
        defined: set[str] = set()

        def define(name: str, what: str) -> None:
            if not isinstance(name, str) or not name:
                raise FormatError(f"{what} has no name")
            if name in defined:
                raise FormatError(f"value {name!r} is defined twice ({what})")
            defined.add(name)

        for info in self.inputs:
            define(info.name, "a graph input")
        for name, array in self.constants.items():
            define(name, "a constant")
            if not isinstance(array, np.ndarray):
                raise FormatError(f"constant {name!r} is not an array")
        for op in self.ops:
            for name in op.inputs:
                if name and name not in defined:
                    raise FormatError(
                        f"op {op.name!r} ({op.op}) reads {name!r}, which no earlier op, "
                        "input or constant defines (the graph is not in topological "
                        "order, or is damaged)")
            for name in op.outputs:
                if name:
                    define(name, f"an output of op {op.name!r} ({op.op})")
        for name in self.outputs:
            if name not in defined:
                raise FormatError(f"graph output {name!r} is never defined")
        return self

    # -- navigation, for mappers and tests ---------------------------------------------

    def producer(self, name: str) -> Op | None:
        """The op that writes ``name`` (None for inputs and constants)."""
        for op in self.ops:
            if name in op.outputs:
                return op
        return None

    def consumers(self, name: str) -> list[Op]:
        """The ops that read ``name``, in order."""
        return [op for op in self.ops if name in op.inputs]

    def op_names(self) -> list[str]:
        """The ``op`` of every op, in order (duplicates kept)."""
        return [op.op for op in self.ops]

    def describe(self) -> str:
        """A readable listing, one op a line."""
        lines = [f"{self.source} graph: inputs "
                 + ", ".join(f"{v.name}{list(v.shape) if v.shape is not None else ''}"
                             for v in self.inputs)]
        for op in self.ops:
            lines.append(f"  {', '.join(o or '_' for o in op.outputs)} = {op.op}"
                         f"({', '.join(i or '_' for i in op.inputs)})")
        lines.append(f"  outputs {', '.join(self.outputs)}")
        return "\n".join(lines)
