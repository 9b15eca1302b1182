"""What a PyTorch state dict holds, read from its keys and shapes: nn.GRU
stacks (``<prefix>weight_ih_l<k>[_reverse]`` families whose recurrent weights
have 3H rows), nn.Linear layers, embedding tables, weight-normed weights, and
the GRU layers as specs.  PyTorch packs gates r, z, n; the canonical form is
z, r, h (ONNX).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError
from ..spec.layers import GRUCell, Recurrent, compute_dtype

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


def choose_stack(state: dict, prefix) -> GRUStack:
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


