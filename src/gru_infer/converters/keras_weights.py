"""Where a Keras file keeps each layer's weights.

Weights are found by the file's own structure, never by leaf names (optimizer
slots carry the same names and shapes): legacy files (Keras 2 ``.h5``, Keras 3
``model.save("x.h5")``, Keras 2 ``save_weights``) list each layer's weights in
the ``layer_names`` / ``weight_names`` attributes; Keras 3 files keep each
layer's variables under ``layers/<class>_<n>/.../vars/<i>`` (written on
Windows by tf.keras 2.13-2.15: one root group named ``layers\\gru\\cell``).
Weights-only legacy files whose layer names are not the config's are paired
with it by order, as Keras' load_weights does (keras_match.py).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConversionError, FormatError


class KerasFileError(FormatError, ConversionError):
    """A Keras file gru_infer cannot read or convert, with the file and the reason."""


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _string_list_attribute(group, name: str) -> list:
    """A list-of-names attribute; Keras splits long ones into name0, name1, ...
    (HDF5 caps an attribute at 64 KB)."""
    if name in group.attrs:
        return [text(n) for n in group.attrs[name]]
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [text(n) for n in group.attrs[f"{name}{chunk}"]]
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
        if layers is None and has_windows_paths(root):
            layers = _BackslashPaths(root).get("layers")
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
                by_attr[text(vars_group.attrs["name"])] = key
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


def has_windows_paths(root) -> bool:
    """Whether a weights file was written on Windows by tf.keras 2.13-2.15."""
    return any(key.startswith("layers\\") for key in root)


class _BackslashPaths:
    """The groups of a weights file written on Windows by tf.keras 2.13-2.15,
    whose saving code joined paths with os.path.join: one flat group named
    ``layers\\gru\\cell`` (holding ``vars``) instead of nested groups.  Read
    with \\ as the path separator, as the same tree of nested groups (the
    read-only part of h5py's Group interface that Keras3Weights uses)."""

    def __init__(self, root, path: str = "", tree: dict | None = None):
        if tree is None:  # path -> (child name -> path, the HDF5 object or None)
            tree = {"": ({}, root)}

            def add(name, obj):
                parts = name.replace("\\", "/").split("/")
                for depth in range(1, len(parts) + 1):
                    here = "/".join(parts[:depth])
                    if here not in tree:
                        tree[here] = ({}, None)
                        tree["/".join(parts[:depth - 1])][0][parts[depth - 1]] = here
                tree[here] = (tree[here][0], obj)

            root.visititems(add)
        self._tree, self._path, self._root = tree, path, root
        obj = tree[path][1]
        self.attrs = obj.attrs if obj is not None else {}

    def __iter__(self):
        return iter(self._tree[self._path][0])

    def __contains__(self, name) -> bool:
        return name in self._tree[self._path][0]

    def get(self, name, default=None):
        child = self._tree[self._path][0].get(name)
        if child is None:
            return default
        obj = self._tree[child][1]
        if obj is not None and not hasattr(obj, "keys"):  # a dataset
            return obj
        return _BackslashPaths(self._root, child, self._tree)

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
