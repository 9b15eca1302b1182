"""ModelSpec: a whole model as plain data - its inputs, its layers wired into
a graph (a DAG: several inputs, merges, several outputs) and its outputs.

Validation happens once, when a spec is made: names are unique, every layer
reads inputs or earlier layers' outputs that exist, each layer gets as many
inputs as it takes, and the per-row shapes fit from the inputs to the
outputs.  A spec that validates is a spec the runtime can compile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .layers import Layer, Recurrent, compute_dtype
from .precision import check_precision

INPUT = "input"  # the name of a model's input when it has one and no name is given


@dataclass(frozen=True)
class Input:
    """A model input: its name, per-row shape ((time, features), (time,) for
    token ids, or (features,) for a vector; None where any size goes) and dtype."""

    name: str = INPUT
    shape: tuple = (None, None)
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(None if s is None else int(s) for s in self.shape))
        dtype = np.dtype(self.dtype)
        if dtype.kind not in "iuf":
            raise ValueError(f"input {self.name!r}: dtype must be float or integer, got {dtype}")
        object.__setattr__(self, "dtype", dtype.name)
        if not self.shape:
            raise ValueError(f"input {self.name!r}: a per-row shape needs at least one axis")

    @property
    def token_ids(self) -> bool:
        return np.dtype(self.dtype).kind in "iu"


Ref = tuple  # (source: an input name or a layer name, output index)


@dataclass(frozen=True, eq=False)
class Node:
    """A layer and what it reads: (source, output index) per input, and
    optionally an explicit mask tensor (Keras 3 functional graphs pass the
    mask of Embedding(mask_zero) as a tensor)."""

    layer: Layer
    inputs: tuple
    mask_input: Optional[Ref] = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple((str(s), int(i)) for s, i in self.inputs))
        if self.mask_input is not None:
            s, i = self.mask_input
            object.__setattr__(self, "mask_input", (str(s), int(i)))


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A model: inputs, nodes in an order where every node's inputs come
    earlier, outputs as (source, index) refs.

    time_major: inputs and sequence outputs are (time, batch, ...), as a
    PyTorch nn.GRU(batch_first=False) takes them; every layer still sees
    batch-first data.  source: where the model came from (framework,
    version, format, file; the forward a converter assumed).  precision:
    how the runtime stores GRU and Dense weights ("native": in the compute
    dtype; "bfloat16"; "int8": see spec/precision.py; float32 models only).
    """

    inputs: tuple
    nodes: tuple
    outputs: tuple
    time_major: bool = False
    source: dict = field(default_factory=dict)
    precision: str = "native"

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "nodes", tuple(n if isinstance(n, Node) else Node(*n)
                                                for n in self.nodes))
        object.__setattr__(self, "outputs", tuple((str(s), int(i)) for s, i in self.outputs))
        object.__setattr__(self, "source", dict(self.source or {}))
        check_precision(self.precision)
        self.shapes()  # validates the whole graph
        check_precision(self.precision, self.dtype)

    # -- lookups ---------------------------------------------------------------

    @property
    def layers(self) -> list:
        return [n.layer for n in self.nodes]

    @property
    def recurrent_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer, Recurrent)]

    def layer(self, name: str) -> Layer:
        for node in self.nodes:
            if node.layer.name == name:
                return node.layer
        raise KeyError(name)

    @property
    def dtype(self) -> np.dtype:
        """The compute dtype: float64 when any layer's weights are float64."""
        dtypes = {layer.dtype for layer in self.layers if layer.dtype is not None}
        return compute_dtype(np.float64 if np.dtype(np.float64) in dtypes else np.float32)

    @property
    def parameter_count(self) -> int:
        return sum(int(t.size) for layer in self.layers for t in layer.tensors().values())

    # -- validation and shapes ---------------------------------------------------

    def shapes(self, input_shapes: Optional[dict] = None) -> dict:
        """Per-row shapes of every value: {(source, index): shape}, from the
        inputs' declared shapes or the given ones.  Raises ValueError naming
        the layer when the graph does not fit together."""
        names = [i.name for i in self.inputs]
        if not names:
            raise ValueError("a model needs at least one input")
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        shapes = {(i.name, 0): tuple((input_shapes or {}).get(i.name, i.shape))
                  for i in self.inputs}
        counts = {i.name: 1 for i in self.inputs}
        for position, node in enumerate(self.nodes):
            layer = node.layer
            where = f"layer #{position} {layer.name!r} ({layer.kind})"
            if layer.name in counts:
                raise ValueError(f"{where}: the name {layer.name!r} is used twice")
            refs = list(node.inputs) + ([node.mask_input] if node.mask_input else [])
            for src, index in refs:
                if src not in counts:
                    raise ValueError(f"{where} reads {src!r}, which is not an input or an "
                                     "earlier layer")
                if not 0 <= index < counts[src]:
                    raise ValueError(f"{where} reads output {index} of {src!r}, which has "
                                     f"{counts[src]}")
            if not layer.min_inputs <= len(node.inputs) <= layer.max_inputs:
                wanted = layer.min_inputs if layer.min_inputs == layer.max_inputs else \
                    f"{layer.min_inputs} to {layer.max_inputs}"
                raise ValueError(f"{where} takes {wanted} inputs, got {len(node.inputs)}")
            try:
                outs = layer.output_shapes([shapes[ref] for ref in node.inputs])
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            if len(outs) != layer.output_count:
                raise ValueError(f"{where}: internal: {len(outs)} shapes for "
                                 f"{layer.output_count} outputs")
            for index, shape in enumerate(outs):
                shapes[(layer.name, index)] = tuple(shape)
            counts[layer.name] = layer.output_count
        if not self.outputs:
            raise ValueError("a model needs at least one output")
        for src, index in self.outputs:
            if src not in counts or not 0 <= index < counts[src]:
                raise ValueError(f"model output ({src!r}, {index}) is not a layer output")
        return shapes

    def output_shapes(self, input_shapes: Optional[dict] = None) -> list:
        shapes = self.shapes(input_shapes)
        return [shapes[ref] for ref in self.outputs]


def sequential(layers, *, input: Optional[Input] = None, **kwargs) -> ModelSpec:
    """A chain: each layer reads the previous one's output."""
    input = input or Input()
    nodes, previous = [], input.name
    for layer in layers:
        nodes.append(Node(layer, ((previous, 0),)))
        previous = layer.name
    return ModelSpec((input,), tuple(nodes), ((previous, 0),), **kwargs)
