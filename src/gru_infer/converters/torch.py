"""PyTorch checkpoints and live modules -> gru_infer Model.

A state dict holds weights, not structure, so the structure is inferred from
key names, shapes and registration order: a ``<prefix>weight_ih_l<k>[_reverse]``
family whose recurrent weights have 3H rows is an ``nn.GRU`` stack; the
``nn.Linear`` layers (``<p>weight`` (out, in), ``<p>bias``) registered after it
whose sizes follow on from its output form the head, applied to every
timestep by default; an embedding table registered before it whose width is
its input size (a weight named ``*emb*``) makes the model take token ids.
Whole-module pickles and live modules also tell the activation modules and
``batch_first``.  What a file cannot say (the head's activation, the head on
the last step only, which stack) comes in as options.  Ambiguity is an error
listing the candidates, and so is any model tensor the conversion would leave
unused (strict=False converts anyway).

PyTorch packs gates r, z, n; the canonical form is z, r, h (ONNX).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError, FormatError
from ..spec.graph import INPUT, Input, ModelSpec, sequential
from ..spec.layers import Activation, Dense, Embedding, GRUCell, Recurrent, compute_dtype
from .torch_file import PickledObject, flatten_tensors, read_torch_file

RNN_KEY = re.compile(r"^(?P<prefix>.*?)weight_ih_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
HEAD_ON = ("every_step", "last_step")
RNN_KINDS = {1: "nn.RNN", 3: "nn.GRU", 4: "nn.LSTM"}  # gate blocks in weight_hh
# Subtrees of training checkpoints that are not the model.
NOT_MODEL = re.compile(r"(^|\.)(optimizer\w*|optim|scheduler\w*|lr_scheduler\w*|"
                       r"callbacks|loops|scaler|grad_scaler)(\.|$)")
ACTIVATION_MODULES = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "Softmax": "softmax",
                      "LogSoftmax": "log_softmax", "ELU": "elu", "SELU": "selu", "GELU": "gelu",
                      "SiLU": "silu", "Softplus": "softplus", "Mish": "mish",
                      "Hardswish": "hard_silu", "ReLU6": "relu6", "Softsign": "softsign"}


class TorchConversionError(ConversionError):
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
        return (f"nn.GRU at {self.prefix.rstrip('.') or '(top level)'!r}: "
                f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"bias={self.bias}")

    def keys(self) -> list:
        suffixes = ("", "_reverse") if self.bidirectional else ("",)
        names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if self.bias else ())
        return [f"{self.prefix}{n}_l{k}{s}" for k in range(self.num_layers)
                for s in suffixes for n in names]


@dataclass
class LinearLayer:
    prefix: str
    in_features: int
    out_features: int
    bias: bool
    order: int

    @property
    def name(self) -> str:
        return self.prefix.rstrip(".")

    def keys(self) -> list:
        return [self.prefix + "weight"] + ([self.prefix + "bias"] if self.bias else [])


# -- reading the state dict ----------------------------------------------------------


def fold_weight_norm(state: dict) -> dict:
    """Weight-normed weights as the plain weights they stand for,
    w = g * v / ||v|| (norm over every axis but the first): old-style
    ``<name>_g`` / ``<name>_v`` and ``parametrizations.<name>.original0/1``.
    The folded weight takes the place of g, keeping registration order."""
    patterns = (("_g", "_v", re.compile(r"^(?P<base>.*)_g$")),
                (".original0", ".original1",
                 re.compile(r"^(?P<head>.*?)parametrizations\.(?P<name>[^.]+)\.original0$")))
    out = {}
    for key, value in state.items():
        folded = False
        for g_suffix, v_suffix, pattern in patterns:
            match = pattern.match(key)
            if not match:
                continue
            if g_suffix == "_g":
                target, v_key = match["base"], match["base"] + v_suffix
            else:
                target, v_key = match["head"] + match["name"], key[: -len(g_suffix)] + v_suffix
            if v_key not in state or target in state:
                continue
            g, v = np.asarray(value, np.float64), np.asarray(state[v_key], np.float64)
            norm = np.sqrt(np.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)).reshape(g.shape)
            out[target] = (g * v / norm).astype(state[v_key].dtype)
            folded = True
        if not folded:
            out[key] = value
    folded_v = {k[: -len("_v")] + "_g" for k in state if k.endswith("_v")} | \
               {k[: -len(".original1")] + ".original0" for k in state if k.endswith(".original1")}
    return {k: v for k, v in out.items()
            if not ((k.endswith("_v") and k[: -2] + "_g" in folded_v and k[: -2] + "_g" not in out)
                    or (k.endswith(".original1") and k[: -10] + ".original0" in folded_v
                        and k[: -10] + ".original0" not in out))}


def find_recurrent_families(state: dict) -> dict:
    """prefix -> (kind, {(layer, reverse)}) for every weight_ih_l* family."""
    families: dict = {}
    for key in state:
        match = RNN_KEY.match(key)
        if match:
            families.setdefault(match["prefix"], set()).add(
                (int(match["layer"]), bool(match["reverse"])))
    kinds = {}
    for prefix, found in families.items():
        hh = state.get(f"{prefix}weight_hh_l0")
        gates = hh.shape[0] // hh.shape[1] if hh is not None and hh.ndim == 2 and hh.shape[1] else 0
        kinds[prefix] = (RNN_KINDS.get(gates, "an unknown recurrent layer"), found)
    return kinds


def find_gru_stacks(state: dict) -> list:
    """Every nn.GRU family of keys in the state dict, checked for consistency."""
    stacks = []
    for prefix, (kind, found) in find_recurrent_families(state).items():
        if kind != "nn.GRU":
            continue
        num_layers = max(k for k, _ in found) + 1
        bidirectional = any(r for _, r in found)
        ih, hh = state[f"{prefix}weight_ih_l0"], state[f"{prefix}weight_hh_l0"]
        if ih.ndim != 2:
            raise TorchConversionError(f"nn.GRU at {prefix!r}: weight_ih_l0 is not 2-D")
        hidden = hh.shape[1]
        stack = GRUStack(prefix, num_layers, bidirectional, f"{prefix}bias_ih_l0" in state,
                         ih.shape[1], hidden)
        D = 2 if bidirectional else 1
        for key in stack.keys():
            name = key[len(prefix):]
            layer = int(re.search(r"_l(\d+)", name).group(1))
            cols = hidden if name.startswith("weight_hh") else (
                stack.input_size if layer == 0 else D * hidden)
            shape = (3 * hidden, cols) if name.startswith("weight") else (3 * hidden,)
            array = state.get(key)
            if array is None or array.shape != shape:
                got = "missing" if array is None else f"shape {array.shape}"
                hint = ""
                if array is None and any(k.startswith(key + "_") or f"parametrizations.{name}." in k
                                         for k in state):
                    hint = (" (it is parametrized, e.g. spectral_norm: remove the "
                            "parametrization before saving)")
                raise TorchConversionError(
                    f"nn.GRU at {prefix!r}: {key} is {got}; expected {shape} for a "
                    f"{num_layers}-layer GRU of hidden size {hidden}{hint}")
        stacks.append(stack)
    return stacks


def find_linears(state: dict, used: set) -> list:
    """Every (weight (out, in), optional bias) pair not already used."""
    linears = []
    for order, (key, array) in enumerate(state.items()):
        if (key in used or not key.endswith("weight") or array.ndim != 2
                or array.dtype.kind != "f" or NOT_MODEL.search(key)):
            continue
        prefix = key[: -len("weight")]
        if prefix and not prefix.endswith("."):
            continue
        bias = state.get(prefix + "bias")
        if bias is not None and bias.shape != (array.shape[0],):
            continue
        linears.append(LinearLayer(prefix, array.shape[1], array.shape[0], bias is not None, order))
    return linears


def _common_prefix(a: str, b: str) -> int:
    parts_a, parts_b = a.split("."), b.split(".")
    n = 0
    while n < min(len(parts_a), len(parts_b)) and parts_a[n] == parts_b[n]:
        n += 1
    return n


def head_chain(linears: list, stack: GRUStack, gru_order: int) -> list:
    """The Linear layers registered after the GRU whose sizes follow on from
    its output: at each link the next one registered (nearest the GRU in the
    module tree first).  A candidate the chain passes over (a second head, an
    attention layer) makes it ambiguous: an error naming the candidates."""
    chain, size, steps = [], (2 if stack.bidirectional else 1) * stack.hidden_size, []
    while True:
        after = chain[-1].order if chain else gru_order
        fitting = [lin for lin in linears if lin.in_features == size and lin.order > after]
        if not fitting:
            break
        nearest = max(_common_prefix(lin.prefix, stack.prefix) for lin in fitting)
        fitting = [lin for lin in fitting if _common_prefix(lin.prefix, stack.prefix) == nearest]
        chosen = min(fitting, key=lambda lin: lin.order)
        steps.append((size, fitting))
        chain.append(chosen)
        size = chosen.out_features
    for size, fitting in steps:
        if any(lin not in chain for lin in fitting):
            names = ", ".join(f"{lin.name} ({lin.in_features}->{lin.out_features})" for lin in fitting)
            raise TorchConversionError(
                f"several nn.Linear layers could take the output of size {size}: {names}; "
                "choose with head=[...] (or head=[] for none)")
    return chain


def find_embedding(state: dict, stack: GRUStack, gru_order: int, used: set):
    """(key, table) of an embedding registered before the GRU whose width is
    its input size, or None."""
    found = [(key, array) for order, (key, array) in enumerate(state.items())
             if order < gru_order and key not in used and "emb" in key.lower()
             and key.endswith("weight") and array.ndim == 2 and array.dtype.kind == "f"
             and array.shape[1] == stack.input_size and not NOT_MODEL.search(key)
             and (key[: -len("weight")] + "bias") not in state]
    if len(found) > 1:
        raise TorchConversionError("several embedding tables could feed the GRU: "
                                   + ", ".join(k for k, _ in found))
    return found[0] if found else None


def unused_model_tensors(state: dict, used: set, stack: GRUStack) -> list:
    """Float tensors of the GRU's own model that the conversion leaves out:
    those under the GRU's parent module, less other GRU stacks (an EMA copy,
    say) and training state (optimizer, scheduler, ...)."""
    parent = stack.prefix.rstrip(".").rpartition(".")[0]
    parent = parent + "." if parent else ""
    others = {k for s in find_gru_stacks(state) if s is not stack for k in s.keys()}
    return [k for k, v in state.items()
            if k.startswith(parent) and k not in used and k not in others
            and v.dtype.kind == "f" and v.ndim >= 1 and not NOT_MODEL.search(k)]


def _to_canonical_gates(block: np.ndarray) -> np.ndarray:
    """PyTorch (r, z, n) blocks on axis 0 -> canonical (z, r, h)."""
    r, z, n = np.split(block, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def gru_nodes(state: dict, stack: GRUStack, last_step_only: bool, name: str) -> list:
    """One Recurrent node per layer of the stack."""
    dtype = compute_dtype(state[f"{stack.prefix}weight_ih_l0"].dtype)
    nodes = []
    for k in range(stack.num_layers):
        cells = []
        for suffix in ("", "_reverse")[: 2 if stack.bidirectional else 1]:
            def get(n, k=k, suffix=suffix):
                return np.asarray(state[f"{stack.prefix}{n}_l{k}{suffix}"], dtype)

            B = None
            if stack.bias:
                B = np.concatenate([_to_canonical_gates(get("bias_ih")),
                                    _to_canonical_gates(get("bias_hh"))])
            cells.append(GRUCell(_to_canonical_gates(get("weight_ih")),
                                 _to_canonical_gates(get("weight_hh")), B))
        last = k == stack.num_layers - 1
        nodes.append(Recurrent(f"{name}_l{k}" if stack.num_layers > 1 else name, cells,
                               return_sequences=not (last and last_step_only)))
    return nodes


def _choose_stack(state: dict, prefix) -> GRUStack:
    stacks = find_gru_stacks(state)
    if not stacks:
        others = [f"{kind} at {p.rstrip('.') or '(top level)'!r}"
                  for p, (kind, _) in find_recurrent_families(state).items()]
        cells = [k for k in state if re.search(r"(^|\.)weight_hh$", k)]
        raise TorchConversionError(
            "no nn.GRU weights (weight_ih_l0, ...) found"
            + (f"; found {', '.join(others)}: only nn.GRU is supported" if others else "")
            + ("; nn.GRUCell modules are not supported" if cells and not others else ""))
    if prefix is not None:
        wanted = prefix.rstrip(".")
        chosen = [s for s in stacks if s.prefix.rstrip(".") == wanted] or \
                 [s for s in stacks if s.prefix.rstrip(".").endswith("." + wanted)]
        if len(chosen) != 1:
            raise TorchConversionError(
                f"no single nn.GRU at prefix {prefix!r}; found: "
                + "; ".join(s.prefix.rstrip(".") or "(top level)" for s in stacks))
        return chosen[0]
    if len(stacks) > 1:
        raise TorchConversionError("the state dict holds several GRU stacks; choose one with "
                                   "prefix=...: " + "; ".join(s.describe() for s in stacks))
    return stacks[0]


def convert_state_dict(state: dict, *, prefix=None, head=None, head_activation="linear",
                       hidden_activation=None, head_on="every_step", batch_first=True,
                       strict=True, source=None) -> ModelSpec:
    """A ModelSpec from a flat name -> array state dict (in registration order).

    prefix: the key prefix of the GRU stack to use, when there are several.
    head: the Linear layers' key prefixes, in order; None finds them, []
    means none.  head_activation: the activation after the last Linear
    (sigmoid, softmax, ...); hidden_activation: between Linears, required when
    there are several.  head_on: "every_step" (the Linear on every timestep)
    or "last_step" (on the state at each row's last valid step: the last
    layer's h_n, directions concatenated).  batch_first=False makes a
    time-major model: (time, batch, ...) in and out.  strict: refuse when
    model tensors would be left unused (a layer gru_infer does not convert).
    """
    if head_on not in HEAD_ON:
        raise TorchConversionError(f"head_on must be one of {HEAD_ON}, got {head_on!r}")
    state = fold_weight_norm({k: np.asarray(v) for k, v in state.items()})
    stack = _choose_stack(state, prefix)
    keys = list(state)
    gru_order = keys.index(f"{stack.prefix}weight_ih_l0")
    used = set(stack.keys())

    embedding = find_embedding(state, stack, gru_order, used)
    if embedding is not None:
        used.add(embedding[0])
    linears = find_linears(state, used)
    if head is None:
        chain = head_chain(linears, stack, gru_order)
    else:
        by_name = {lin.name: lin for lin in linears}
        missing = [h for h in head if h.rstrip(".") not in by_name]
        if missing:
            raise TorchConversionError(f"head {missing} is not an nn.Linear in the state dict; "
                                       f"found: {sorted(by_name)}")
        chain = [by_name[h.rstrip(".")] for h in head]
    if len(chain) > 1 and hidden_activation is None:
        raise TorchConversionError(
            "the head has several Linear layers (" + ", ".join(lin.name for lin in chain)
            + "); a state dict does not say the activation between them: pass hidden_activation=")
    for lin in chain:
        used.update(lin.keys())
    if head is not None:  # the user chose the head: the other Linears are left out on purpose
        used.update(k for lin in linears for k in lin.keys())
    if strict:
        unused = unused_model_tensors(state, used, stack)
        if unused:
            shown = ", ".join(unused[:8]) + (f", ... ({len(unused)} in all)" if len(unused) > 8 else "")
            raise TorchConversionError(
                f"these model tensors would be left unused: {shown}. gru_infer converts an "
                "nn.GRU with an optional embedding before it and nn.Linear layers after it; "
                "pass head=[...] to choose the head, or strict=False to convert anyway")

    dtype = compute_dtype(state[f"{stack.prefix}weight_ih_l0"].dtype)
    name = stack.prefix.rstrip(".").replace(".", "_") or "gru"
    layers = []
    if embedding is not None:
        layers.append(Embedding(embedding[0][: -len(".weight")].replace(".", "_") or "embedding",
                                np.asarray(embedding[1], dtype)))
    layers += gru_nodes(state, stack, head_on == "last_step", name)
    size = (2 if stack.bidirectional else 1) * stack.hidden_size
    for i, lin in enumerate(chain):
        if lin.in_features != size:
            raise TorchConversionError(f"Linear {lin.name!r} takes {lin.in_features} features, "
                                       f"but its input has {size}")
        last = i == len(chain) - 1
        weight = np.asarray(state[lin.prefix + "weight"], dtype)
        bias = state.get(lin.prefix + "bias")
        layers.append(Dense(lin.name.replace(".", "_") or "linear", weight.T,
                            None if bias is None else np.asarray(bias, dtype),
                            (head_activation or "linear") if last else hidden_activation))
        size = lin.out_features
    if not chain and head_activation not in (None, "linear"):
        layers.append(Activation("activation", head_activation))
    model_input = Input(INPUT, (None,), "int64") if embedding is not None else \
        Input(INPUT, (None, stack.input_size), "float32")
    return sequential(layers, input=model_input, source=source or {}, time_major=not batch_first)


# -- modules: what a whole-module pickle or a live module adds ------------------------------


def _pickled_modules(obj, prefix=""):
    """(state-dict prefix, class name, module) of every nn.Module in a loaded
    checkpoint, in registration order (what state_dict() walks)."""
    if isinstance(obj, PickledObject) and obj.is_module:
        yield prefix, obj.qualified_name.rsplit(".", 1)[-1], obj
        for name, child in (obj.attributes.get("_modules") or {}).items():
            if child is not None:
                yield from _pickled_modules(child, f"{prefix}{name}.")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _pickled_modules(value, f"{prefix}{key}.")
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _pickled_modules(value, f"{prefix}{index}.")


def options_from_modules(modules: list, state: dict, options: dict) -> dict:
    """Fill what modules tell and a state dict does not: batch_first of the GRU,
    and the activation modules after each Linear of the head.  modules:
    [(state-dict prefix, class name, batch_first or None)] in registration order."""
    options = dict(options)
    try:
        stack = _choose_stack(state, options.get("prefix"))
    except TorchConversionError:
        return options
    gru_index = next((i for i, (path, _, _) in enumerate(modules) if path == stack.prefix), None)
    if gru_index is None:
        return options
    if modules[gru_index][2] is not None:
        options.setdefault("batch_first", modules[gru_index][2])
    after_gru = [i for i, (_, kind, _) in enumerate(modules) if kind == "Linear" and i > gru_index]

    def activation_after(index, stop):
        for _, kind, _ in modules[index + 1 : stop]:
            if kind in ACTIVATION_MODULES:
                return ACTIVATION_MODULES[kind]
        return None

    if after_gru:
        stops = after_gru[1:] + [len(modules)]
        found = [activation_after(i, stop) for i, stop in zip(after_gru, stops)]
        if found[-1] is not None:
            options.setdefault("head_activation", found[-1])
        if len(found) > 1 and found[0] is not None:
            options.setdefault("hidden_activation", found[0])
    return options


def convert_torch(path, *, prefix=None, head=None, head_activation=None,
                  hidden_activation=None, head_on="every_step", batch_first=None,
                  strict=True) -> ModelSpec:
    """A ModelSpec from a torch.save file (state dict, training checkpoint or
    whole module), read without torch and without running its pickle.
    batch_first and the head's activations: None takes them from a
    whole-module pickle's modules where it has them (else True / linear)."""
    obj = read_torch_file(path)
    state = flatten_tensors(obj)
    source = {"framework": "pytorch", "format": ".pt", "file": os.path.basename(os.fspath(path))}
    given = {k: v for k, v in dict(prefix=prefix, head=head, head_activation=head_activation,
                                   hidden_activation=hidden_activation,
                                   batch_first=batch_first).items() if v is not None}
    modules = [(p, kind, m.attributes.get("batch_first") if kind == "GRU" else None)
               for p, kind, m in _pickled_modules(obj)]
    try:
        if not state:
            raise TorchConversionError("the checkpoint holds no named tensors")
        options = options_from_modules(modules, fold_weight_norm(state), given)
        return convert_state_dict(state, head_on=head_on, strict=strict, source=source, **options)
    except TorchConversionError as error:
        raise TorchConversionError(f"{os.fspath(path)}: {error}") from None


def read_safetensors_state_dict(path) -> dict:
    """name -> array of a safetensors file, in the file's order."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, TypeError, ValueError) as error:
        raise FormatError(f"{os.fspath(path)}: cannot read its tensors ({error})") from None


def convert_safetensors_state_dict(path, *, batch_first=None, **options) -> ModelSpec:
    """A ModelSpec from a PyTorch state dict saved with safetensors
    (safetensors.torch.save_file(model.state_dict(), path))."""
    tensors = read_safetensors_state_dict(path)
    source = {"framework": "pytorch", "format": ".safetensors",
              "file": os.path.basename(os.fspath(path))}
    try:
        return convert_state_dict(tensors, batch_first=True if batch_first is None else batch_first,
                                  source=source, **options)
    except TorchConversionError as error:
        raise TorchConversionError(f"{os.fspath(path)}: {error}") from None


def describe_torch_file(path) -> str:
    """What gru-infer info shows for a .pt file: the recurrent stacks and
    Linear layers found, and how many other tensors there are."""
    state = fold_weight_norm(flatten_tensors(read_torch_file(path)))
    lines = [f"{os.fspath(path)}: PyTorch checkpoint, {len(state)} tensors, "
             f"{sum(int(np.size(v)) for v in state.values()):,} values"]
    stacks = find_gru_stacks(state)
    used = {k for s in stacks for k in s.keys()}
    lines += [f"  {s.describe()}" for s in stacks]
    lines += [f"  {kind} at {p.rstrip('.') or '(top level)'!r} (not supported)"
              for p, (kind, _) in find_recurrent_families(state).items() if kind != "nn.GRU"]
    if not stacks:
        lines.append("  no nn.GRU weights found")
    linears = find_linears(state, used)
    lines += [f"  nn.Linear at {lin.name!r}: {lin.in_features} -> {lin.out_features}"
              f"{'' if lin.bias else ' (no bias)'}" for lin in linears]
    other = len(state) - len(used) - sum(len(lin.keys()) for lin in linears)
    if other > 0:
        lines.append(f"  {other} other tensors (optimizer state, buffers, ...)")
    return "\n".join(lines)


def from_torch(module, **options) -> ModelSpec:
    """Convert a live torch module (an nn.GRU, or a module / nn.Sequential of
    nn.GRU + nn.Linear + activations, optionally after an nn.Embedding)
    without saving it first.  batch_first and the activations come from the
    modules unless given; see convert_state_dict for the options."""
    import torch  # only here: the converter itself never needs torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    state = {k: v.detach().cpu().float().numpy() if v.dtype == torch.bfloat16
             else v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    modules = [(f"{name}." if name else "", type(m).__name__,
                m.batch_first if isinstance(m, torch.nn.GRU) else None)
               for name, m in module.named_modules()]
    options = options_from_modules(modules, fold_weight_norm(state), options)
    return convert_state_dict(state, source={"framework": "pytorch",
                                             "version": torch.__version__, "format": "module"},
                              **options)
