"""Stated forwards: a state dict's forward() written out as a list, in order.

A state dict holds weights, not forward(), so the user says what forward()
does: module prefixes of the state dict ("gru", "gru1", "fc",
"encoder.rnn"), activation names ("relu", "tanh", "softmax", ...) and
selectors:

    "last_step"     out[:, -1]: the output at the last time step
    "final_state"   h_n[-1]: the last GRU layer's final state (its last direction)
    "final_states"  torch.cat([h_n[-2], h_n[-1]], 1) for a bidirectional GRU
                    (h_n[-1] otherwise): each direction's final state, side by side
    "every_step"    keep the whole sequence (the default; says so explicitly)
    "dropout"       identity at inference (skipped)

e.g. forward=["gru", "last_step", "relu", "fc"] or ["gru1", "gru2", "last_step", "fc"].
Consecutive GRU modules chain.  A module is read from its tensors: an nn.GRU
(weight_ih_l0, ...), an nn.Linear (2-D weight, optional bias), an
nn.Embedding (a 2-D weight with no bias named *emb*, or an Embedding module
in a whole-module pickle), an nn.LayerNorm (1-D weight and bias; eps 1e-5,
PyTorch's default, since a state dict does not store it).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from ..spec import activations
from ..spec.extra_layers import LayerNormalization, Select
from ..spec.graph import INPUT, Input, ModelSpec, Node
from ..spec.layers import Activation, Concatenate, Dense, Embedding, Identity, compute_dtype
from .torch_state import find_gru_stacks, gru_nodes

SELECTORS = ("last_step", "final_state", "final_states", "every_step", "dropout")


def parse_forward(forward) -> list:
    """A forward list from a list/tuple or a comma-separated string."""
    items = forward.split(",") if isinstance(forward, str) else list(forward)
    items = [str(item).strip() for item in items if str(item).strip()]
    if not items:
        raise ValueError("forward= is empty; list the modules, activations and selectors of "
                         "forward() in order, e.g. ['gru', 'last_step', 'fc']")
    return items


def _safe_name(prefix: str) -> str:
    return re.sub(r"\W", "_", prefix) or "module"


class ForwardBuilder:
    """Turns a stated forward into a ModelSpec, item by item."""

    def __init__(self, state: dict, module_kinds: dict, error):
        self.state = state
        self.module_kinds = module_kinds  # prefix -> class name, from a whole-module pickle
        self.error = error  # the converter's error class
        self.nodes: list = []
        self.used: set = set()
        self.current = (INPUT, 0)
        self.kind = None  # what flows now: "ids", "sequence", "vector"
        self.size = None  # its last axis
        self.last_gru = None  # the last GRU node: (name, directions, hidden size)
        self.model_input = None

    def _add(self, layer, inputs=None) -> None:
        names = {n.layer.name for n in self.nodes}
        if layer.name in names:
            raise self.error(f"forward= uses {layer.name!r} twice; gru_infer reads each module "
                             "once")
        self.nodes.append(Node(layer, tuple(inputs or (self.current,))))
        self.current = (layer.name, 0)

    def _start(self, kind: str, size, dtype="float32") -> None:
        if self.model_input is None:
            shape = (None,) if kind == "ids" else (None, size)
            self.model_input = Input(INPUT, shape, dtype)
            self.kind, self.size = "ids" if kind == "ids" else "sequence", size

    def keys_of(self, prefix: str) -> dict:
        return {k[len(prefix) + 1:]: v for k, v in self.state.items() if k.startswith(prefix + ".")}

    def item(self, item: str, position: int, items: list) -> None:
        if item in SELECTORS:
            self.selector(item)
        elif item in activations.ACTIVATIONS or item == "hard_sigmoid":
            name = activations.check(item, "forward=", hard_sigmoid="keras3")
            if self.model_input is None:
                raise self.error(f"forward= starts with the activation {item!r}; it must start "
                                 "with a module of the state dict")
            self._add(Activation(f"{item}_{position}", name))
        else:
            self.module(item, position)

    def selector(self, item: str) -> None:
        if item in ("every_step", "dropout"):
            return
        if self.last_gru is None or self.kind != "sequence":
            raise self.error(f"forward= selector {item!r} must follow a GRU module's sequence "
                             "output")
        if item == "last_step":
            self._add(Select(f"last_step_{len(self.nodes)}", 0, -1))
        else:
            name, directions, hidden = self.last_gru
            states = [(name, 1 + d) for d in range(directions)]
            if item == "final_state" or directions == 1:
                self.current = states[-1]
            else:
                self._add(Concatenate(f"final_states_{len(self.nodes)}", -1), states)
            hidden *= directions if item == "final_states" else 1
            self.size = hidden
        self.kind = "vector"

    def resolve(self, prefix: str) -> str:
        """The state dict's prefix for a module the user named: itself, or the one prefix
        that ends with it (a training checkpoint keeps the model's state dict under a key
        such as "model_state_dict.", which forward() does not mention)."""
        if prefix == "." or self.keys_of(prefix):
            return prefix
        found = set()
        for k in self.state:
            at = k.find("." + prefix + ".")
            if at >= 0:
                found.add(k[:at + 1 + len(prefix)])
        if len(found) > 1:
            raise self.error(f"forward= item {prefix!r} names several modules of the state dict: "
                             f"{sorted(found)}; give the whole prefix")
        return found.pop() if found else prefix

    def module(self, item: str, position: int) -> None:
        prefix = self.resolve(item)
        tensors = self.keys_of(prefix)
        key = "" if prefix == "." else prefix + "."  # "." names a bare nn.GRU's state dict
        stack = next((s for s in find_gru_stacks(self.state) if s.prefix == key), None)
        if stack is not None:
            self.gru(stack, item)
            return
        if not tensors:
            if "drop" in prefix.lower():
                self._add(Identity(_safe_name(prefix), "Dropout"))
                return
            modules = sorted({k.rsplit(".", 1)[0] for k in self.state if "." in k})
            raise self.error(f"forward= item {prefix!r} is not a module of the state dict, an "
                             f"activation or a selector {SELECTORS}; modules: {modules[:20]}")
        weight, bias = tensors.get("weight"), tensors.get("bias")
        self.used.update(f"{prefix}.{k}" for k in tensors)
        dtype = compute_dtype(weight.dtype) if weight is not None else np.float32
        name = _safe_name(item)
        kind = self.module_kinds.get(prefix + ".")
        if weight is not None and weight.ndim == 2 and bias is None and (
                kind == "Embedding" or (kind is None and "emb" in prefix.lower())):
            if self.model_input is not None:
                raise self.error(f"forward=: the embedding {prefix!r} must come first")
            self._start("ids", None, "int64")
            self._add(Embedding(name, np.asarray(weight, dtype)))
            self.kind, self.size = "sequence", weight.shape[1]
        elif weight is not None and weight.ndim == 2:
            self._start("sequence", weight.shape[1])
            if self.size not in (None, weight.shape[1]):
                raise self.error(f"forward=: Linear {prefix!r} takes {weight.shape[1]} features, "
                                 f"but its input has {self.size}")
            self._add(Dense(name, np.asarray(weight, dtype).T,
                            None if bias is None else np.asarray(bias, dtype)))
            self.size = weight.shape[0]
        elif weight is not None and weight.ndim == 1 and set(tensors) <= {"weight", "bias"}:
            self._start("sequence", weight.shape[0])
            self._add(LayerNormalization(name, np.asarray(weight, dtype),
                                         None if bias is None else np.asarray(bias, dtype),
                                         1e-5))
        elif weight is not None and weight.ndim == 3:
            raise self.error(f"forward=: {prefix!r} is a convolution, whose stride, padding and "
                             "dilation a state dict does not hold; export the model with "
                             "torch.export and convert the .pt2 archive")
        else:
            raise self.error(f"forward=: cannot tell what module {prefix!r} is from its tensors "
                             f"{ {k: tuple(v.shape) for k, v in tensors.items()} }")

    def gru(self, stack, prefix: str) -> None:
        self._start("sequence", stack.input_size)
        if self.kind != "sequence" or self.size not in (None, stack.input_size):
            raise self.error(f"forward=: the GRU {prefix!r} takes sequences of "
                             f"{stack.input_size} features, but its input is a {self.kind} of "
                             f"{self.size}")
        layers = gru_nodes(self.state, stack, False, _safe_name(prefix.strip(".") or "gru"))
        self.used.update(stack.keys())
        last = replace(layers[-1], return_state=True)  # h_n for the selectors that want it
        for layer in layers[:-1] + [last]:
            self._add(layer)
        self.current = (last.name, 0)
        directions = 2 if stack.bidirectional else 1
        self.last_gru = (last.name, directions, stack.hidden_size)
        self.size = directions * stack.hidden_size

    def spec(self, *, time_major: bool, source: dict) -> ModelSpec:
        if self.model_input is None:
            raise self.error("forward= names no module of the state dict")
        return ModelSpec((self.model_input,), tuple(self.nodes), (self.current,),
                         time_major=time_major, source=source)


def build_forward(state: dict, forward, *, batch_first=True, module_kinds=None, error=ValueError,
                  source=None) -> tuple:
    """(ModelSpec, the module keys it used) for a stated forward."""
    items = parse_forward(forward)
    builder = ForwardBuilder(state, module_kinds or {}, error)
    for position, item in enumerate(items):
        builder.item(item, position, items)
    spec = builder.spec(time_major=not batch_first,
                        source=dict(source or {}, forward=items, forward_assumed=False))
    return spec, builder.used
