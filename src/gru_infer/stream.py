"""Stream: a model run step by step on live input, state carried between
calls like a Keras stateful=True model.  Rows are independent streams.

Plain chains of Embedding / Masking / GRU / Dense / Activation / Dropout
layers (the usual streaming model) step through a plan made once: every
buffer preallocated, the C core called straight from it, nothing allocated
per step.  Other graphs step through the general model code."""

from __future__ import annotations

import threading

import numpy as np

from . import _core, activations
from ._threads import resolve_num_threads
from .layers import Activation, Dense, Embedding, Identity, Masking, Recurrent, core_activation
from .model import INPUT, RunContext



class Stream:
    """s.step(x_t) runs one timestep (batch, features) -> (batch, outputs);
    s.run(x_chunk) runs (batch, time, features); s.reset() clears every row,
    s.reset(rows) the chosen ones; s.state reads or sets the states (one
    (directions, batch, units) array per GRU layer).  A masked step (Masking,
    Embedding(mask_zero)) carries the state and outputs 0 if it opens a call,
    as Keras does for each call of a stateful model."""

    def __init__(self, model, batch_size: int = 1, *, num_threads=None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        for layer in model.recurrent_layers:
            if len(layer.cells) == 2 or layer.go_backwards:
                raise ValueError(
                    f"GRU layer {layer.name!r} runs backwards in time "
                    f"({'bidirectional' if len(layer.cells) == 2 else 'go_backwards'}), "
                    "so it needs the whole sequence and cannot be streamed"
                )
        self.model = model
        self.batch_size = batch_size
        self.num_threads = resolve_num_threads(num_threads)
        self._states = {
            layer.name: np.zeros((1, batch_size, layer.hidden_sizes[0]), layer.dtype)
            for layer in model.recurrent_layers
        }
        # A stream's buffers and states are shared by its calls: one call at a time.
        self._lock = threading.Lock()
        self._plan = _StepPlan.build(model, self._states, batch_size, self.num_threads,
                                     self._lock)
        if self._plan is not None:
            self.step = self._plan  # the hot path, without a second Python frame

    # -- state -----------------------------------------------------------------

    @property
    def state(self) -> list:
        with self._lock:
            return [self._states[layer.name].copy() for layer in self.model.recurrent_layers]

    @state.setter
    def state(self, states) -> None:
        states = list(states)
        layers = self.model.recurrent_layers
        if len(states) != len(layers):
            raise ValueError(f"state must hold one array per GRU layer ({len(layers)}), "
                             f"got {len(states)}")
        for layer, value in zip(layers, states):
            target = self._states[layer.name]
            value = np.asarray(value)
            if value.shape != target.shape or value.dtype.kind != "f":
                raise ValueError(f"state of GRU {layer.name!r} must be a float array of shape "
                                 f"{target.shape}, got {value.dtype} {value.shape}")
        with self._lock:
            for layer, value in zip(layers, states):
                self._states[layer.name][...] = value

    def reset(self, rows=None) -> None:
        """Zero the state of every row, or of the given rows (ints or a bool mask)."""
        with self._lock:
            self._reset(rows)

    def _reset(self, rows) -> None:
        for state in self._states.values():
            if rows is None:
                state[...] = 0
            else:
                try:
                    state[:, rows] = 0
                except IndexError as error:
                    raise ValueError(f"rows {rows!r} do not index a batch of "
                                     f"{self.batch_size}: {error}") from None

    # -- running -----------------------------------------------------------------

    def run(self, x_chunk):
        """Outputs for a chunk (batch, time, ...); states move to its end."""
        x = self.model._to_batch_first(self.model._check_input(x_chunk))
        if x.shape[0] != self.batch_size:
            raise ValueError(f"this stream has batch_size {self.batch_size}, "
                             f"got a chunk of shape {x.shape}")
        run = RunContext(num_threads=self.num_threads, initial_states=self._states)
        with self._lock:
            outputs = self.model._run(x, run)
            for name, state in run.final_states.items():
                self._states[name][...] = state  # in place: the step plan holds these arrays
        outputs = self.model._from_batch_first(outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def step(self, x_t, out=None):
        """Outputs for one timestep x_t of shape (batch, features) (or (batch,)
        token ids).  out: an array to write the output into (no allocation)."""
        x_t = np.asarray(x_t)
        outputs = self.run(x_t[None] if self.model.time_major else x_t[:, None])
        time_axis = 0 if self.model.time_major else 1
        if isinstance(outputs, list):
            return [o.take(0, time_axis) if o.ndim == 3 else o for o in outputs]
        result = outputs.take(0, time_axis) if outputs.ndim == 3 else outputs
        if out is not None:
            out[...] = result
            return out
        return result


class _StepPlan:
    """One timestep of a plain chain, with every buffer made in advance."""

    @classmethod
    def build(cls, model, states, batch, num_threads, lock):
        chain = all(node.inputs == [((model.nodes[i - 1].layer.name if i else INPUT), 0)]
                    and node.mask_input is None for i, node in enumerate(model.nodes))
        steppable = (Recurrent, Dense, Activation, Identity, Masking, Embedding)
        token_ids = model.input_dtype.kind in "iu"
        known_width = token_ids or (len(model.input_shape) == 2 and model.input_shape[1] is not None)
        if (not chain or len(model.outputs) != 1 or not known_width
                or not all(isinstance(n.layer, steppable) for n in model.nodes)
                or (token_ids and not isinstance(model.nodes[0].layer, Embedding))):
            return None
        try:
            return cls(model, states, batch, num_threads, lock)
        except (ValueError, TypeError):  # e.g. layers of mixed dtypes: the general path copes
            return None

    def __init__(self, model, states, batch, num_threads, lock):
        dtype = model.dtype
        self.lock = lock
        self.token_ids = model.input_dtype.kind in "iu"
        if self.token_ids:  # (batch,) ids in, through the Embedding's table
            self.x = np.zeros((batch, 1), np.int64)
            self.step_shape, self.x_step = (batch,), self.x[:, 0]
        else:
            self.x = np.zeros((batch, 1, model.input_shape[1]), dtype)
            self.step_shape, self.x_step = (batch, model.input_shape[1]), self.x[:, 0]
        self.ops = []
        current = self.x
        mask = None  # the (batch, 1) uint8 step mask, once a layer makes one
        for node in model.nodes:
            layer = node.layer
            if isinstance(layer, Embedding):
                out = np.zeros((batch, 1, layer.table.shape[1]), layer.table.dtype)
                if layer.mask_zero:
                    mask = np.zeros((batch, 1), np.uint8)
                self.ops.append(_embedding_step(layer, current, out, mask))
            elif isinstance(layer, Masking):
                out = np.zeros_like(current)
                previous, mask = mask, np.zeros((batch, 1), np.uint8)
                self.ops.append(_masking_step(layer.mask_value, current, out, mask, previous))
            elif isinstance(layer, Recurrent):
                engine = layer.engines[0]
                out = np.zeros((batch, 1, layer.hidden_sizes[0]), dtype)
                workspace = np.empty(engine._core.workspace_bytes(batch, 1, num_threads), np.uint8)
                state = states[layer.name]
                threads = engine.num_threads or num_threads
                self.ops.append(engine._core.bind(current, state, out, state, workspace, threads,
                                                  mask))
                if not layer.return_sequences:
                    mask = None  # a last-output layer ends the mask (Keras)
            elif isinstance(layer, Dense):
                out = np.zeros((batch, 1, layer.units), dtype)
                self.ops.append(_dense_step(layer, current, out))
            elif isinstance(layer, Activation):
                out = np.zeros_like(current)
                self.ops.append(_activation_step(layer.activation, layer.hard_sigmoid, current, out))
            else:  # Identity
                continue
            current = out
        self.output = current[:, 0]

    def __call__(self, x_t, out=None):
        """Stream.step for this plan: outputs for one timestep (batch, features)."""
        x_t = np.asarray(x_t)
        if x_t.shape != self.step_shape:
            raise ValueError(f"step input must have shape {self.step_shape} (this stream has "
                             f"batch_size {self.step_shape[0]}), got {x_t.shape}")
        if x_t.dtype.kind not in ("iu" if self.token_ids else "f"):
            raise TypeError(f"step input must hold {'integer token ids' if self.token_ids else 'floats'}"
                            f", got dtype {x_t.dtype}")
        lock = self.lock
        lock.acquire()  # (acquire/release: half the cost of a with-block on this path)
        try:
            self.x_step[...] = x_t
            for op in self.ops:
                op()
            if out is None:
                return self.output.copy()
            out[...] = self.output
            return out
        finally:
            lock.release()


def _embedding_step(layer, ids, out, mask):
    """out = table[ids] (ids (batch, 1)); mask = ids != 0 under mask_zero."""
    table, vocab, name = layer.table, layer.table.shape[0], layer.name
    mask_bool = None if mask is None else mask.view(np.bool_)

    def run():
        try:
            np.take(table, ids, axis=0, out=out, mode="raise")
        except IndexError:
            raise ValueError(f"Embedding {name!r}: token ids must lie in [0, {vocab - 1}], "
                             f"got {ids.ravel().tolist()}") from None
        if mask_bool is not None:
            np.not_equal(ids, 0, out=mask_bool)
    return run


def _masking_step(mask_value, source, out, mask, previous):
    """Keras Masking on one step: mask = any(x != value) (and any earlier
    mask), masked features zeroed."""
    differs = np.zeros(source.shape, np.bool_)
    mask_bool = mask.view(np.bool_)
    previous_bool = None if previous is None else previous.view(np.bool_)

    def run():
        np.not_equal(source, mask_value, out=differs)
        np.any(differs, axis=-1, out=mask_bool)
        if previous_bool is not None:
            np.logical_and(mask_bool, previous_bool, out=mask_bool)
        np.multiply(source, mask_bool[..., None], out=out)
    return run


def _core_activation(name, hard_sigmoid):
    """The name the core applies an activation by in place, or None (NumPy's)."""
    name = core_activation(name, hard_sigmoid)
    return name if name in _core.ACTIVATION_CODES else None


def _activation_step(name, hard_sigmoid, source, out):
    """out = name(source): in place by the core where it has the activation."""
    core_name = _core_activation(name, hard_sigmoid)
    if core_name is not None or name == "softmax":
        apply = _core.softmax_inplace if name == "softmax" else (
            lambda values: _core.activate_inplace(core_name, values))

        def run():
            np.copyto(out, source)
            apply(out)
    else:
        def run():
            np.copyto(out, activations.apply(name, source))
    return run


def _dense_step(layer, source, out):
    """One call into the core for x @ kernel + bias and the activation when it
    has it; NumPy applies any other activation after."""
    core_name = _core_activation(layer.activation, layer.hard_sigmoid)
    if core_name is None and layer.activation == "softmax":
        core_name = "softmax"
    dense = _core.BoundDense(source, layer.kernel, layer.bias, out, core_name)
    if core_name is not None:
        return dense

    def run():
        dense()
        np.copyto(out, activations.apply(layer.activation, out, layer.hard_sigmoid))
    return run
