"""Stream: a model run step by step on live input, state carried between
calls like a Keras stateful=True model.  Rows are independent streams."""

from __future__ import annotations

import numpy as np

from ._threads import resolve_num_threads
from .model import RunContext


class Stream:
    """s.step(x_t) runs one timestep (batch, features) -> (batch, outputs);
    s.run(x_chunk) runs (batch, time, features); s.reset() clears every row,
    s.reset(rows) the chosen ones; s.state reads or sets the states (one
    (directions, batch, units) array per GRU layer)."""

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
        self._run = RunContext(num_threads=self.num_threads, initial_states=self._states,
                               final_states=self._states)

    # -- state -----------------------------------------------------------------

    @property
    def state(self) -> list:
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
            target[...] = value

    def reset(self, rows=None) -> None:
        """Zero the state of every row, or of the given rows (ints or a bool mask)."""
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
        x = self.model._check_input(x_chunk)
        if x.shape[0] != self.batch_size:
            raise ValueError(f"this stream has batch_size {self.batch_size}, "
                             f"got a chunk of shape {x.shape}")
        outputs = self.model._run(x, self._run)
        return outputs[0] if len(outputs) == 1 else outputs

    def step(self, x_t):
        """Outputs for one timestep x_t of shape (batch, features) (or (batch,) ids)."""
        x_t = np.asarray(x_t)
        outputs = self.run(x_t[:, None])
        if isinstance(outputs, list):
            return [o[:, 0] if o.ndim == 3 else o for o in outputs]
        return outputs[:, 0] if outputs.ndim == 3 else outputs
