"""Keras checkpoints -> gru_infer Model, with h5py only (no TensorFlow/Keras).

Reads Keras 3 ``.keras`` archives (config.json + metadata.json +
model.weights.h5), legacy full-model ``.h5`` files written by tf.keras 2 or by
Keras 3, and weights-only files (Keras 3 ``.weights.h5``, Keras 2
``save_weights('x.h5')``) together with the model's JSON config.

Weights are found by the file's own structure, never by leaf names (optimizer
slots carry the same names and shapes): legacy files list each layer's
weights in the ``layer_names`` / ``weight_names`` attributes; Keras 3 files
keep each layer's variables under ``layers/<class>_<n>/.../vars/<i>``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

import numpy as np

from ..layers import (Activation, Dense, Embedding, Identity, Masking, NotEqual, Recurrent,
                      ReduceAny)
from ..model import INPUT, Model, Node

IDENTITY_CLASSES = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                    "AlphaDropout", "ActivityRegularization")
SUPPORTED = ("InputLayer", "GRU", "CuDNNGRU", "Bidirectional", "Dense", "TimeDistributed(Dense)", "Embedding",
             "Masking", "Activation", "ReLU", "Softmax", "NotEqual", "Any") + IDENTITY_CLASSES
_EXTRA_WEIGHTS_HINT = " (quantized or LoRA-enabled layers are not supported: convert the float model)"
GRU_CELL_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "relu", "linear", "softsign")


class KerasFileError(ValueError):
    """A Keras file gru_infer cannot read, with the file and the reason."""


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras files needs h5py: pip install h5py "
                          "(or pip install 'gru_infer[keras]')") from None
    return h5py


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _major(version: str) -> int:
    """The leading number of a version text ("2.21.0", "3 (from ...)"); 2 if none."""
    match = re.match(r"\s*(\d+)", str(version))
    return int(match.group(1)) if match else 2


def _major_from_config(model_config: dict):
    """The Keras major version a config's style shows, or None: Keras 2
    writes GRU time_major and plain dtype strings, Keras 3 DTypePolicy dicts."""
    text = json.dumps(model_config)
    if '"DTypePolicy"' in text or '"zero_output_for_mask"' in text:
        return 3
    if '"time_major"' in text or '"batch_input_shape"' in text:
        return 2
    return None


# -- weights, by the file's own structure ------------------------------------------


def _string_list_attribute(group, name: str) -> list:
    """A list-of-names attribute; Keras splits long ones into name0, name1, ...
    (HDF5 caps an attribute at 64 KB)."""
    if name in group.attrs:
        return [_text(n) for n in group.attrs[name]]
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [_text(n) for n in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return values


def _read_array(dataset) -> np.ndarray:
    """A weight as a float array; bfloat16 (stored as 2-byte opaque or uint16
    data) is widened to float32."""
    array = np.asarray(dataset)
    if array.dtype.kind == "V" and array.dtype.itemsize == 2:
        array = array.view(np.uint16)
    if array.dtype == np.uint16 and "bfloat16" in str(dataset.dtype).lower() + str(
            dataset.attrs.get("dtype", "")).lower():
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


class LegacyWeights:
    """Keras 2 style: a group with ``layer_names``; each layer group lists its
    weights in ``weight_names`` (trainable ones first, so the order moves when
    part of a layer is frozen: weights are told apart by their path)."""

    def __init__(self, group, path):
        self.group, self.path = group, path
        self.aliases = {}  # config layer name -> file layer name, when matched by order
        self.layer_names = _string_list_attribute(group, "layer_names")
        if not self.layer_names and "layer_names" not in group.attrs and \
                "layer_names0" not in group.attrs:
            raise KerasFileError(f"{path}: no layer_names attribute: not a Keras weights group")

    def match_layers(self, config_layers: list):
        """A weights-only file whose layer names are not the config's (a config
        rebuilt from code gets fresh names): pair layers with weights in order,
        as Keras' load_weights does; counts and shapes must agree."""
        from .keras_match import WeightMatchError, has_weights, match_by_order

        file_layers = []
        for name in self.layer_names:
            names = _string_list_attribute(self.group[name], "weight_names") \
                if name in self.group else []
            if names:
                file_layers.append((name, [self.group[name][n].shape if n in self.group[name]
                                           else () for n in names]))
        wanted = [layer["name"] for layer in config_layers if has_weights(layer)]
        if all(name in dict(file_layers) for name in wanted):
            return
        try:
            self.aliases = match_by_order(config_layers, file_layers, self.path)
        except WeightMatchError as error:
            raise KerasFileError(str(error)) from None

    def named_arrays(self, layer_name: str, class_name: str, position: int) -> list:
        """[(weight name, array)] of one layer, as the file lists them."""
        layer_name = self.aliases.get(layer_name, layer_name)
        if layer_name not in self.layer_names:
            raise KerasFileError(f"{self.path}: no weights for layer #{position} {layer_name!r} "
                                 f"({class_name}); the file has weights for {self.layer_names}")
        group = self.group[layer_name]
        names = _string_list_attribute(group, "weight_names")
        try:
            return [(n, _read_array(group[n])) for n in names]
        except KeyError as error:
            raise KerasFileError(f"{self.path}: layer {layer_name!r} lists a weight that is "
                                 f"missing: {error}") from None

    def arrays(self, layer_name: str, class_name: str, position: int, part: str = "") -> list:
        """The layer's weights in their canonical order (kernel, recurrent
        kernel, bias / embeddings), of the sublayer whose path has a component
        starting with part ("forward", "backward") when given."""
        named = self.named_arrays(layer_name, class_name, position)
        layer_name = self.aliases.get(layer_name, layer_name)
        if part:  # forward_<name>/...; the backward half may carry its own custom name

            def inside(name):  # path components below the layer's own name
                parts = name.split("/")[:-1]
                return parts[parts.index(layer_name) + 1:] if layer_name in parts else parts

            forward = lambda n: any(c.startswith("forward_") for c in inside(n))  # noqa: E731
            named = [(n, a) for n, a in named if forward(n) == (part == "forward")]
        rank = {"kernel": 0, "recurrent_kernel": 1, "bias": 2, "embeddings": 0}
        leaf = lambda n: n.split("/")[-1].split(":")[0]  # noqa: E731
        if all(leaf(n) in rank for n, _ in named):
            named = sorted(named, key=lambda item: rank[leaf(item[0])])
        return [a for _, a in named]


class Keras3Weights:
    """Keras 3 style: ``layers/<key>/...vars/<i>``, where key is the snake-case
    class name with a per-class counter in layer order (``gru``, ``gru_1``), not
    the layer's own name.  Newer files also note the layer name in each
    ``vars`` group's ``name`` attribute; it is used when present."""

    def __init__(self, root, path, config_layers: list):
        self.root, self.path = root, path
        layers = root.get("layers")
        if layers is None and any(key.startswith("layers\\") for key in root):
            layers = _BackslashPaths(root).get("layers")  # written on Windows
        if layers is None:
            raise KerasFileError(f"{path}: no 'layers' group: not a Keras 3 weights file")
        self.keys = {}
        counters = {}
        for layer in config_layers:
            snake = _snake_case(layer["class_name"])
            n = counters.get(snake, 0)
            counters[snake] = n + 1
            self.keys[layer["name"]] = snake if n == 0 else f"{snake}_{n}"
        by_attr = {}
        for key in layers:
            vars_group = layers[key].get("vars")
            if vars_group is not None and "name" in vars_group.attrs:
                by_attr[_text(vars_group.attrs["name"])] = key
        if all(name in by_attr for name in self.keys):
            self.keys = {name: by_attr[name] for name in self.keys}
        self.layers = layers

    def group(self, layer_name: str, class_name: str, position: int):
        key = self.keys.get(layer_name)
        if key is None or key not in self.layers:
            raise KerasFileError(f"{self.path}: no weights group 'layers/{key}' for layer "
                                 f"#{position} {layer_name!r} ({class_name})")
        return self.layers[key]

    def vars_at(self, group, subpath: str) -> list:
        node = group
        for part in [p for p in subpath.split("/") if p]:
            if part not in node:
                return []
            node = node[part]
        if "vars" not in node:
            return []
        vars_group = node["vars"]
        return [_read_array(vars_group[k]) for k in sorted(vars_group, key=int)]


class _BackslashPaths:
    """The groups of a weights file written on Windows by tf.keras 2.13-2.15,
    whose saving code joined paths with os.path.join: one flat group named
    ``layers\\gru\\cell`` (holding ``vars``) instead of nested groups.  Read
    with \\ as the path separator, as the same tree of nested groups."""

    def __init__(self, root, path: str = "", index: dict | None = None):
        if index is None:
            index = {}
            root.visititems(lambda name, obj: index.setdefault(name.replace("\\", "/"), obj)
                            and None)
        self._index, self._path, self._root = index, path, root
        own = index.get(path)
        self.attrs = own.attrs if own is not None else {}

    def _child_path(self, name: str) -> str:
        return f"{self._path}/{name}" if self._path else name

    def __iter__(self):
        prefix = self._child_path("")
        seen = []
        for key in self._index:
            if key.startswith(prefix):
                head = key[len(prefix):].split("/")[0]
                if head not in seen:
                    seen.append(head)
        return iter(seen)

    def __contains__(self, name) -> bool:
        return self.get(name) is not None

    def get(self, name, default=None):
        child = self._child_path(name)
        node = self._index.get(child)
        if node is not None and not hasattr(node, "keys"):  # a dataset
            return node
        if node is not None or any(k.startswith(child + "/") for k in self._index):
            return _BackslashPaths(self._root, child, self._index)
        return default

    def __getitem__(self, name):
        node = self.get(name)
        if node is None:
            raise KeyError(name)
        return node


def _snake_case(name: str) -> str:
    """Keras' own rule (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


# -- the config: a list of layers with their inbound tensors ----------------------


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


def _input_spec(layers: list, model_config: dict) -> tuple:
    """(per-row shape, dtype) of the model input.  A model that starts with an
    Embedding takes token ids, whatever dtype Keras 2 noted for its input."""
    shape, dtype = _declared_input(layers, model_config)
    first = next((layer for layer in layers if layer["class_name"] != "InputLayer"), None)
    if first is not None and first["class_name"] == "Embedding":
        dtype = dtype if np.dtype(dtype).kind in "iu" else "int32"
    return shape, dtype


def _declared_input(layers: list, model_config: dict) -> tuple:
    for layer in layers:
        config = layer["config"]
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if shape:
            dtype = config.get("dtype") if layer["class_name"] == "InputLayer" else "float32"
            if isinstance(dtype, dict):
                dtype = "float32"
            return tuple(shape[1:]), dtype or "float32"
    build = model_config.get("build_input_shape") or (
        (model_config.get("build_config") or {}).get("input_shape"))
    if build:
        return tuple(build[1:]), "float32"
    return (None, None), "float32"


def _activation_name(value, where: str) -> str:
    """The name of an activation as Keras serialises it: a string, a
    function reference, or an activation layer object (ReLU, Softmax, ...)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        cls = value.get("class_name")
        if cls in ("ReLU", "Softmax", "Activation") and isinstance(inner, dict):
            if cls == "Activation":
                return _activation_name(inner.get("activation"), where)
            if cls == "Softmax" and inner.get("axis", -1) in (-1, [-1]):
                return "softmax"
            if cls == "ReLU" and not inner.get("negative_slope") and not inner.get("threshold") \
                    and inner.get("max_value") in (None, 6, 6.0):
                return "relu" if inner.get("max_value") is None else "relu6"
            raise KerasFileError(f"{where}: activation {cls} with {inner} is not supported")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str) and cls in (None, "function"):
            return inner["name"]
        if isinstance(cls, str):  # ELU(alpha=...), LeakyReLU, PReLU: parameters we do not carry
            raise KerasFileError(f"{where}: activation layer object {cls} is not supported; "
                                 "use a named activation or an Activation layer")
    raise KerasFileError(f"{where}: cannot read activation {value!r}")


# -- layer by layer ----------------------------------------------------------------


def _gru_config(layer: dict) -> dict:
    """A GRU layer's config; CuDNNGRU (Keras 2's GPU-only layer) as the GRU it
    computes: reset_after, sigmoid gate, tanh candidate, with biases."""
    config = layer["config"]
    if layer["class_name"] == "CuDNNGRU":
        config = dict(config, reset_after=True, recurrent_activation="sigmoid",
                      activation="tanh", use_bias=True)
    return config


def _from_cudnn(kernel, recurrent, bias) -> tuple:
    """GRU(reset_after=True) weights from CuDNNGRU ones, as Keras 2 converts
    them on load (saving.legacy.hdf5_format._convert_rnn_weights): per gate
    (z, r, h), the input kernel block holds cuDNN's (units, input) matrix
    read in the other memory order, the recurrent block is transposed; the
    (6u,) bias is [input bias | recurrent bias]."""
    kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, 3)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent, 3)])
    return kernel, recurrent, bias.reshape(2, -1)


class _Builder:
    def __init__(self, path, weights, keras_major: int):
        self.path = path
        self.weights = weights
        self.hard_sigmoid = "keras2" if keras_major < 3 else "keras3"

    def arrays(self, layer: dict, position: int, subpath: str = "") -> list:
        if isinstance(self.weights, LegacyWeights):
            return self.weights.arrays(layer["name"], layer["class_name"], position)
        group = self.weights.group(layer["name"], layer["class_name"], position)
        return self.weights.vars_at(group, subpath)

    def gru_cell(self, config: dict, arrays: list, where: str) -> dict:
        if config.get("time_major"):
            raise KerasFileError(f"{where}: time_major=True is not supported")
        use_bias = config.get("use_bias", True)
        if len(arrays) != (3 if use_bias else 2):
            raise KerasFileError(f"{where}: expected {'3' if use_bias else '2'} GRU weights "
                                 f"(kernel, recurrent_kernel{', bias' if use_bias else ''}), "
                                 f"found {len(arrays)}{_EXTRA_WEIGHTS_HINT if arrays else ''}")
        kernel, recurrent = arrays[0], arrays[1]
        units = int(config["units"])
        if kernel.ndim != 2 or kernel.shape[1] != 3 * units or recurrent.shape != (units, 3 * units):
            raise KerasFileError(f"{where}: GRU({units}) weights have shapes {kernel.shape}, "
                                 f"{recurrent.shape}; expected (input, {3 * units}), "
                                 f"({units}, {3 * units})")
        dtype = np.float64 if kernel.dtype == np.float64 else np.float32
        reset_after = config.get("reset_after")
        B = None
        if use_bias and arrays[2].shape == (6 * units,):  # written by CuDNNGRU
            if reset_after is False:
                raise KerasFileError(f"{where}: CuDNNGRU weights (bias of shape (6*units,)) "
                                     "are not compatible with GRU(reset_after=False)")
            kernel, recurrent, bias = _from_cudnn(kernel, recurrent, arrays[2])
            arrays = [kernel, recurrent, bias]
        if use_bias:
            bias = arrays[2]
            if reset_after is None:
                reset_after = bias.ndim == 2  # pre-2.3 configs lack the key; the bias shape tells
            if reset_after and bias.shape == (2, 3 * units):
                B = np.concatenate([bias[0], bias[1]])
            elif not reset_after and bias.shape == (3 * units,):
                B = np.concatenate([bias, np.zeros_like(bias)])
            else:
                raise KerasFileError(f"{where}: GRU bias has shape {bias.shape}, which does not "
                                     f"match reset_after={reset_after}")
        cell = {
            "W": kernel.T.astype(dtype)[None],
            "R": recurrent.T.astype(dtype)[None],
            "B": None if B is None else B.astype(dtype)[None],
            "linear_before_reset": bool(True if reset_after is None else reset_after),
            "activations": [
                _activation_name(config.get("recurrent_activation", "sigmoid"), where),
                _activation_name(config.get("activation", "tanh"), where),
            ],
            "hard_sigmoid": self.hard_sigmoid,
        }
        for name in cell["activations"]:
            if name not in GRU_CELL_ACTIVATIONS:
                raise KerasFileError(f"{where}: GRU activation {name!r} is not supported "
                                     f"(supported: {', '.join(GRU_CELL_ACTIVATIONS)})")
        return cell

    def dense(self, name: str, config: dict, arrays: list, where: str) -> Dense:
        use_bias = config.get("use_bias", True)
        if len(arrays) != (2 if use_bias else 1):
            raise KerasFileError(f"{where}: expected {'kernel and bias' if use_bias else 'kernel'}"
                                 f", found {len(arrays)} weights{_EXTRA_WEIGHTS_HINT}")
        return Dense(name, arrays[0], arrays[1] if use_bias else None,
                     _activation_name(config.get("activation", "linear"), where),
                     self.hard_sigmoid)

    def layer(self, layer: dict, position: int, constants=()):
        """The gru_infer layer for one Keras layer (None for InputLayer)."""
        where = f"{self.path}: layer #{position} {layer['name']!r} ({layer['class_name']})"
        try:
            return self._layer(layer, position, constants, where)
        except KerasFileError:
            raise
        except (ValueError, TypeError) as error:  # a layer refusing its weights or options
            raise KerasFileError(f"{where}: {error}") from None

    def _layer(self, layer: dict, position: int, constants, where: str):
        cls, config, name = layer["class_name"], layer["config"], layer["name"]
        if cls == "InputLayer":
            return None
        if cls == "NotEqual":
            value = constants[0] if constants else config.get("y", 0)
            return NotEqual(name, value)
        if cls == "Any":
            return ReduceAny(name, config.get("axis", -1), config.get("keepdims", False))
        if cls == "ReLU":
            plain = not config.get("negative_slope") and not config.get("threshold")
            if plain and config.get("max_value") in (None, 6, 6.0):
                return Activation(name, "relu" if config.get("max_value") is None else "relu6")
            raise KerasFileError(f"{where}: ReLU with negative_slope/threshold/max_value "
                                 f"{config.get('negative_slope')}/{config.get('threshold')}/"
                                 f"{config.get('max_value')} is not supported")
        if cls == "Softmax":
            if config.get("axis", -1) not in (-1, [-1]):
                raise KerasFileError(f"{where}: Softmax over axis {config.get('axis')} is not "
                                     "supported; only the last axis")
            return Activation(name, "softmax")
        if cls in ("GRU", "GRUV2", "CuDNNGRU"):
            config = _gru_config(layer)
            if config.get("return_state"):
                raise KerasFileError(f"{where}: return_state=True is not supported")
            cell = self.gru_cell(config, self.arrays(layer, position, "cell"), where)
            return Recurrent(name, [cell], return_sequences=config.get("return_sequences", False),
                             go_backwards=config.get("go_backwards", False),
                             zero_masked_outputs=config.get("zero_output_for_mask", False))
        if cls == "Bidirectional":
            return self.bidirectional(layer, position, where)
        if cls == "Dense":
            return self.dense(name, config, self.arrays(layer, position), where)
        if cls == "TimeDistributed":
            inner = config["layer"]
            if inner["class_name"] != "Dense":
                raise KerasFileError(f"{where}: TimeDistributed({inner['class_name']}) is not "
                                     "supported; only TimeDistributed(Dense)")
            return self.dense(name, inner["config"], self.arrays(layer, position, "layer"), where)
        if cls == "Embedding":
            arrays = self.arrays(layer, position)
            if len(arrays) != 1:
                raise KerasFileError(f"{where}: expected one embeddings table, found "
                                     f"{len(arrays)}{_EXTRA_WEIGHTS_HINT}")
            return Embedding(name, arrays[0], config.get("mask_zero", False))
        if cls == "Masking":
            return Masking(name, config.get("mask_value", 0.0))
        if cls == "Activation":
            return Activation(name, _activation_name(config["activation"], where),
                              self.hard_sigmoid)
        if cls in IDENTITY_CLASSES:
            return Identity(name, cls)
        raise KerasFileError(f"{where} is not supported by gru_infer; supported layers: "
                             f"{', '.join(SUPPORTED)}")

    def bidirectional(self, layer: dict, position: int, where: str) -> Recurrent:
        config = layer["config"]
        forward_config = config["layer"]
        backward_config = config.get("backward_layer") or forward_config
        for sub in (forward_config, backward_config):
            if sub["class_name"] not in ("GRU", "GRUV2", "CuDNNGRU"):
                raise KerasFileError(f"{where}: Bidirectional({sub['class_name']}) is not "
                                     "supported; only Bidirectional(GRU)")
        fc, bc = _gru_config(forward_config), _gru_config(backward_config)
        backward_goes_back = bc.get("go_backwards", True) if "backward_layer" in config \
            else not fc.get("go_backwards", False)
        if fc.get("go_backwards", False) or not backward_goes_back:
            raise KerasFileError(f"{where}: a Bidirectional over a go_backwards=True GRU (its "
                                 "forward half runs backwards) is not supported")
        if isinstance(self.weights, LegacyWeights):
            forward_arrays = self.weights.arrays(layer["name"], "Bidirectional", position,
                                                 "forward")
            backward_arrays = self.weights.arrays(layer["name"], "Bidirectional", position,
                                                  "backward")
            if not forward_arrays:  # names without forward_/backward_: by position
                arrays = self.arrays(layer, position)
                n_forward = 3 if fc.get("use_bias", True) else 2
                forward_arrays, backward_arrays = arrays[:n_forward], arrays[n_forward:]
        else:
            group = self.weights.group(layer["name"], "Bidirectional", position)
            forward_arrays = self.weights.vars_at(group, "forward_layer/cell")
            backward_arrays = self.weights.vars_at(group, "backward_layer/cell")
        cells = [self.gru_cell(fc, forward_arrays, where + " forward"),
                 self.gru_cell(bc, backward_arrays, where + " backward")]
        return_sequences = fc.get("return_sequences", False)
        if fc.get("return_state"):
            raise KerasFileError(f"{where}: return_state=True is not supported")
        # Keras sets zero_output_for_mask = return_sequences on both sublayers.
        return Recurrent(layer["name"], cells, return_sequences=return_sequences,
                         merge_mode=config.get("merge_mode", "concat"),
                         zero_masked_outputs=return_sequences)


# -- files -----------------------------------------------------------------------


def _normalise_layers(model_config: dict, path="the model config") -> tuple:
    """(class_name, layers with 'name', top config) of a Sequential/Functional
    config (to_json() form, or get_config()'s bare form)."""
    if "class_name" not in model_config and "layers" in model_config:
        model_config = {"class_name": "Functional" if "input_layers" in model_config
                        else "Sequential", "config": model_config}
    cls = model_config.get("class_name")
    config = model_config.get("config")
    if cls not in ("Sequential", "Functional", "Model"):
        raise KerasFileError(f"{path}: model class {cls!r} is not supported (a subclassed model "
                             "has no layer graph in its file); gru_infer reads Sequential and "
                             "functional models")
    layers = config if isinstance(config, list) else config.get("layers", [])
    out = []
    for layer in layers:
        layer = dict(layer)
        layer["name"] = layer.get("name") or layer["config"]["name"]
        out.append(layer)
    return cls, out, (config if isinstance(config, dict) else {})


def model_from_config(model_config: dict, weights, keras_major: int, path, source: dict) -> Model:
    if keras_major < 2:
        raise KerasFileError(f"{path}: written by Keras 1, whose GRU weights are laid out per "
                             "gate; re-save the model with Keras 2 or 3")
    cls, layers, top = _normalise_layers(model_config, path)
    builder = _Builder(path, weights, keras_major)
    input_shape, input_dtype = _input_spec(layers, top)
    if cls == "Sequential":
        built = []
        for position, layer in enumerate(layers):
            made = builder.layer(layer, position)
            if made is not None:
                built.append(made)
        return Model.sequential(built, input_shape=input_shape, input_dtype=input_dtype,
                                source=source)
    inputs = _tensor_list(top.get("input_layers", []))
    if len(inputs) != 1:
        raise KerasFileError(f"{path}: the model has {len(inputs)} inputs; gru_infer supports one")
    input_name = inputs[0][0]
    nodes = []
    for position, layer in enumerate(layers):
        if layer["class_name"] == "InputLayer":
            continue
        refs, mask_ref, constants = _inbound(layer, position, path)
        made = builder.layer(layer, position, constants)
        rename = lambda ref: (INPUT if ref[0] == input_name else ref[0], ref[1])  # noqa: E731
        if len(refs) != 1:
            raise KerasFileError(f"{path}: layer #{position} {layer['name']!r} "
                                 f"({layer['class_name']}) takes {len(refs)} inputs; "
                                 "gru_infer supports layers with one input")
        nodes.append(Node(made, [rename(refs[0])], rename(mask_ref) if mask_ref else None))
    outputs = [(INPUT if src == input_name else src, index)
               for src, index in _tensor_list(top.get("output_layers", []))]
    return Model(nodes, outputs, input_shape=input_shape, input_dtype=input_dtype, source=source)


def _load_config(config, path) -> dict:
    """The model config for a weights-only file: a dict, JSON text, a JSON
    file, or (when None) the .json beside the weights file."""
    if isinstance(config, dict):
        return config
    if config is None:
        base = str(path)
        for suffix in (".weights.h5", ".h5", ".hdf5"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        candidate = base + ".json"
        if not os.path.exists(candidate):
            raise KerasFileError(f"{path}: holds weights only; pass the model's JSON config "
                                 f"(config=..., or --config), or put it at {candidate}")
        config = candidate
    text = str(config)
    if not text.lstrip().startswith("{"):
        try:
            with open(text) as f:
                text = f.read()
        except OSError as error:
            raise KerasFileError(f"cannot read the model config {config}: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise KerasFileError(f"the model config is not valid JSON: {error}") from None


def convert_keras(path, *, config=None) -> Model:
    """Read a .keras, .h5 or .weights.h5 file (with config) into a Model."""
    from . import read_head

    path = os.fspath(path)
    try:
        magic = read_head(path)
    except ValueError as error:
        raise KerasFileError(str(error)) from None
    try:
        if magic.startswith(b"PK"):
            return _convert_keras_archive(path)
        if magic.startswith(b"\x89HDF"):
            return _convert_h5(path, config)
    except KerasFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError,
            zipfile.BadZipFile, json.JSONDecodeError) as error:  # h5py: RuntimeError too
        raise KerasFileError(f"{path}: corrupt or unreadable Keras file "
                             f"({type(error).__name__}: {error})") from None
    raise KerasFileError(f"{path}: not a Keras file (neither a .keras zip nor HDF5)")


def _convert_keras_archive(path) -> Model:
    h5py = _h5py()
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        for needed in ("config.json", "model.weights.h5"):
            if needed not in names:
                raise KerasFileError(f"{path}: a zip without {needed}: not a Keras 3 .keras file")
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
        weights_bytes = archive.read("model.weights.h5")
    version = str(metadata.get("keras_version", "3"))
    source = {"framework": "keras", "version": version, "format": ".keras",
              "file": os.path.basename(path)}
    with h5py.File(io.BytesIO(weights_bytes), "r") as root:
        _, layers, _ = _normalise_layers(config, path)
        weights = Keras3Weights(root, path, layers)
        return model_from_config(config, weights, _major(version), path, source)


def _convert_h5(path, config) -> Model:
    h5py = _h5py()
    with h5py.File(path, "r") as root:
        version = _text(root.attrs.get("keras_version", ""))
        if "model_config" in root.attrs:  # legacy full model, by Keras 2 or Keras 3
            model_config = json.loads(_text(root.attrs["model_config"]))
            if "model_weights" not in root:
                raise KerasFileError(f"{path}: has a model config but no model_weights group")
            weights = LegacyWeights(root["model_weights"], path)
            fmt = ".h5"
        else:  # weights only
            model_config = _load_config(config, path)
            style = _major_from_config(model_config)
            version = version or str(model_config.get("keras_version", "")) or (
                f"{style} (from the config's style)" if style else "")
            if "layer_names" in root.attrs or "layer_names0" in root.attrs:
                weights = LegacyWeights(root, path)
                weights.match_layers(_normalise_layers(model_config, path)[1])
                version = version or "2"
                fmt = ".h5 weights"
            elif "layers" in root or any(key.startswith("layers\\") for key in root):
                _, layers, _ = _normalise_layers(model_config, path)
                weights = Keras3Weights(root, path, layers)
                version = version or "3"
                fmt = ".weights.h5"
            else:
                raise KerasFileError(f"{path}: HDF5, but neither a Keras model nor Keras weights")
        source = {"framework": "keras", "version": version or "unknown", "format": fmt,
                  "file": os.path.basename(path)}
        return model_from_config(model_config, weights, _major(version or "2"), path, source)
