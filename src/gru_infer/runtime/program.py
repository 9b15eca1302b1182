"""A ModelSpec compiled for one call shape: every buffer made once, the ops
in graph order, and what a call fills in (inputs, lengths, initial states)
and reads out (outputs, final states).

Packed weights are shared by every program of a model (Weights, below); the
buffers belong to one program, which one thread uses at a time.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from .._threads import environment_threads
from ..spec.graph import ModelSpec
from ..spec.layers import Recurrent
from . import _core
from .ops import BUILDERS
from .values import Value, c_array

# The core's default team is at most what this process may run on, as the
# environment says it (OMP_NUM_THREADS from Ray/Dask, affinity, cgroup quota).
_core.set_max_threads(environment_threads())


class Weights:
    """A model's weights in the forms its ops read: packed GRU and Dense
    weights and cast tables, made on first use and shared by every program
    and thread (made under a lock; read-only after)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.dtype = spec.dtype
        self.precision = spec.precision  # of GRU and Dense weights
        self._lock = threading.Lock()
        self._made: dict = {}

    def _get(self, key, make):
        found = self._made.get(key)
        if found is None:
            with self._lock:
                found = self._made.get(key)
                if found is None:
                    found = self._made[key] = make()
        return found

    def gru(self, layer: Recurrent, engine: int, cells, reverse):
        def make():
            cell = cells[0]
            return _core.PackedGRU(self.dtype, [(c.W, c.R, c.B, r) for c, r in zip(cells, reverse)],
                                   cell.linear_before_reset, cell.activations[0],
                                   cell.activations[1], self.precision)
        return self._get(("gru", layer.name, engine, _core.ISA_EPOCH), make)

    def dense(self, layer, code: int):
        return self._get(("dense", layer.name, code, _core.ISA_EPOCH),
                         lambda: _core.PackedDense(self.dtype, layer.kernel, layer.bias, code,
                                                   self.precision))

    def cast(self, array: np.ndarray) -> np.ndarray:
        return self._get(("cast", id(array)),
                         lambda: c_array(array, self.dtype))


class Builder:
    """What the op builders (ops.py) share while one program is built."""

    def __init__(self, weights: Weights, batch: int, num_threads: Optional[int],
                 states: Optional[dict]):
        self.weights = weights
        self.dtype = weights.dtype
        self.num_threads = num_threads or 0  # 0: the core chooses from the work
        self.states = states
        self.lengths = np.zeros(batch, np.int64)
        self.ops: list = []
        self.gru_ops: list = []
        self.gru_owners: list = []  # (layer name, engine) of each GRU op
        self.final_states: dict = {}
        self.initial_state_buffers: dict = {}

    def add(self, op) -> None:
        self.ops.append(op)

    def add_gru(self, op, layer_name: str, engine: int) -> None:
        self.ops.append(op)
        self.gru_ops.append(op)
        self.gru_owners.append((layer_name, engine))

    def packed_gru(self, layer, engine, cells, reverse):
        return self.weights.gru(layer, engine, cells, reverse)

    def packed_dense(self, layer, code):
        return self.weights.dense(layer, code)

    def cast(self, array):
        return self.weights.cast(array)

    def state_buffer(self, layer, engine: int, shape: tuple):
        """A stream's kept state for one engine of a GRU layer, or None."""
        if self.states is None:
            return None
        state = self.states.setdefault((layer.name, engine), np.zeros(shape, self.dtype))
        if state.shape != shape:
            raise ValueError(f"internal: state of {layer.name!r} has shape {state.shape}, "
                             f"expected {shape}")
        return state


class CompiledProgram:
    """A compiled program and the buffers a call fills and reads."""

    def __init__(self, spec: ModelSpec, weights: Weights, input_shapes: dict, num_threads: int,
                 states: Optional[dict] = None):
        batch = next(iter(input_shapes.values()))[0]
        b = Builder(weights, batch, num_threads, states)
        values = {}
        self.inputs = {}
        for model_input in spec.inputs:
            shape = input_shapes[model_input.name]
            dtype = np.int64 if model_input.token_ids else weights.dtype
            buffer = np.zeros(shape, dtype)
            self.inputs[model_input.name] = buffer
            values[(model_input.name, 0)] = Value(buffer)
        for node in spec.nodes:
            layer = node.layer
            inputs = [values[ref] for ref in node.inputs]
            if node.mask_input is not None:  # an explicit mask tensor (Keras 3)
                mask = values[node.mask_input].buffer
                inputs[0] = Value(inputs[0].buffer, mask.view(np.uint8))
            try:
                outputs = BUILDERS[layer.kind](layer, inputs, b)
            except KeyError:
                raise NotImplementedError(f"layer {layer.name!r}: the runtime has no op for "
                                          f"layer kind {layer.kind!r}") from None
            for index, value in enumerate(outputs):
                values[(layer.name, index)] = value
        self.outputs = [values[ref].buffer for ref in spec.outputs]
        self.lengths = b.lengths
        self.final_states = b.final_states
        self.initial_state_buffers = b.initial_state_buffers
        self.gru_owners = b.gru_owners
        self.program = _core.Program(b.ops, list(self.inputs.values()), self.outputs, b.gru_ops)
