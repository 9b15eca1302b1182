"""Layers over the canonical weights.

GRU holds the canonical (ONNX-style) weights; the C core packs what its
kernels prefer (folded biases, packed panels) from them and runs the layer.
"""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np

from . import _core
from ._checks import as_float_array, as_lengths, as_mask, check_shape
from ._threads import resolve_num_threads

GRU_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}
GRU_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "relu", "linear", "softsign")
HARD_SIGMOID_VERSIONS = ("keras2", "keras3")


# Scratch memory for the core, one buffer per thread, reused across calls and
# layers: a fresh multi-megabyte buffer per call cost page faults on every call.
_scratch = threading.local()
_SCRATCH_KEEP_BYTES = 64 << 20  # larger one-off needs are not kept


def _scratch_buffer(nbytes: int) -> np.ndarray:
    buffer = getattr(_scratch, "buffer", None)
    if buffer is not None and buffer.nbytes >= nbytes:
        return buffer
    buffer = np.empty(max(nbytes, 1), np.uint8)
    if nbytes <= _SCRATCH_KEEP_BYTES:
        _scratch.buffer = buffer
    return buffer


def core_activation(name: str, hard_sigmoid: str) -> str:
    """The name the C core knows an activation by (hard_sigmoid by Keras version)."""
    return f"hard_sigmoid_{hard_sigmoid}" if name == "hard_sigmoid" else name


class GRU:
    """One GRU layer (one or two directions) in the canonical ONNX form.

    W (D, 3H, I), R (D, 3H, H), B (D, 6H) = [Wb | Rb], gate blocks z, r, h.
    The weights' dtype (float32 or float64) is the dtype of the computation.
    Call: ``y, h_n = layer(x, initial_state=None, lengths=None, mask=None)`` with
    x (batch, time, I), y (batch, time, D*H), h_n (D, batch, H).
    """

    def __init__(
        self,
        W,
        R,
        B=None,
        *,
        linear_before_reset: bool = True,
        direction: str = "forward",
        activations: Sequence[str] = ("sigmoid", "tanh"),
        hard_sigmoid: str = "keras3",
        num_threads: Optional[int] = None,
    ):
        if direction not in GRU_DIRECTIONS:
            raise ValueError(f"direction must be one of {list(GRU_DIRECTIONS)}, got {direction!r}")
        if len(activations) != 2 or any(a not in GRU_ACTIVATIONS for a in activations):
            raise ValueError(
                f"activations must be (gate, candidate), each one of {list(GRU_ACTIVATIONS)}, "
                f"got {tuple(activations)!r}"
            )
        if hard_sigmoid not in HARD_SIGMOID_VERSIONS:
            raise ValueError(
                f"hard_sigmoid must be one of {list(HARD_SIGMOID_VERSIONS)}, got {hard_sigmoid!r}"
            )
        W_in = np.asarray(W)
        if W_in.dtype.kind != "f" or W_in.dtype.itemsize not in (4, 8):
            raise TypeError(f"W must be float32 or float64 (the compute dtype), got {W_in.dtype}")
        self.dtype = np.dtype(W_in.dtype.name)  # native byte order
        D = len(GRU_DIRECTIONS[direction])
        W = as_float_array(W_in, "W", self.dtype)
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] % 3 or W.shape[1] == 0 or W.shape[2] == 0:
            raise ValueError(
                f"W must have shape (num_directions={D}, 3*hidden_size, input_size) "
                f"with positive sizes, got {W.shape}"
            )
        H, I = W.shape[1] // 3, W.shape[2]
        R = as_float_array(R, "R", self.dtype)
        check_shape(R, (D, 3 * H, H), "R", "(num_directions, 3*hidden_size, hidden_size)")
        if B is not None:
            B = as_float_array(B, "B", self.dtype)
            check_shape(B, (D, 6 * H), "B", "(num_directions, 6*hidden_size)")
        self.W, self.R, self.B = W, R, B
        for array in (W, R, B):
            if array is not None:
                array.flags.writeable = False
        self.input_size, self.hidden_size, self.num_directions = I, H, D
        self.linear_before_reset = bool(linear_before_reset)
        self.direction = direction
        self.activations = tuple(activations)
        self.hard_sigmoid = hard_sigmoid
        self.num_threads = num_threads
        # packed in C (biases folded there), for the kernel set in use
        self._core = _core.GRUCore(
            self.dtype,
            I,
            H,
            list(GRU_DIRECTIONS[direction]),
            self.linear_before_reset,
            core_activation(activations[0], hard_sigmoid),
            core_activation(activations[1], hard_sigmoid),
            W,
            R,
            B,
        )

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    def __repr__(self) -> str:
        return (
            f"GRU(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"direction={self.direction!r}, linear_before_reset={self.linear_before_reset}, "
            f"activations={self.activations}, dtype={self.dtype})"
        )

    def __call__(self, x, initial_state=None, lengths=None, mask=None, *, num_threads=None):
        """y (batch, time, D*H), h_n (D, batch, H) for x (batch, time, input_size)."""
        x = as_float_array(x, "x", self.dtype)
        check_shape(x, (None, None, self.input_size), "x", "(batch, time, input_size)")
        batch, steps = x.shape[0], x.shape[1]
        D, H = self.num_directions, self.hidden_size
        if initial_state is not None:
            initial_state = as_float_array(initial_state, "initial_state", self.dtype)
            check_shape(initial_state, (D, batch, H), "initial_state",
                        "(num_directions, batch, hidden_size)")
        if lengths is not None:
            lengths = as_lengths(lengths, batch, steps)
        if mask is not None:
            mask = as_mask(mask, batch, steps)
        threads = resolve_num_threads(num_threads if num_threads is not None else self.num_threads)
        y = np.empty((batch, steps, D * H), self.dtype)
        h_n = np.empty((D, batch, H), self.dtype)
        workspace = _scratch_buffer(self._core.workspace_bytes(batch, steps, threads))
        self._core.forward(x, initial_state, lengths, mask, y, h_n, workspace, threads)
        return y, h_n


# ---------------------------------------------------------------------------
# Model layers: the nodes of a Model.  Each knows its config (JSON-able), its
# tensors (canonical weights by local name) and how to run on whole batches.
# ---------------------------------------------------------------------------

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Layer:
    """Base of the model layers: a named node with a config and tensors."""

    kind = ""
    output_count = 1

    def __init__(self, name: str):
        self.name = name

    def config(self) -> dict:
        return {}

    def tensors(self) -> dict:
        return {}

    def call(self, inputs: list, masks: list, run) -> tuple:
        """(outputs, output masks) for the node's inputs; run: the RunContext."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def compute_dtype(dtype) -> np.dtype:
    """float64 stays float64; every other float (float16, ...) computes in float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


class Dense(Layer):
    """y = activation(x @ kernel + bias) over the last axis; kernel (in, out).

    Also stands for Keras TimeDistributed(Dense) and PyTorch nn.Linear
    (whose weight is kernel transposed)."""

    kind = "dense"

    def __init__(self, name, kernel, bias=None, activation="linear", hard_sigmoid="keras3"):
        super().__init__(name)
        from . import activations

        kernel = np.asarray(kernel)
        if kernel.ndim != 2 or kernel.dtype.kind != "f" or 0 in kernel.shape:
            raise ValueError(f"Dense {name!r}: kernel must be a non-empty 2-D float (in, out) "
                             f"array, got {kernel.dtype} {kernel.shape}")
        self.dtype = compute_dtype(kernel.dtype)
        self.kernel = np.ascontiguousarray(kernel, self.dtype)
        if bias is not None:
            bias = np.ascontiguousarray(bias, self.dtype)
            check_shape(bias, (kernel.shape[1],), f"Dense {name!r} bias", "(units,)")
        self.bias = bias
        self.activation = activations.check_name(activation, f"Dense {name!r}")
        self.hard_sigmoid = hard_sigmoid
        self.input_size, self.units = kernel.shape

    def config(self):
        return {"units": self.units, "activation": self.activation,
                "hard_sigmoid": self.hard_sigmoid, "use_bias": self.bias is not None}

    def tensors(self):
        return {"kernel": self.kernel, "bias": self.bias}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, tensors["kernel"], tensors.get("bias"), config["activation"],
                   config.get("hard_sigmoid", "keras3"))

    def apply(self, x):
        from . import activations

        if x.shape[-1] != self.input_size:
            raise ValueError(f"Dense {self.name!r} expects {self.input_size} features on the "
                             f"last axis, got shape {x.shape}")
        y = np.matmul(x.astype(self.dtype, copy=False), self.kernel)
        if self.bias is not None:
            y += self.bias
        return activations.apply(self.activation, y, self.hard_sigmoid)

    def call(self, inputs, masks, run):
        return [self.apply(inputs[0])], [masks[0]]


class Activation(Layer):
    kind = "activation"

    def __init__(self, name, activation, hard_sigmoid="keras3"):
        super().__init__(name)
        from . import activations

        self.activation = activations.check_name(activation, f"Activation {name!r}")
        self.hard_sigmoid = hard_sigmoid

    def config(self):
        return {"activation": self.activation, "hard_sigmoid": self.hard_sigmoid}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, config["activation"], config.get("hard_sigmoid", "keras3"))

    def call(self, inputs, masks, run):
        from . import activations

        return [activations.apply(self.activation, inputs[0], self.hard_sigmoid)], [masks[0]]


class Identity(Layer):
    """Dropout, SpatialDropout1D, GaussianNoise...: identity at inference."""

    kind = "identity"

    def __init__(self, name, original_class="Dropout"):
        super().__init__(name)
        self.original_class = original_class

    def config(self):
        return {"original_class": self.original_class}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, config.get("original_class", "Dropout"))

    def call(self, inputs, masks, run):
        return [inputs[0]], [masks[0]]


class Masking(Layer):
    """Keras Masking: a step whose features all equal mask_value is masked,
    and its features are zeroed."""

    kind = "masking"

    def __init__(self, name, mask_value=0.0):
        super().__init__(name)
        self.mask_value = float(mask_value)

    def config(self):
        return {"mask_value": self.mask_value}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, config["mask_value"])

    def call(self, inputs, masks, run):
        x = inputs[0]
        mask = np.any(x != self.mask_value, axis=-1)
        if masks[0] is not None:
            mask &= masks[0]
        return [x * mask[..., None].astype(x.dtype)], [mask]


class NotEqual(Layer):
    """A boolean mask: input != value (Keras 3 writes the mask of
    Embedding(mask_zero=True) in functional models as this op)."""

    kind = "not_equal"

    def __init__(self, name, value=0):
        super().__init__(name)
        self.value = value

    def config(self):
        return {"value": self.value}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, config["value"])

    def call(self, inputs, masks, run):
        return [np.asarray(inputs[0]) != self.value], [None]


class ReduceAny(Layer):
    """A boolean reduction: any(input, axis) (Keras 3 writes the mask of
    Masking in functional models as NotEqual, then Any over the features)."""

    kind = "any"

    def __init__(self, name, axis=-1, keepdims=False):
        super().__init__(name)
        self.axis, self.keepdims = int(axis), bool(keepdims)

    def config(self):
        return {"axis": self.axis, "keepdims": self.keepdims}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, config["axis"], config.get("keepdims", False))

    def call(self, inputs, masks, run):
        return [np.any(inputs[0], axis=self.axis, keepdims=self.keepdims)], [None]


class Embedding(Layer):
    """Token ids (batch, time) -> vectors; mask_zero masks id 0."""

    kind = "embedding"

    def __init__(self, name, table, mask_zero=False):
        super().__init__(name)
        table = np.asarray(table)
        if table.ndim != 2 or table.dtype.kind != "f" or 0 in table.shape:
            raise ValueError(f"Embedding {name!r}: table must be a non-empty 2-D float "
                             f"(vocab, dim) array, got {table.dtype} {table.shape}")
        self.table = np.ascontiguousarray(table, compute_dtype(table.dtype))
        self.mask_zero = bool(mask_zero)

    def config(self):
        return {"input_dim": self.table.shape[0], "output_dim": self.table.shape[1],
                "mask_zero": self.mask_zero}

    def tensors(self):
        return {"table": self.table}

    @classmethod
    def from_saved(cls, name, config, tensors):
        return cls(name, tensors["table"], config["mask_zero"])

    def call(self, inputs, masks, run):
        ids = inputs[0]
        if ids.dtype.kind not in "iu":
            if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
                ids = ids.astype(np.int64)
            else:
                raise TypeError(f"Embedding {self.name!r} takes integer token ids, got {ids.dtype}")
        vocab = self.table.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"Embedding {self.name!r}: token ids must lie in [0, {vocab - 1}], "
                             f"got min {ids.min()} and max {ids.max()}")
        mask = ids != 0 if self.mask_zero else None
        if masks[0] is not None:
            mask = masks[0] if mask is None else mask & masks[0]
        return [self.table[ids]], [mask]


class Recurrent(Layer):
    """A GRU node of a model: one direction, or two (Keras Bidirectional,
    PyTorch bidirectional=True) merged by merge_mode.

    cells: one dict per direction with W (1, 3H, I), R (1, 3H, H), B (1, 6H) or
    None, linear_before_reset, activations, hard_sigmoid; the second direction
    runs backwards.  go_backwards (one direction only, Keras): run backwards and
    return the sequence in processing order.  zero_masked_outputs: masked steps
    output 0 instead of repeating the previous output (Keras does so inside
    Bidirectional with return_sequences).
    """

    kind = "gru"

    def __init__(self, name, cells, *, return_sequences=True, go_backwards=False,
                 merge_mode="concat", zero_masked_outputs=False):
        super().__init__(name)
        if not 1 <= len(cells) <= 2:
            raise ValueError(f"GRU {name!r}: one or two directions, got {len(cells)}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"GRU {name!r}: merge_mode must be one of {MERGE_MODES}, "
                             f"got {merge_mode!r}")
        if go_backwards and len(cells) != 1:
            raise ValueError(f"GRU {name!r}: go_backwards applies to one direction")
        self.cells = [dict(c) for c in cells]
        self.return_sequences = bool(return_sequences)
        self.go_backwards = bool(go_backwards)
        self.merge_mode = merge_mode if len(cells) == 2 else "concat"
        self.zero_masked_outputs = bool(zero_masked_outputs)
        self.output_count = 2 if len(cells) == 2 and merge_mode is None else 1
        self.engines = self._build_engines()
        self.hidden_sizes = [c["W"].shape[1] // 3 for c in self.cells]
        self.input_size = self.cells[0]["W"].shape[2]
        for cell in self.cells:
            if cell["W"].shape[2] != self.input_size:
                raise ValueError(f"GRU {name!r}: both directions must take the same input size")

    def _build_engines(self) -> list:
        """One engine layer for both directions when they agree on every
        option, so the core runs them in one call; otherwise one each."""

        def options(cell):
            return dict(linear_before_reset=cell.get("linear_before_reset", True),
                        activations=tuple(cell.get("activations", ("sigmoid", "tanh"))),
                        hard_sigmoid=cell.get("hard_sigmoid", "keras3"))

        def arr(cell, key):
            return None if cell.get(key) is None else np.asarray(cell[key])

        reverse = len(self.cells) == 2 or self.go_backwards
        if len(self.cells) == 2:
            a, b = self.cells
            same = (options(a) == options(b) and np.shape(a["W"]) == np.shape(b["W"])
                    and np.shape(a["R"]) == np.shape(b["R"])
                    and (a.get("B") is None) == (b.get("B") is None)
                    and np.asarray(a["W"]).dtype == np.asarray(b["W"]).dtype)
            if same:
                B = None if a.get("B") is None else np.concatenate([arr(a, "B"), arr(b, "B")])
                return [GRU(np.concatenate([arr(a, "W"), arr(b, "W")]),
                            np.concatenate([arr(a, "R"), arr(b, "R")]), B,
                            direction="bidirectional", **options(a))]
            return [GRU(arr(c, "W"), arr(c, "R"), arr(c, "B"),
                        direction="reverse" if i else "forward", **options(c))
                    for i, c in enumerate(self.cells)]
        cell = self.cells[0]
        return [GRU(arr(cell, "W"), arr(cell, "R"), arr(cell, "B"),
                    direction="reverse" if reverse else "forward", **options(cell))]

    @property
    def dtype(self):
        return self.engines[0].dtype

    @property
    def output_size(self) -> int:
        if len(self.cells) == 2 and self.merge_mode == "concat":
            return sum(self.hidden_sizes)
        return self.hidden_sizes[0]

    @property
    def state_shape(self) -> tuple:
        """(D, H) of this node's state, per batch row."""
        return (len(self.cells), self.hidden_sizes[0])

    def config(self):
        return {
            "cells": [{k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in c.items() if k not in ("W", "R", "B")} | {"use_bias": c.get("B") is not None}
                      for c in self.cells],
            "return_sequences": self.return_sequences,
            "go_backwards": self.go_backwards,
            "merge_mode": self.merge_mode,
            "zero_masked_outputs": self.zero_masked_outputs,
        }

    def tensors(self):
        out = {}
        for i, cell in enumerate(self.cells):
            for key in ("W", "R", "B"):
                out[f"cell{i}.{key}"] = None if cell.get(key) is None else np.asarray(cell[key])
        return out

    @classmethod
    def from_saved(cls, name, config, tensors):
        cells = []
        for i, cell_config in enumerate(config["cells"]):
            cell = {k: v for k, v in cell_config.items() if k != "use_bias"}
            for key in ("W", "R", "B"):
                cell[key] = tensors.get(f"cell{i}.{key}")
            if cell["W"] is None or cell["R"] is None:
                raise ValueError(f"GRU {name!r}: tensors cell{i}.W / cell{i}.R are missing")
            if cell_config.get("use_bias", True) and cell["B"] is None:
                raise ValueError(f"GRU {name!r}: tensor cell{i}.B is missing")
            cells.append(cell)
        return cls(name, cells, return_sequences=config["return_sequences"],
                   go_backwards=config["go_backwards"], merge_mode=config["merge_mode"],
                   zero_masked_outputs=config.get("zero_masked_outputs", False))

    def split_state(self, state):
        """A (D, B, H) state (or a list per direction) -> one (1, B, H) or
        (D, B, H) array per engine layer."""
        if state is None:
            return [None] * len(self.engines)
        if len(self.engines) == 1:
            return [state]
        return [state[i : i + 1] for i in range(len(self.engines))]

    def call(self, inputs, masks, run):
        x, mask = inputs[0], masks[0]
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"GRU {self.name!r} expects input (batch, time, {self.input_size}), "
                             f"got shape {x.shape}")
        batch, steps = x.shape[:2]
        lengths = run.lengths
        h0 = run.initial_states.get(self.name)
        if h0 is not None:
            expected = (len(self.cells), batch, self.hidden_sizes[0])
            if len(set(self.hidden_sizes)) == 1 and np.shape(h0) != expected:
                raise ValueError(f"initial state of GRU {self.name!r} must have shape {expected} "
                                 f"(directions, batch, units), got {np.shape(h0)}")
        ys, states = [], []
        for engine, engine_h0 in zip(self.engines, self.split_state(h0)):
            y, h_n = engine(x, initial_state=engine_h0, lengths=lengths, mask=mask,
                            num_threads=run.num_threads)
            ys.append(y)
            states.append(h_n)
        run.final_states[self.name] = states[0] if len(states) == 1 else (
            np.concatenate(states) if len(set(self.hidden_sizes)) == 1 else states)
        y = ys[0] if len(ys) == 1 else np.concatenate(ys, axis=-1)
        if self.zero_masked_outputs and mask is not None:
            y = y * mask[..., None].astype(y.dtype)

        if self.return_sequences:
            if self.go_backwards:
                y = y[:, ::-1]
            out_mask = mask
        else:
            out_mask = None
            if lengths is not None or steps == 0:
                # PyTorch: the state at each row's last valid step
                y = np.concatenate([s[d] for s in states for d in range(s.shape[0])], axis=-1) \
                    if len(states) > 1 or states[0].shape[0] > 1 else states[0][0]
            else:
                # Keras: the output of the last processing step of each direction
                H0 = self.hidden_sizes[0]
                if len(self.cells) == 2:
                    y = np.concatenate([y[:, -1, :H0], y[:, 0, H0:]], axis=-1)
                else:
                    y = y[:, 0] if self.go_backwards else y[:, -1]
        if len(self.cells) == 2:
            H0 = self.hidden_sizes[0]
            forward, backward = y[..., :H0], y[..., H0:]
            if self.merge_mode is None:
                return [forward, backward], [out_mask, out_mask]
            y = {"concat": lambda: y, "sum": lambda: forward + backward,
                 "mul": lambda: forward * backward,
                 "ave": lambda: (forward + backward) / 2}[self.merge_mode]()
        return [np.ascontiguousarray(y)], [out_mask]


MODEL_LAYERS = {cls.kind: cls for cls in (Dense, Activation, Identity, Masking, NotEqual, ReduceAny,
                                          Embedding, Recurrent)}
