"""Map a checked OpGraph (torch.export or ONNX) onto a ModelSpec.

The op list says what a model computes tensor by tensor; a ModelSpec says it
layer by layer, with per-row shapes and batch-first data inside.  The mapper
walks the ops in order and keeps, for every value, what it is in layer terms
(``_Val``): a sequence or a vector that some spec layer outputs, together with
its physical axis order (``layout``: letters B batch, T time, F features,
D direction, H hidden); one direction's sequence of a GRU; final states of GRU
layers (h_n, ONNX Y_h); a user input that holds initial states or lengths;
zeros or shapes computed from the inputs' sizes (initial states built in the
graph); constants.  Layout ops (permute, Transpose, Reshape, Squeeze, ...)
only change ``layout``; ops that compute become spec layers.  Whatever has no
layer-level meaning, or no spec layer yet, is refused by name.

The model is first read as batch-first (inputs (B, T, ...)); when a GRU turns
out to take an input time-major, the whole mapping is redone as time-major
(ModelSpec.time_major).  Every GRU layer keeps return_sequences=True and
exposes its final states (return_state) when something reads them: the last
step of a one-direction output and h_n[k] both become final states, which is
exact.  A post-pass turns off sequences nobody reads and folds activations
into the Dense before them.

The last step of a one-direction output and the h_n picks become final
states (exact, and a stream can run them); other time-step picks (out[:, -1]
of a bidirectional GRU, which joins the forward final state with the
backward direction's *first* step) become Select layers.  What the
description cannot say yet is refused with the reason: a lone reverse
direction, reshapes that are not layout changes, ...  Arithmetic with a
constant per feature (a normalisation written as (x - mean) * inv_std)
becomes a BatchNormalization layer with variance 1 and epsilon 0.

Initial states and lengths that come from model inputs become call
arguments (``model(x, initial_states=h0, lengths=lengths)``), recorded in
``spec.source``; h_n outputs are left to ``return_state=True``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConversionError, GruInferError
from ..spec.extra_layers import BatchNormalization, Conv1D, LayerNormalization, Select
from ..spec.graph import Input, ModelSpec, Node
from ..spec.layers import (
    Activation,
    Concatenate,
    Dense,
    GRUCell,
    Merge,
    Recurrent,
    compute_dtype,
)
from ._opgraph import OpGraph

_BIG = 2**31 - 1  # slice ends at or past this mean "to the end"


class _Retry(Exception):
    """The batch-first reading of the inputs does not fit: redo time-major."""


@dataclass
class _Val:
    """What a value of the graph is, in layer terms (see the module docstring)."""

    kind: str                   # seq, vec, dirseq, states, gru_y, tokens, zeros, shape,
    #                             state_input, lengths_input, const
    ref: tuple | None = None    # spec (source, index) for seq/vec/tokens
    layout: str = ""            # physical axes: "BTF", "TBF", "BF", "TDBH", "DBH", ...
    size: int | None = None     # features (F), or H
    layer: str = ""             # the Recurrent layer (gru_y, dirseq; seq straight from a GRU)
    direction: int = 0          # dirseq
    states: tuple = ()          # states: ((layer, direction), ...) along the stacked axis
    dims: tuple = ()            # shape: symbolic dims ("B", "T" or ints)
    input_name: str = ""        # state_input, lengths_input: the model input
    rows: tuple = ()            # state_input: which rows of the input (a Slice)
    array: np.ndarray | None = None  # const
    has_lengths: bool = False   # seq/gru_y of a GRU run with lengths


@dataclass
class _NodeDraft:
    cls: type
    name: str
    inputs: list
    kwargs: dict = field(default_factory=dict)


class _Builder:
    def __init__(self, graph: OpGraph, time_major: bool) -> None:
        self.graph = graph
        self.time_major = time_major
        self.vals: dict[str, _Val] = {}
        self.nodes: list[_NodeDraft] = []
        self.inputs: list[Input] = []
        self.names: set[str] = set()
        self.initial_states: list[tuple[str, tuple, str]] = []  # (layer, rows, input)
        self.lengths_input: str | None = None
        self.recurrent: dict[str, _NodeDraft] = {}
        self.dtype = np.float32

    # -- names and nodes -----------------------------------------------------------------

    def unique(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "layer"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def add(self, cls: type, base: str, inputs: list, **kwargs) -> str:
        draft = _NodeDraft(cls, self.unique(base), list(inputs), kwargs)
        self.nodes.append(draft)
        if cls is Recurrent:
            self.recurrent[draft.name] = draft
        return draft.name

    def state_ref(self, layer: str, direction: int) -> tuple:
        """The ref of a GRU layer's final state of one direction (return_state)."""
        draft = self.recurrent[layer]
        draft.kwargs["return_state"] = True
        return (layer, 1 + direction)

    def seq_layout(self) -> str:
        return "TBF" if self.time_major else "BTF"

    # -- values --------------------------------------------------------------------------

    def val(self, name: str, where: str) -> _Val:
        if name in self.vals:
            return self.vals[name]
        if name in self.graph.constants:
            return _Val("const", array=self.graph.constants[name])
        raise ConversionError(f"{where}: value {name!r} has no meaning gru_infer can map")

    def const(self, name: str, where: str) -> np.ndarray:
        val = self.val(name, where)
        if val.kind != "const":
            raise ConversionError(f"{where}: {name!r} must be a constant stored in the file")
        return val.array

    def tensor(self, name: str, where: str, kinds=("seq", "vec")) -> _Val:
        val = self.val(name, where)
        if val.kind not in kinds:
            raise ConversionError(f"{where}: {name!r} is {_describe(val)}, expected "
                                  f"{' or '.join(kinds)}")
        return val

    def add_input(self, name: str, dtype: str | None, shape) -> None:
        rank = len(shape) if shape is not None else None
        if dtype is not None and np.dtype(dtype).kind in "iu":
            if rank not in (None, 2):
                raise ConversionError(f"input {name!r}: token ids must be (batch, time)")
            self.inputs.append(Input(name, (None,), np.dtype(dtype).name))
            self.vals[name] = _Val("tokens", (name, 0), "TB" if self.time_major else "BT")
            return
        if rank not in (None, 3):
            raise ConversionError(f"input {name!r} has {rank} axes; gru_infer models take "
                                  "(batch, time, features) inputs")
        layout = self.seq_layout()
        features = shape[layout.index("F")] if shape is not None else None
        if not isinstance(features, int):
            raise ConversionError(f"input {name!r}: the feature size must be fixed, got {shape}")
        self.inputs.append(Input(name, (None, features), "float32"))
        self.vals[name] = _Val("seq", (name, 0), layout, features)

    # -- layers shared by both sources ------------------------------------------------------

    def dense(self, x: _Val, kernel: np.ndarray, bias, base: str, where: str) -> _Val:
        if x.layout[-1:] != "F" or x.size != kernel.shape[0]:
            raise ConversionError(f"{where}: a linear layer of {kernel.shape[0]} inputs on "
                                  f"{_describe(x)}")
        dtype = compute_dtype(kernel.dtype)
        name = self.add(Dense, base, [x.ref], kernel=np.asarray(kernel, dtype),
                        bias=None if bias is None else np.asarray(bias, dtype).reshape(-1))
        return _Val(x.kind, (name, 0), x.layout, kernel.shape[1])

    def activation(self, x: _Val, activation: str, base: str, where: str,
                   axis: int | None = None) -> _Val:
        if x.kind not in ("seq", "vec"):
            raise ConversionError(f"{where}: {activation} of {_describe(x)}")
        if axis is not None and x.layout[axis] != "F":
            raise ConversionError(f"{where}: {activation} over axis {axis} ({x.layout[axis]}); "
                                  "gru_infer applies it over the features")
        name = self.add(Activation, base, [x.ref], activation=activation)
        return _Val(x.kind, (name, 0), x.layout, x.size)

    def merge(self, values: list[_Val], op: str, base: str, where: str) -> _Val:
        first = values[0]
        for other in values[1:]:
            if (other.kind, other.layout, other.size) != (first.kind, first.layout, first.size):
                raise ConversionError(f"{where}: {op} of {_describe(first)} and "
                                      f"{_describe(other)}")
        name = self.add(Merge, base, [v.ref for v in values], op=op)
        return _Val(first.kind, (name, 0), first.layout, first.size)

    def concat(self, values: list[_Val], axis: int, base: str, where: str) -> _Val:
        first = values[0]
        if any((v.kind, v.layout) != (first.kind, first.layout) for v in values) or \
                first.layout[axis] != "F":
            raise ConversionError(f"{where}: joining {[_describe(v) for v in values]} on axis "
                                  f"{axis}; gru_infer joins sequences or vectors on features")
        name = self.add(Concatenate, base, [v.ref for v in values], axis=-1)
        return _Val(first.kind, (name, 0), first.layout, sum(v.size for v in values))

    def gru(self, base: str, x: _Val, cells: list[dict], layout_in: str, initial: _Val | None,
            lengths: _Val | None, where: str) -> str:
        """One Recurrent layer over x (whose layout must be layout_in)."""
        if x.kind != "seq":
            raise ConversionError(f"{where}: the GRU reads {_describe(x)}")
        if x.layout != layout_in:
            if not self.time_major and sorted(x.layout) == sorted(layout_in):
                raise _Retry
            raise ConversionError(f"{where}: the GRU takes its input as {layout_in}, but the "
                                  f"value is laid out {x.layout}")
        name = self.add(Recurrent, base, [x.ref],
                        cells=tuple(GRUCell(**cell) for cell in cells),
                        return_sequences=True)
        if initial is not None and initial.kind == "state_input":
            self.initial_states.append((name, initial.rows, initial.input_name))
        elif initial is not None and initial.kind != "zeros":
            raise ConversionError(f"{where}: the initial state is {_describe(initial)}; "
                                  "gru_infer takes zeros or a model input")
        if lengths is not None:
            if lengths.kind != "lengths_input":
                raise ConversionError(f"{where}: sequence lengths must come from a model "
                                      f"input, got {_describe(lengths)}")
            if self.lengths_input not in (None, lengths.input_name):
                raise ConversionError(f"{where}: GRUs read lengths from different inputs")
            self.lengths_input = lengths.input_name
        return name

    def last_step(self, x: _Val, where: str) -> _Val:
        """x[:, -1] (time axis) of a sequence: the GRU's final state when that is exact
        (one direction, no lengths: a stream can then run it), else a Select layer."""
        exact = not x.has_lengths and (
            (x.kind == "dirseq" and x.direction == 0)
            or (x.kind == "seq" and x.layer and len(self.recurrent[x.layer].kwargs["cells"]) == 1))
        if exact:
            return _Val("vec", self.state_ref(x.layer, 0), "BF", x.size)
        return self.select_step(x, -1, where)

    def first_step(self, x: _Val, where: str) -> _Val:
        """x[:, 0]: a backward direction's final state, else a Select layer."""
        if x.kind == "dirseq" and x.direction == 1 and not x.has_lengths:
            return _Val("vec", self.state_ref(x.layer, 1), "BF", x.size)
        return self.select_step(x, 0, where)

    def select_step(self, x: _Val, index: int, where: str) -> _Val:
        if x.kind != "seq" or x.ref is None:
            raise ConversionError(f"{where}: picking time step {index} of {_describe(x)} is "
                                  "not supported")
        name = self.add(Select, "last_step" if index == -1 else f"step_{index}", [x.ref],
                        axis=0, index=index)
        return _Val("vec", (name, 0), "BF", x.size)

    def affine(self, x: _Val, constant: np.ndarray, op: str, base: str, where: str) -> _Val:
        """x + c, x - c, x * c, x / c with a constant per feature (or a scalar): a
        BatchNormalization layer y = (x - mean) / sqrt(variance + 0) * gamma."""
        if x.kind not in ("seq", "vec") or x.layout[-1] != "F":
            raise ConversionError(f"{where}: arithmetic with a constant on {_describe(x)}")
        c = np.asarray(constant, np.float64)
        if c.size == 1:
            c = np.full(x.size, float(c.reshape(-1)[0]))
        elif c.shape[-1] != x.size or c.size != x.size:
            raise ConversionError(f"{where}: a constant of shape {np.shape(constant)} does not "
                                  f"act per feature on {x.size} features")
        c = c.reshape(-1)
        zeros, ones = np.zeros(x.size), np.ones(x.size)
        mean, gamma = {"add": (-c, ones), "subtract": (c, ones), "multiply": (zeros, c),
                       "divide": (zeros, 1 / c)}[op]
        dtype = compute_dtype(np.asarray(constant).dtype)
        name = self.add(BatchNormalization, base, [x.ref], moving_mean=mean.astype(dtype),
                        moving_variance=ones.astype(dtype), gamma=gamma.astype(dtype),
                        epsilon=0.0)
        return _Val(x.kind, (name, 0), x.layout, x.size)

    def layer_norm(self, x: _Val, gamma, beta, epsilon: float, base: str, where: str) -> _Val:
        if x.kind not in ("seq", "vec") or x.layout[-1] != "F":
            raise ConversionError(f"{where}: normalising {_describe(x)} over its last axis")
        for array in (gamma, beta):
            if array is not None and np.size(array) != x.size:
                raise ConversionError(f"{where}: normalisation weights of {np.size(array)} "
                                      f"values for {x.size} features")
        dtype = compute_dtype((gamma if gamma is not None else np.float32(0)).dtype)
        name = self.add(LayerNormalization, base, [x.ref], epsilon=float(epsilon), size=x.size,
                        gamma=None if gamma is None else np.asarray(gamma, dtype),
                        beta=None if beta is None else np.asarray(beta, dtype))
        return _Val(x.kind, (name, 0), x.layout, x.size)

    def conv1d(self, x: _Val, weight: np.ndarray, bias, stride: int, padding, dilation: int,
               groups: int, base: str, where: str) -> _Val:
        """A PyTorch/ONNX 1-D convolution over (batch, channels, time): weight
        (out, in / groups, kernel)."""
        if x.kind != "seq" or x.layout != "BFT":
            raise ConversionError(f"{where}: a 1-D convolution over {_describe(x)}; gru_infer "
                                  "convolves (batch, channels, time) over time")
        if weight.ndim != 3 or weight.shape[1] * groups != x.size:
            raise ConversionError(f"{where}: convolution weight {weight.shape} with groups "
                                  f"{groups} for {x.size} channels")
        dtype = compute_dtype(weight.dtype)
        name = self.add(Conv1D, base, [x.ref],
                        kernel=np.ascontiguousarray(np.transpose(weight, (2, 1, 0)), dtype),
                        bias=None if bias is None else np.asarray(bias, dtype),
                        strides=int(stride), padding=padding, dilation=int(dilation),
                        groups=int(groups))
        return _Val("seq", (name, 0), "BFT", weight.shape[0])

    def pick_state(self, states: _Val, index: int, where: str) -> _Val:
        if not -len(states.states) <= index < len(states.states):
            raise ConversionError(f"{where}: state index {index} of {len(states.states)}")
        layer, direction = states.states[index]
        H = self.recurrent[layer].kwargs["cells"][direction].hidden_size
        return _Val("vec", self.state_ref(layer, direction), "BF", H)

    # -- the spec ------------------------------------------------------------------------

    def finish(self, outputs: list[str], source: dict) -> ModelSpec:
        refs, notes = [], []
        for name in outputs:
            val = self.val(name, f"graph output {name!r}")
            if val.kind in ("seq", "vec") and val.ref is not None:
                if val.kind == "seq" and val.layout != self.seq_layout():
                    raise ConversionError(
                        f"graph output {name!r} is laid out {val.layout}; gru_infer returns "
                        f"sequences as {self.seq_layout()} like the inputs")
                refs.append(val.ref)
            elif val.kind in ("states", "gru_y_h"):
                notes.append(name)
            else:
                raise ConversionError(f"graph output {name!r} is {_describe(val)}")
        if not refs:
            raise ConversionError("the model outputs only GRU final states; gru_infer returns "
                                  "them with model(x, return_state=True) beside an output")
        self._initial_states(source)
        if self.lengths_input:
            source["lengths_input"] = self.lengths_input
        if notes:
            source["state_outputs"] = notes
        self._fuse_activations(refs)
        self._drop_unread_sequences(refs)
        nodes = []
        for draft in self.nodes:
            layer = draft.cls(draft.name, **draft.kwargs)
            nodes.append(Node(layer, tuple(draft.inputs)))
        used_inputs = {ref[0] for draft in self.nodes for ref in draft.inputs}
        inputs = tuple(i for i in self.inputs if i.name in used_inputs)
        try:
            return ModelSpec(inputs, tuple(nodes), tuple(refs), time_major=self.time_major,
                             source=source)
        except ValueError as exc:
            raise ConversionError(f"the mapped model does not fit together: {exc}") from exc

    def _initial_states(self, source: dict) -> None:
        if not self.initial_states:
            return
        names = [d.name for d in self.nodes if d.cls is Recurrent]
        inputs = {entry[2] for entry in self.initial_states}
        rows = [r for entry in self.initial_states for r in entry[1]]
        by_layer = [entry[0] for entry in self.initial_states]
        if len(inputs) != 1 or by_layer != names or rows != list(range(len(rows))):
            raise ConversionError(
                "initial states come from model inputs in a way gru_infer cannot pass: it "
                "takes one stacked (layers * directions, batch, hidden) array for all GRU "
                "layers in order (model(x, initial_states=h0))")
        source["initial_states_input"] = inputs.pop()

    def _readers(self, refs: list) -> dict:
        readers: dict = {}
        for draft in self.nodes:
            for ref in draft.inputs:
                readers.setdefault(tuple(ref), []).append(draft)
        for ref in refs:
            readers.setdefault(tuple(ref), []).append(None)
        return readers

    def _fuse_activations(self, refs: list) -> None:
        """Dense (or Conv1D) -> Activation with nothing else reading it: one layer."""
        readers = self._readers(refs)
        for draft in list(self.nodes):
            if draft.cls is not Activation:
                continue
            source = tuple(draft.inputs[0])
            producer = next((d for d in self.nodes if d.name == source[0]), None)
            if producer is None or producer.cls not in (Dense, Conv1D) or \
                    producer.kwargs.get("activation", "linear") != "linear" or \
                    len(readers.get(source, [])) != 1:
                continue
            producer.kwargs["activation"] = draft.kwargs["activation"]
            self.nodes.remove(draft)
            for other in self.nodes:
                other.inputs = [(producer.name, 0) if tuple(r) == (draft.name, 0) else r
                                for r in other.inputs]
            refs[:] = [(producer.name, 0) if tuple(r) == (draft.name, 0) else r for r in refs]
            readers = self._readers(refs)

    def _drop_unread_sequences(self, refs: list) -> None:
        """A GRU whose sequence nobody reads computes only its last step; one direction
        read through its final state then needs no state output: the last step is it."""
        readers = self._readers(refs)
        for draft in self.nodes:
            if draft.cls is not Recurrent or (draft.name, 0) in readers:
                continue
            draft.kwargs["return_sequences"] = False
            if len(draft.kwargs["cells"]) == 1 and draft.kwargs.get("return_state"):
                draft.kwargs["return_state"] = False
                state, last = (draft.name, 1), (draft.name, 0)
                for other in self.nodes:
                    other.inputs = [last if tuple(r) == state else r for r in other.inputs]
                refs[:] = [last if tuple(r) == state else r for r in refs]


def _describe(val: _Val) -> str:
    words = {
        "seq": "a sequence", "vec": "a vector", "dirseq": "one direction of a GRU's output",
        "states": "GRU final states", "gru_y": "a GRU's raw output", "tokens": "token ids",
        "zeros": "zeros", "shape": "a shape", "state_input": "initial states (a model input)",
        "lengths_input": "sequence lengths (a model input)", "const": "a constant",
        "gru_y_h": "GRU final states",
    }
    text = words.get(val.kind, val.kind)
    if val.layout:
        text += f" laid out {val.layout}"
    if val.kind == "const" and val.array is not None:
        text += f" of shape {val.array.shape}"
    return text


def _relayout(layout: str, perm: list[int], where: str) -> str:
    if sorted(perm) != list(range(len(layout))):
        raise ConversionError(f"{where}: permutation {perm} of a {len(layout)}-axis value")
    return "".join(layout[p] for p in perm)


def map_graph(build, graph: OpGraph, source: dict) -> ModelSpec:
    """build(builder, source) batch-first, or time-major when the inputs turn out so."""
    try:
        try:
            return build(_Builder(graph, time_major=False), source)
        except _Retry:
            return build(_Builder(graph, time_major=True), source)
    except GruInferError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        # An op whose arguments the checked list allows but the mapping does not expect.
        raise ConversionError(f"cannot map the graph onto gru_infer layers "
                              f"({type(exc).__name__}: {exc})") from exc


def ints(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def const_of(val: _Val, where: str) -> np.ndarray:
    if val is None or val.kind != "const":
        raise ConversionError(f"{where}: slice bounds must be constants")
    return val.array
