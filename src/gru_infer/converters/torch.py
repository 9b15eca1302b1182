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

import contextlib
import os
import warnings

import numpy as np

from ..errors import FormatError, GruInferError, GruInferWarning
from ..spec.graph import INPUT, Input, ModelSpec, sequential
from ..spec.layers import Activation, Dense, Embedding, compute_dtype
from .torch_file import PickledObject, flatten_tensors, read_torch_file
from .torch_forward import build_forward
from .torch_state import (
    ACTIVATION_MODULES,
    HEAD_ON,
    NOT_MODEL,
    TorchConversionError,
    choose_stack,
    find_embedding,
    find_gru_stacks,
    find_linears,
    find_recurrent_families,
    fold_weight_norm,
    gru_nodes,
    head_chain,
    unused_model_tensors,
)


def convert_state_dict(state: dict, *, forward=None, prefix=None, head=None,
                       head_activation="linear", hidden_activation=None, head_on="every_step",
                       batch_first=True, strict=True, source=None, module_kinds=None) -> ModelSpec:
    """A ModelSpec from a flat name -> array state dict (in registration order).

    forward: what forward() does, stated (see torch_forward.py), e.g.
    ["gru", "last_step", "relu", "fc"]; then no other option but
    batch_first and strict applies.  Without it the structure is inferred
    from key names, shapes and registration order, and a GruInferWarning
    shows the forward assumed.  prefix: the key prefix of the GRU stack to use, when there are several.
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
    if forward is not None:
        inferred = {"prefix": prefix, "head": head, "hidden_activation": hidden_activation,
                    "head_on": None if head_on == "every_step" else head_on,
                    "head_activation": None if head_activation in (None, "linear") else head_activation}
        given = sorted(k for k, v in inferred.items() if v is not None)
        if given:
            raise TorchConversionError(f"forward= states the whole forward pass; drop {given}")
        spec, used = build_forward(state, forward, batch_first=batch_first,
                                   module_kinds=module_kinds, error=TorchConversionError,
                                   source=source)
        if strict:
            _refuse_unused(unused_tensors(state, used), "pass forward=[...] naming them, or "
                           "strict=False to convert anyway")
        return spec
    stack = choose_stack(state, prefix)
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
        _refuse_unused(unused_model_tensors(state, used, stack),
                       "gru_infer's guess covers an nn.GRU with an optional embedding before it "
                       "and nn.Linear layers after it; pass forward=[...] (or head=[...]) to say "
                       "what forward() does, or strict=False to convert anyway")

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
    assumed = ([embedding[0][: -len(".weight")]] if embedding is not None else []) \
        + [stack.prefix.rstrip(".") or "."] + (["final_states"] if head_on == "last_step" else [])
    for i, lin in enumerate(chain):
        activation = (head_activation or "linear") if i == len(chain) - 1 else hidden_activation
        assumed += [lin.name] + ([activation] if activation not in (None, "linear") else [])
    if not chain and head_activation not in (None, "linear"):
        assumed.append(head_activation)
    source = dict(source or {}, forward=assumed, forward_assumed=True)
    warnings.warn(GruInferWarning(
        f"{source.get('file', 'the state dict')}: a state dict does not say what forward() does; "
        f"gru_infer assumed forward={assumed!r}. Compare it with your model's forward() and pass "
        "forward=[...] (gru-infer: --forward) to state it"), stacklevel=4)
    return sequential(layers, input=model_input, source=source, time_major=not batch_first)


def unused_tensors(state: dict, used: set) -> list:
    """Float model tensors the conversion leaves out (training state aside)."""
    return [k for k, v in state.items() if k not in used and v.dtype.kind == "f" and v.ndim >= 1
            and not NOT_MODEL.search(k)]


def _refuse_unused(unused: list, hint: str) -> None:
    if unused:
        shown = ", ".join(unused[:8]) + (f", ... ({len(unused)} in all)" if len(unused) > 8 else "")
        raise TorchConversionError(f"these model tensors would be left unused: {shown}. {hint}")


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
        stack = choose_stack(state, options.get("prefix"))
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


def convert_torch(path, *, forward=None, prefix=None, head=None, head_activation=None,
                  hidden_activation=None, head_on="every_step", batch_first=None,
                  strict=True) -> ModelSpec:
    """A ModelSpec from a torch.save file (state dict, training checkpoint or
    whole module), read without torch and without running its pickle.
    forward: what forward() does, stated (see convert_state_dict).
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
    with _errors_named(path):
        if not state:
            raise TorchConversionError("the checkpoint holds no named tensors")
        return _convert_with_modules(state, modules, given, forward=forward, head_on=head_on,
                                     strict=strict, source=source)


def _convert_with_modules(state, modules, given, *, forward, **options) -> ModelSpec:
    """convert_state_dict with what the modules say: with forward= stated, only
    batch_first and each module's class; without it, the activations too."""
    kinds = {path: kind for path, kind, _ in modules}
    if forward is not None:
        gru_flags = [flag for _, kind, flag in modules if kind == "GRU" and flag is not None]
        if "batch_first" not in given and gru_flags:
            given = dict(given, batch_first=gru_flags[0])
        return convert_state_dict(state, forward=forward, module_kinds=kinds, **given, **options)
    given = options_from_modules(modules, fold_weight_norm(state), given)
    return convert_state_dict(state, module_kinds=kinds, **given, **options)


# What odd tensors (a scalar where a matrix goes, a complex or bool weight) can
# trip in the structure finding: reported as a conversion error of the file.
_STATE_DICT_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, ZeroDivisionError,
                      OverflowError)


@contextlib.contextmanager
def _errors_named(path):
    """Conversion errors name the file; odd tensors' errors become conversion errors."""
    try:
        yield
    except TorchConversionError as error:
        raise TorchConversionError(f"{os.fspath(path)}: {error}") from None
    except GruInferError:
        raise
    except _STATE_DICT_ERRORS as error:
        raise TorchConversionError(f"{os.fspath(path)}: its tensors do not form a GRU model "
                                   f"({type(error).__name__}: {error})") from error


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
    with _errors_named(path):
        return convert_state_dict(tensors, batch_first=True if batch_first is None else batch_first,
                                  source=source, **options)


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


def from_torch(module, example_input=None, **options) -> ModelSpec:
    """Convert a live torch module without saving it first.

    With example_input (a tensor, or a tuple of the forward's arguments) the
    module is traced by torch.export, so the forward pass is known, not
    guessed: whatever forward() does with the supported ops converts (see
    torch_export.py), and options do not apply.  When export fails, or
    without example_input, the module's structure is read (an nn.GRU, or a
    module / nn.Sequential of nn.GRU + nn.Linear + activations, optionally
    after an nn.Embedding) as for a state dict, with the GruInferWarning that
    shows the forward assumed; forward=[...] states it instead."""
    import torch  # only here: the converter itself never needs torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    if example_input is not None and not options:
        exported = _from_torch_export(module, example_input)
        if exported is not None:
            return exported
    state = {k: v.detach().cpu().float().numpy() if v.dtype == torch.bfloat16
             else v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    modules = [(f"{name}." if name else "", type(m).__name__,
                m.batch_first if isinstance(m, torch.nn.GRU) else None)
               for name, m in module.named_modules()]
    forward = options.pop("forward", None)
    return _convert_with_modules(state, modules, options, forward=forward,
                                 source={"framework": "pytorch", "version": torch.__version__,
                                         "format": "module"})


def _from_torch_export(module, example_input):
    """The module traced by torch.export and read back as a .pt2 archive, or
    None (with a GruInferWarning saying why) when torch cannot export it."""
    import tempfile

    import torch

    from .torch_export import convert_torch_export

    args = example_input if isinstance(example_input, tuple) else (example_input,)
    was_training = module.training
    module.eval()
    try:
        batch = torch.export.Dim("batch")
        dynamic = tuple({0: batch} if isinstance(a, torch.Tensor) and a.ndim >= 1 else None
                        for a in args)
        try:
            program = torch.export.export(module, args, dynamic_shapes=dynamic)
        except Exception:  # some graphs only export with static shapes
            program = torch.export.export(module, args)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "module.pt2")
            torch.export.save(program, path)
            spec = convert_torch_export(path)
    except Exception as error:  # torch's own export errors are many and varied
        warnings.warn(GruInferWarning(
            f"torch.export could not trace the module ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); reading its structure "
            "instead"), stacklevel=3)
        return None
    finally:
        module.train(was_training)
    return spec
