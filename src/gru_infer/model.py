"""Model: a graph of layers (a chain, or one input feeding several outputs),
and Stream: the same model run one step at a time with its state kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

from ._threads import resolve_num_threads
from .layers import Layer, Recurrent

if TYPE_CHECKING:
    from .stream import Stream

INPUT = "input"


@dataclass
class Node:
    layer: Layer
    inputs: list  # [(source node name or INPUT, output index)]
    mask_input: Optional[tuple] = None  # (source, index) of an explicit boolean mask


@dataclass
class RunContext:
    """What one model call shares with its layers."""

    num_threads: int
    lengths: Optional[np.ndarray] = None
    initial_states: dict = field(default_factory=dict)
    final_states: dict = field(default_factory=dict)


class Model:
    """A GRU model in canonical form.

    nodes: layers in an order where every node's inputs come earlier, each
    with its inputs as (node name or "input", output index); outputs: the
    (node name, output index) pairs the model returns.  input_shape is the
    per-row shape, (time, features) or (time,) for token ids, None where any.
    """

    def __init__(self, nodes, outputs, *, input_shape=(None, None), input_dtype="float32",
                 source=None, input_name=INPUT, time_major=False):
        self.nodes = [n if isinstance(n, Node) else Node(*n) for n in nodes]
        self.outputs = [tuple(o) for o in outputs]
        self.input_shape = tuple(input_shape)
        self.input_dtype = np.dtype(input_dtype)
        self.input_name = input_name
        self.source = dict(source or {})
        # time_major: inputs (time, batch, ...) and sequence outputs likewise,
        # as a PyTorch nn.GRU(batch_first=False) takes them.
        self.time_major = bool(time_major)
        names = set()
        for node in self.nodes:
            if node.layer.name in names or node.layer.name == INPUT:
                raise ValueError(f"layer name {node.layer.name!r} is used twice")
            for src, _ in node.inputs + ([node.mask_input] if node.mask_input else []):
                if src != INPUT and src not in names:
                    raise ValueError(f"layer {node.layer.name!r} reads {src!r}, "
                                     "which is not an earlier layer")
            names.add(node.layer.name)
        for src, _ in self.outputs:
            if src not in names and src != INPUT:
                raise ValueError(f"model output {src!r} is not a layer")
        self._by_name = {n.layer.name: n.layer for n in self.nodes}

    @classmethod
    def sequential(cls, layers, **kwargs) -> "Model":
        """A chain: each layer reads the previous one's output."""
        nodes, previous = [], INPUT
        for layer in layers:
            nodes.append(Node(layer, [(previous, 0)]))
            previous = layer.name
        return cls(nodes, [(previous, 0)], **kwargs)

    # -- inspection ----------------------------------------------------------

    @property
    def layers(self) -> list:
        return [n.layer for n in self.nodes]

    @property
    def recurrent_layers(self) -> list:
        return [layer for layer in self.layers if isinstance(layer, Recurrent)]

    def layer(self, name: str) -> Layer:
        return self._by_name[name]

    @property
    def dtype(self) -> np.dtype:
        for layer in self.layers:
            if hasattr(layer, "dtype"):
                return layer.dtype
        return np.dtype(np.float32)

    @property
    def parameter_count(self) -> int:
        return sum(int(np.size(t)) for layer in self.layers for t in layer.tensors().values()
                   if t is not None)

    def summary(self) -> str:
        lines = [f"gru_infer Model: input {self._input_text()}, "
                 f"{self.parameter_count:,} parameters, source {self._source_text()}"]
        for node in self.nodes:
            layer = node.layer
            shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in layer.tensors().items()
                               if v is not None)
            extra = {k: v for k, v in layer.config().items() if k != "cells"}
            if isinstance(layer, Recurrent):
                extra["units"] = layer.hidden_sizes
                extra["directions"] = len(layer.cells)
                extra["reset_after"] = layer.cells[0].get("linear_before_reset", True)
                extra["activations"] = list(layer.cells[0].get("activations", ()))
            reads = ", ".join(f"{s}[{i}]" if i else s for s, i in node.inputs)
            lines.append(f"  {layer.name:<20} {layer.kind:<10} <- {reads:<16} {extra}"
                         + (f"  [{shapes}]" if shapes else ""))
        outs = ", ".join(f"{s}[{i}]" if i else s for s, i in self.outputs)
        lines.append(f"  outputs: {outs}")
        return "\n".join(lines)

    def _input_text(self):
        shape = ", ".join("?" if s is None else str(s) for s in self.input_shape[1:])
        order = "time, batch" if self.time_major else "batch, time"
        return f"({order}{', ' + shape if shape else ''}) {self.input_dtype}"

    def _source_text(self):
        if not self.source:
            return "unknown"
        return " ".join(str(self.source[k]) for k in ("framework", "version", "format")
                        if self.source.get(k))

    def __repr__(self):
        return f"<gru_infer.Model {len(self.nodes)} layers, input {self._input_text()}>"

    # -- running -------------------------------------------------------------

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        token_ids = self.input_dtype.kind in "iu"
        if token_ids:
            if x.dtype.kind not in "iuf":  # float ids are checked for integrality by Embedding
                raise TypeError(f"this model takes integer token ids (batch, time), got {x.dtype}")
        elif x.dtype.kind != "f":
            raise TypeError(f"this model takes float features, got dtype {x.dtype}")
        else:
            x = x.astype(self.dtype, copy=False)
        expected = (None,) + self.input_shape
        if x.ndim != len(expected) or any(e is not None and e != s
                                          for e, s in zip(expected, x.shape)):
            want = ", ".join("any" if e is None else str(e) for e in expected)
            raise ValueError(f"model input must have shape (batch, "
                             f"{'time' if token_ids else 'time, features'}) = ({want}), "
                             f"got {x.shape}")
        return x

    def _to_batch_first(self, x):
        return x.swapaxes(0, 1) if self.time_major else x

    def _from_batch_first(self, outputs: list) -> list:
        if not self.time_major:
            return outputs
        return [np.ascontiguousarray(o.swapaxes(0, 1)) if o.ndim == 3 else o for o in outputs]

    def _run(self, x, run: RunContext) -> list:
        values = {INPUT: [x]}
        masks = {INPUT: [None]}
        for node in self.nodes:
            inputs = [values[src][i] for src, i in node.inputs]
            in_masks = [masks[src][i] for src, i in node.inputs]
            if node.mask_input is not None:  # Keras 3 functional: mask passed as a tensor
                src, i = node.mask_input
                in_masks[0] = np.asarray(values[src][i], dtype=bool)
            values[node.layer.name], masks[node.layer.name] = node.layer.call(inputs, in_masks, run)
        return [values[src][i] for src, i in self.outputs]

    def __call__(self, x, *, initial_states=None, lengths=None, return_state=False,
                 num_threads=None):
        """Outputs for a whole batch x: (batch, time, features) floats or
        (batch, time) token ids.  One output array, or a list for models with
        several.  A time-major model (PyTorch batch_first=False) takes and
        returns (time, batch, ...) instead.  return_state=True also returns the final states, one
        (directions, batch, units) array per GRU layer, in layer order.
        initial_states: such a list, a dict by layer name, or PyTorch's stacked
        h0 (layers * directions, batch, units); lengths: PyTorch packed-sequence
        lengths, one per row (outputs past a row's length are 0)."""
        x = self._to_batch_first(self._check_input(x))
        run = RunContext(num_threads=resolve_num_threads(num_threads),
                         initial_states=self._states_by_name(initial_states))
        if lengths is not None:
            from ._checks import as_lengths

            run.lengths = as_lengths(lengths, x.shape[0], x.shape[1])
        outputs = self._from_batch_first(self._run(x, run))
        result = outputs[0] if len(outputs) == 1 else outputs
        if return_state:
            return result, [run.final_states[r.name] for r in self.recurrent_layers]
        return result

    predict = __call__

    def _states_by_name(self, states) -> dict:
        if states is None:
            return {}
        if isinstance(states, np.ndarray) or (hasattr(states, "shape") and len(states.shape) == 3):
            states = self._split_stacked_state(np.asarray(states))
        if isinstance(states, dict):
            unknown = set(states) - {r.name for r in self.recurrent_layers}
            if unknown:
                raise ValueError(f"initial_states names unknown GRU layers {sorted(unknown)}")
            return dict(states)
        states = list(states)
        recurrent = self.recurrent_layers
        if len(states) != len(recurrent):
            raise ValueError(f"initial_states must hold one state per GRU layer "
                             f"({len(recurrent)}), got {len(states)}")
        return {r.name: s for r, s in zip(recurrent, states)}

    def _split_stacked_state(self, state: np.ndarray) -> list:
        """PyTorch's h0 (layers * directions, batch, units) -> one array per GRU layer."""
        recurrent = self.recurrent_layers
        total = sum(len(r.cells) for r in recurrent)
        if state.ndim != 3 or state.shape[0] != total:
            raise ValueError(f"a stacked initial state must have shape (layers * directions = "
                             f"{total}, batch, units), got {state.shape}")
        out, start = [], 0
        for r in recurrent:
            out.append(state[start : start + len(r.cells)])
            start += len(r.cells)
        return out

    def stream(self, batch_size: int = 1, *, num_threads=None) -> "Stream":
        """A stateful stream: feed steps or chunks, state carried between calls."""
        from .stream import Stream

        return Stream(self, batch_size, num_threads=num_threads)

    # -- files ---------------------------------------------------------------

    def save(self, path) -> None:
        """Write the model to one safetensors file (weights + config)."""
        from .weights import save_model

        save_model(self, path)
