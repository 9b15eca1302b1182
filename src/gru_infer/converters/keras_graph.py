"""A Keras model config (Sequential or functional) -> ModelSpec.

Functional configs list each layer's inbound tensors: Keras 2 as
[[layer, node index, tensor index, kwargs], ...], Keras 3 as
{"args": [...], "kwargs": {...}} with __keras_tensor__ references.  Inputs
keep their InputLayer names, so a model with several inputs takes them by name.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..spec.graph import INPUT, Input, ModelSpec, Node, sequential
from .keras_layers import Builder
from .keras_weights import KerasFileError


def major(version: str) -> int:
    """The leading number of a version text ("2.21.0", "3 (from ...)"); 2 if none."""
    match = re.match(r"\s*(\d+)", str(version))
    return int(match.group(1)) if match else 2


def major_from_config(model_config: dict):
    """The Keras major version a config's style shows, or None: Keras 2
    writes GRU time_major and plain dtype strings, Keras 3 DTypePolicy dicts."""
    text = json.dumps(model_config)
    if '"DTypePolicy"' in text or '"zero_output_for_mask"' in text:
        return 3
    if '"time_major"' in text or '"batch_input_shape"' in text:
        return 2
    return None


def normalise_layers(model_config: dict, path="the model config") -> tuple:
    """(class_name, layers with 'name', top config) of a Sequential/Functional
    config (to_json() form, or get_config()'s bare form)."""
    if not isinstance(model_config, dict):
        raise KerasFileError(f"{path}: the model config must be a JSON object, got "
                             f"{type(model_config).__name__}")
    if "class_name" not in model_config and "layers" in model_config:
        model_config = {"class_name": "Functional" if "input_layers" in model_config
                        else "Sequential", "config": model_config}
    cls = model_config.get("class_name")
    config = model_config.get("config")
    if cls not in ("Sequential", "Functional", "Model"):
        raise KerasFileError(f"{path}: model class {cls!r} is not supported (a subclassed model "
                             "has no layer graph in its file); gru_infer reads Sequential and "
                             "functional models")
    layers = config if isinstance(config, list) else (config or {}).get("layers", [])
    if not isinstance(layers, list):
        raise KerasFileError(f"{path}: the model config's layers must be a list")
    out = []
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
            raise KerasFileError(f"{path}: a layer entry is not a Keras layer config: "
                                 f"{str(layer)[:80]}")
        layer = dict(layer)
        layer["name"] = layer.get("name") or layer["config"].get("name")
        if not isinstance(layer["name"], str) or not isinstance(layer.get("class_name"), str):
            raise KerasFileError(f"{path}: a layer entry has no name or class_name")
        out.append(layer)
    return cls, out, (config if isinstance(config, dict) else {})


def _keras_tensors(value) -> list:
    """(layer, tensor index) of every Keras 3 tensor reference inside value."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            return [(history[0], int(history[2]))]
        return [ref for v in value.values() for ref in _keras_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [ref for v in value for ref in _keras_tensors(v)]
    return []


def _inbound(layer: dict, position: int, path) -> tuple:
    """(inputs [(source layer, tensor index)], explicit mask ref or None,
    constant arguments) of a functional layer's single call."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise KerasFileError(f"{path}: layer #{position} {layer['name']!r} "
                             f"({layer['class_name']}) is called {len(nodes)} times (a shared "
                             "layer); gru_infer supports one call per layer")
    if not nodes:
        return [], None, []
    node = nodes[0]
    if not isinstance(node, dict):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        return [(entry[0], int(entry[2])) for entry in node], None, []
    # Keras 3: {"args": [...], "kwargs": {...}}; Keras 3 writes the implicit mask
    # of Embedding(mask_zero) as an op layer passed in through kwargs["mask"].
    args, kwargs = node.get("args", []), node.get("kwargs") or {}
    masks = _keras_tensors(kwargs.get("mask"))
    if _keras_tensors(kwargs.get("initial_state")):
        raise KerasFileError(f"{path}: layer #{position} {layer['name']!r} "
                             f"({layer['class_name']}) is called with an initial_state tensor; "
                             "gru_infer does not support that")
    constants = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return _keras_tensors(args), (masks[0] if masks else None), constants


def _tensor_list(value) -> list:
    """input_layers / output_layers: one [name, node, index] or a list of them."""
    if value and isinstance(value[0], str):
        value = [value]
    return [(v[0], int(v[2])) for v in value]


def _declared_input(layer: dict):
    """(per-row shape, dtype) a layer config declares for its input, or None."""
    config = layer["config"]
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if not shape:
        return None
    dtype = config.get("dtype") if layer["class_name"] == "InputLayer" else "float32"
    if not isinstance(dtype, str) or np.dtype(dtype).kind not in "iuf":
        dtype = "float32"
    return tuple(shape[1:]), dtype


def _input(name: str, declared, consumer) -> Input:
    """The model input: a model that starts with an Embedding takes token ids,
    whatever dtype Keras 2 noted for its input."""
    shape, dtype = declared or ((None, None), "float32")
    if consumer is not None and consumer["class_name"] == "Embedding":
        dtype = dtype if np.dtype(dtype).kind in "iu" else "int32"
        shape = shape[:1] if len(shape) >= 1 else (None,)
    return Input(name, shape, dtype)


def model_from_config(model_config: dict, weights, keras_major: int, path, source: dict):
    """The ModelSpec of a Keras model config, its weights from weights."""
    if keras_major < 2:
        raise KerasFileError(f"{path}: written by Keras 1, whose GRU weights are laid out per "
                             "gate; re-save the model with Keras 2 or 3")
    cls, layers, top = normalise_layers(model_config, path)
    builder = Builder(path, weights, keras_major)
    if cls == "Sequential":
        return _sequential(layers, top, builder, source)
    return _functional(layers, top, builder, source, path)


def _sequential(layers, top, builder, source):
    built, declared, name = [], None, INPUT
    for position, layer in enumerate(layers):
        declared = declared or _declared_input(layer)
        if layer["class_name"] == "InputLayer":
            name = layer["name"]
        made = builder.layer(layer, position)
        if made is not None:
            built.append(made)
    if declared is None:
        build = top.get("build_input_shape") or (top.get("build_config") or {}).get("input_shape")
        declared = (tuple(build[1:]), "float32") if build else None
    first = next((layer for layer in layers if layer["class_name"] != "InputLayer"), None)
    try:
        return sequential(built, input=_input(name, declared, first), source=source)
    except ValueError as error:
        raise KerasFileError(f"{builder.path}: {error}") from None


def _functional(layers, top, builder, source, path):
    input_names = [name for name, _ in _tensor_list(top.get("input_layers", []))]
    by_name = {layer["name"]: layer for layer in layers}
    consumers = {}
    nodes = []
    for position, layer in enumerate(layers):
        if layer["class_name"] == "InputLayer":
            continue
        refs, mask_ref, constants = _inbound(layer, position, path)
        for src, _ in refs:
            consumers.setdefault(src, layer)
        made = builder.layer(layer, position, constants)
        nodes.append(Node(made, tuple(refs), mask_ref))
    inputs = []
    for name in input_names:
        if name not in by_name:
            raise KerasFileError(f"{path}: the model input {name!r} is not a layer of the config")
        inputs.append(_input(name, _declared_input(by_name[name]), consumers.get(name)))
    outputs = _tensor_list(top.get("output_layers", []))
    try:
        return ModelSpec(tuple(inputs), tuple(nodes), tuple(outputs), source=source)
    except ValueError as error:
        raise KerasFileError(f"{path}: {error}") from None
