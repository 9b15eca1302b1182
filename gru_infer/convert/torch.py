"""PyTorch checkpoints and live modules -> gru_infer Model.

A state dict holds weights, not structure, so the structure is inferred from
key names and shapes: every ``<prefix>weight_ih_l<k>[_reverse]`` family is an
``nn.GRU`` stack; ``nn.Linear`` layers (``<p>weight`` (out, in) with
``<p>bias``) whose input size follows on from the stack's output form the
head, applied to every timestep by default.  What a state dict cannot say
(the head's activation, head on the last step only, which stack when there
are several) comes in as options.  Ambiguity is an error listing candidates.

PyTorch packs gates r, z, n; the canonical form is z, r, h (ONNX).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..layers import Activation, Dense, Recurrent
from ..model import Model
from .torch_file import PickledObject, flatten_tensors, read_torch_file

GRU_KEY = re.compile(r"^(?P<prefix>.*?)weight_ih_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
HEAD_ON = ("every_step", "last_step")


class TorchConversionError(ValueError):
    """A state dict that does not map onto a GRU model, and why."""


@dataclass
class GRUStack:
    prefix: str
    num_layers: int
    bidirectional: bool
    bias: bool
    input_size: int
    hidden_size: int

    def describe(self) -> str:
        return (f"nn.GRU at {self.prefix or '(top level)'!r}: input_size={self.input_size}, "
                f"hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, bias={self.bias}")


@dataclass
class LinearLayer:
    prefix: str
    in_features: int
    out_features: int
    bias: bool
    order: int = field(default=0, compare=False)


def find_gru_stacks(state: dict) -> list:
    """Every nn.GRU family of keys in the state dict, checked for consistency."""
    layers_by_prefix: dict = {}
    for key in state:
        match = GRU_KEY.match(key)
        if match:
            layers_by_prefix.setdefault(match["prefix"], set()).add(
                (int(match["layer"]), bool(match["reverse"])))
    stacks = []
    for prefix, found in layers_by_prefix.items():
        num_layers = max(k for k, _ in found) + 1
        bidirectional = any(r for _, r in found)
        hh = state.get(f"{prefix}weight_hh_l0")
        ih = state[f"{prefix}weight_ih_l0"]
        if hh is None or hh.ndim != 2 or ih.ndim != 2:
            raise TorchConversionError(f"nn.GRU at {prefix!r}: weight_hh_l0 is missing or not 2-D")
        hidden = hh.shape[1]
        stack = GRUStack(prefix, num_layers, bidirectional, f"{prefix}bias_ih_l0" in state,
                         ih.shape[1], hidden)
        D = 2 if bidirectional else 1
        for k in range(num_layers):
            for suffix in ("", "_reverse")[:D]:
                expected_in = stack.input_size if k == 0 else D * hidden
                shapes = {f"weight_ih_l{k}{suffix}": (3 * hidden, expected_in),
                          f"weight_hh_l{k}{suffix}": (3 * hidden, hidden)}
                if stack.bias:
                    shapes[f"bias_ih_l{k}{suffix}"] = (3 * hidden,)
                    shapes[f"bias_hh_l{k}{suffix}"] = (3 * hidden,)
                for name, shape in shapes.items():
                    array = state.get(prefix + name)
                    if array is None or array.shape != shape:
                        got = "missing" if array is None else f"shape {array.shape}"
                        raise TorchConversionError(
                            f"nn.GRU at {prefix!r}: {prefix + name} is {got}; expected {shape} "
                            f"for a {num_layers}-layer GRU of hidden size {hidden}")
        stacks.append(stack)
    return stacks


def find_linears(state: dict, gru_prefixes) -> list:
    linears = []
    for order, (key, array) in enumerate(state.items()):
        if not key.endswith("weight") or array.ndim != 2 or array.dtype.kind != "f":
            continue
        prefix = key[: -len("weight")]
        if any(prefix.startswith(p) and p for p in gru_prefixes) or prefix in gru_prefixes:
            continue
        if prefix and not prefix.endswith("."):
            continue
        bias = state.get(prefix + "bias")
        if bias is not None and bias.shape != (array.shape[0],):
            continue
        linears.append(LinearLayer(prefix, array.shape[1], array.shape[0], bias is not None, order))
    return linears


def _to_canonical_gates(block: np.ndarray) -> np.ndarray:
    """PyTorch (r, z, n) blocks on axis 0 -> canonical (z, r, h)."""
    r, z, n = np.split(block, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def _compute_dtype(array: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if array.dtype == np.float64 else np.dtype(np.float32)


def gru_nodes(state: dict, stack: GRUStack, last_step_only: bool, name: str) -> list:
    """One Recurrent node per layer of the stack."""
    dtype = _compute_dtype(state[f"{stack.prefix}weight_ih_l0"])
    nodes = []
    for k in range(stack.num_layers):
        cells = []
        for suffix in ("", "_reverse")[: 2 if stack.bidirectional else 1]:
            get = lambda n: np.asarray(state[f"{stack.prefix}{n}_l{k}{suffix}"], dtype)  # noqa: E731
            B = None
            if stack.bias:
                B = np.concatenate([_to_canonical_gates(get("bias_ih")),
                                    _to_canonical_gates(get("bias_hh"))])[None]
            cells.append(dict(W=_to_canonical_gates(get("weight_ih"))[None],
                              R=_to_canonical_gates(get("weight_hh"))[None], B=B,
                              linear_before_reset=True, activations=("sigmoid", "tanh")))
        last = k == stack.num_layers - 1
        nodes.append(Recurrent(f"{name}_l{k}" if stack.num_layers > 1 else name, cells,
                               return_sequences=not (last and last_step_only)))
    return nodes


def head_chain(linears: list, start_size: int) -> list:
    """The Linear layers that follow the GRU output, in registration order."""
    chain, size, used = [], start_size, set()
    while True:
        fitting = [lin for lin in linears if lin.in_features == size and lin.prefix not in used]
        if not fitting:
            return chain
        if len(fitting) > 1 and not chain:
            names = ", ".join(f"{lin.prefix.rstrip('.')} ({lin.in_features}->{lin.out_features})"
                              for lin in fitting)
            raise TorchConversionError(
                f"several nn.Linear layers could follow the GRU output of size {start_size}: "
                f"{names}; choose with head=[...] (or head=[] for none)")
        chosen = min(fitting, key=lambda lin: lin.order)
        chain.append(chosen)
        used.add(chosen.prefix)
        size = chosen.out_features


def convert_state_dict(state: dict, *, prefix=None, head=None, head_activation="linear",
                       hidden_activation=None, head_on="every_step", batch_first=True,
                       source=None) -> Model:
    """A Model from a flat name -> array state dict.

    prefix: the key prefix of the GRU stack to use, when there are several.
    head: the Linear layers' key prefixes, in order; None finds them (every
    Linear whose input size follows on), [] means none.  head_activation: the
    activation after the last Linear (sigmoid, softmax, ...); hidden_activation:
    between Linears, required when there are several.  head_on: "every_step"
    (the Linear on every timestep) or "last_step" (on the state at each row's
    last valid step: the last layer's h_n, directions concatenated).
    batch_first=False makes a time-major model: (time, batch, ...) in and out.
    """
    if head_on not in HEAD_ON:
        raise TorchConversionError(f"head_on must be one of {HEAD_ON}, got {head_on!r}")
    state = {k: np.asarray(v) for k, v in state.items()}
    stacks = find_gru_stacks(state)
    if not stacks:
        raise TorchConversionError("no nn.GRU weights (weight_ih_l0, ...) found in the state dict")
    if prefix is not None:
        wanted = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        chosen = [s for s in stacks if s.prefix == wanted]
        if not chosen:
            raise TorchConversionError(
                f"no nn.GRU at prefix {prefix!r}; found: "
                + "; ".join(s.prefix.rstrip(".") or "(top level)" for s in stacks))
        stack = chosen[0]
    elif len(stacks) > 1:
        raise TorchConversionError(
            "the state dict holds several GRU stacks; choose one with prefix=...: "
            + "; ".join(s.describe() for s in stacks))
    else:
        stack = stacks[0]

    D = 2 if stack.bidirectional else 1
    linears = find_linears(state, [s.prefix for s in stacks])
    if head is None:
        chain = head_chain(linears, D * stack.hidden_size)
    else:
        by_prefix = {lin.prefix.rstrip("."): lin for lin in find_linears(state, [])}
        chain = []
        for name in head:
            if name.rstrip(".") not in by_prefix:
                raise TorchConversionError(f"head {name!r} is not an nn.Linear in the state "
                                           f"dict; found: {sorted(by_prefix)}")
            chain.append(by_prefix[name.rstrip(".")])
    if len(chain) > 1 and hidden_activation is None:
        raise TorchConversionError(
            "the head has several Linear layers (" + ", ".join(lin.prefix.rstrip(".") for lin in chain)
            + "); a state dict does not say the activation between them: pass hidden_activation=")

    name = stack.prefix.rstrip(".").replace(".", "_") or "gru"
    layers = gru_nodes(state, stack, head_on == "last_step", name)
    dtype = _compute_dtype(state[f"{stack.prefix}weight_ih_l0"])
    size = D * stack.hidden_size
    for i, lin in enumerate(chain):
        if lin.in_features != size:
            raise TorchConversionError(f"Linear {lin.prefix.rstrip('.')!r} takes {lin.in_features} "
                                       f"features, but its input has {size}")
        last = i == len(chain) - 1
        weight = np.asarray(state[lin.prefix + "weight"], dtype)
        bias = state.get(lin.prefix + "bias")
        layers.append(Dense(lin.prefix.rstrip(".").replace(".", "_") or "linear", weight.T,
                            None if bias is None else np.asarray(bias, dtype),
                            head_activation if last else hidden_activation))
        size = lin.out_features
    if not chain and head_activation not in (None, "linear"):
        layers.append(Activation("activation", head_activation))
    return Model.sequential(layers, input_shape=(None, stack.input_size), source=source or {},
                            time_major=not batch_first)


def convert_safetensors_state_dict(path, tensors: dict, *, batch_first=True, **options) -> Model:
    """A Model from a PyTorch state dict saved with safetensors
    (safetensors.torch.save_file(model.state_dict(), path))."""
    source = {"framework": "pytorch", "format": ".safetensors",
              "file": os.path.basename(os.fspath(path))}
    try:
        return convert_state_dict(tensors, batch_first=True if batch_first is None else batch_first,
                                  source=source, **options)
    except TorchConversionError as error:
        raise TorchConversionError(f"{os.fspath(path)}: {error}") from None


def _module_batch_first(obj, prefix: str):
    """batch_first of the pickled nn.GRU at prefix in a whole-module pickle,
    or None when the file holds a state dict (which does not say)."""
    for part in [p for p in prefix.split(".") if p]:
        if not isinstance(obj, PickledObject) or not obj.is_module:
            return None
        obj = obj.attributes.get("_modules", {}).get(part)
    if isinstance(obj, PickledObject) and isinstance(obj.attributes.get("batch_first"), bool):
        return obj.attributes["batch_first"]
    return None


def convert_torch(path, *, prefix=None, head=None, head_activation="linear",
                  hidden_activation=None, head_on="every_step", batch_first=None) -> Model:
    """A Model from a torch.save file (state dict, training checkpoint or
    whole module), read without torch and without running its pickle.
    batch_first: the input layout; None takes it from a whole-module pickle's
    nn.GRU, else True."""
    obj = read_torch_file(path)
    try:
        state = load_tensors(obj)
    except ValueError as error:
        raise TorchConversionError(f"{os.fspath(path)}: {error}") from None
    source = {"framework": "pytorch", "format": ".pt", "file": os.path.basename(os.fspath(path))}
    try:
        if batch_first is None:
            stacks = find_gru_stacks(state)
            chosen = [s for s in stacks if prefix is None or s.prefix.rstrip(".") == prefix.rstrip(".")]
            found = _module_batch_first(obj, chosen[0].prefix) if len(chosen) == 1 else None
            batch_first = True if found is None else found
        return convert_state_dict(state, prefix=prefix, head=head,
                                  head_activation=head_activation or "linear",
                                  hidden_activation=hidden_activation, head_on=head_on,
                                  batch_first=batch_first, source=source)
    except TorchConversionError as error:
        raise TorchConversionError(f"{os.fspath(path)}: {error}") from None


def load_tensors(obj) -> dict:
    """Flat name -> array of a loaded checkpoint; an error when it has none."""
    state = flatten_tensors(obj)
    if not state:
        raise TorchConversionError("the checkpoint holds no named tensors")
    return state


def describe_torch_file(path) -> str:
    """What gru-infer info shows for a .pt file: the GRU stacks and Linear
    layers found, and how many other tensors there are."""
    state = load_tensors(read_torch_file(path))
    stacks = find_gru_stacks(state)
    linears = find_linears(state, [s.prefix for s in stacks])
    lines = [f"{os.fspath(path)}: PyTorch checkpoint, {len(state)} tensors, "
             f"{sum(int(v.size) for v in state.values()):,} values"]
    lines += [f"  {s.describe()}" for s in stacks] or ["  no nn.GRU weights found"]
    lines += [f"  nn.Linear at {lin.prefix.rstrip('.')!r}: {lin.in_features} -> {lin.out_features}"
              f"{'' if lin.bias else ' (no bias)'}" for lin in linears]
    gru_keys = sum(1 for k in state if any(k.startswith(s.prefix) and GRU_KEY.match(k)
                                           or k.startswith(s.prefix + "weight_hh")
                                           or k.startswith(s.prefix + "bias_") for s in stacks))
    other = len(state) - gru_keys - sum(1 + lin.bias for lin in linears)
    if other > 0:
        lines.append(f"  {other} other tensors (optimizer state, buffers, ...) are not used")
    return "\n".join(lines)


_ACTIVATION_MODULES = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "Softmax": "softmax",
                       "LogSoftmax": "log_softmax", "ELU": "elu", "SELU": "selu", "GELU": "gelu",
                       "SiLU": "silu", "Softplus": "softplus", "Mish": "mish",
                       "Hardswish": "hard_silu", "ReLU6": "relu6", "Identity": "linear"}


def from_torch(module, **options) -> Model:
    """Convert a live torch module (an nn.GRU, or a module / nn.Sequential of
    nn.GRU + nn.Linear + activations) without saving it first.  The head
    activation is read from activation modules registered after the last
    Linear unless given; see convert_state_dict for the options."""
    import torch  # only here: the converter itself never needs torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    state = {k: v.detach().cpu().float().numpy() if v.dtype == torch.bfloat16
             else v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    if "batch_first" not in options:
        grus = [m for m in module.modules() if isinstance(m, torch.nn.GRU)]
        if len(grus) == 1:
            options["batch_first"] = grus[0].batch_first
    if "head_activation" not in options:
        kinds = [(type(m).__name__) for _, m in module.named_modules()]
        last_linear = max((i for i, k in enumerate(kinds) if k == "Linear"), default=None)
        if last_linear is not None:
            after = [k for k in kinds[last_linear + 1:] if k in _ACTIVATION_MODULES]
            if after:
                options["head_activation"] = _ACTIVATION_MODULES[after[0]]
    return convert_state_dict(state, source={"framework": "pytorch",
                                             "version": torch.__version__, "format": "module"},
                              **options)
