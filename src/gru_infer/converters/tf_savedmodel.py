"""Keras models saved as TensorFlow SavedModels or TF-format checkpoints,
read without TensorFlow.

Both keep their variables in a tensor bundle (tf_bundle.py) together with the
object graph that owns them (``_CHECKPOINTABLE_OBJECT_GRAPH``, a
``TrackableObjectGraph``): each Keras object is a node whose children are
named by how Keras tracks them.  A Sequential or functional model tracks its
layers as ``layer_with_weights-N`` (the N-th layer that has weights) and
``layer-N``; a GRU its ``cell``, a Bidirectional its ``forward_layer`` and
``backward_layer``, a TimeDistributed its ``layer``, and a layer its
variables by their names (``kernel``, ``recurrent_kernel``, ``bias``,
``embeddings``).  Checkpoint keys are only the first path to each variable
(``trainable_variables/0/...`` as often as ``layer_with_weights-0/cell/...``),
so weights are found by walking that structure, never by key.  Keras 3 models
under ``tf.train.Checkpoint`` (TensorFlow backend) track their layers as the
list ``_operations`` (of the model, or of the ``_functional`` inside a
Sequential), one entry per config layer, InputLayer included, and a few
variables with a leading underscore (``_kernel``, ``_embeddings``).

The architecture comes from ``keras_metadata.pb`` of a SavedModel (TF 2.5+),
from the root object's metadata inside ``saved_model.pb`` (TF 2.0 to 2.4), or,
for a checkpoint, which has none, from the ``config=`` a user passes (the
model's ``to_json()``).
"""

from __future__ import annotations

import json
import os
import re

from ..errors import GruInferError
from ._protobuf import ProtobufError, decode
from .keras import _load_config
from .keras_graph import major as _major
from .keras_graph import major_from_config as _major_from_config
from .keras_graph import model_from_config
from .keras_graph import normalise_layers as _normalise_layers
from .keras_match import has_weights
from .keras_weights import KerasFileError
from .tf_bundle import OBJECT_GRAPH_KEY, TensorBundle, TensorBundleError, refuse_lfs_pointer

_REFERENCE = {1: ("node_id", "int", False), 2: ("local_name", "string", False)}
_ATTRIBUTE = {1: ("name", "string", False), 2: ("full_name", "string", False),
              3: ("checkpoint_key", "string", False)}
TRACKABLE_OBJECT_GRAPH = {1: ("nodes", {1: ("children", _REFERENCE, True),
                                        2: ("attributes", _ATTRIBUTE, True)}, True)}
SAVED_METADATA = {1: ("nodes", {2: ("node_id", "int", False), 3: ("node_path", "string", False),
                                4: ("identifier", "string", False),
                                5: ("metadata", "string", False)}, True)}
# SavedModel.meta_graphs[].object_graph_def.nodes[].user_object (TF 2.0 - 2.4 keep
# the Keras metadata there)
_USER_OBJECT = {1: ("identifier", "string", False), 3: ("metadata", "string", False)}
SAVED_MODEL = {2: ("meta_graphs", {7: ("object_graph_def", {1: ("nodes", {
    4: ("user_object", _USER_OBJECT, False)}, True)}, False)}, True)}

# the canonical order of a layer's variables (the order the builder expects)
_VARIABLE_RANK = {"kernel": 0, "recurrent_kernel": 1, "bias": 2, "embeddings": 0}
_LAYER_CHILD = re.compile(r"layer(_with_weights)?-(\d+)$")
_NOT_MODELS = ("optimizer", "save_counter", "keras_api", "variables", "trainable_variables",
               "non_trainable_variables", "regularization_losses", "signatures")


class TFModelError(KerasFileError):
    """A SavedModel or TF checkpoint that gru_infer cannot read or map."""


# -- the object graph ----------------------------------------------------------------


class ObjectGraph:
    """Nodes of a TrackableObjectGraph: children by local name, variable keys."""

    def __init__(self, message: bytes, path):
        try:
            nodes = decode(message, TRACKABLE_OBJECT_GRAPH)["nodes"]
        except ProtobufError as error:
            raise TFModelError(f"{path}: the object graph is malformed ({error})") from None
        if not nodes:
            raise TFModelError(f"{path}: the object graph is empty")
        self.children, self.keys = [], []
        self._near_variables = None
        for number, node in enumerate(nodes):
            children = {}
            for ref in node["children"]:
                if not 0 <= ref["node_id"] < len(nodes):
                    raise TFModelError(f"{path}: object {number} has a child "
                                       f"{ref['local_name']!r} -> node {ref['node_id']}, outside "
                                       f"the graph's {len(nodes)} nodes")
                children.setdefault(ref["local_name"], ref["node_id"])
            self.children.append(children)
            keys = [a["checkpoint_key"] for a in node["attributes"]
                    if a["name"] == "VARIABLE_VALUE"]
            self.keys.append(keys[0] if keys else None)

    def child(self, node: int, name: str):
        return self.children[node].get(name)

    def variables(self, node: int) -> list:
        """[(name, checkpoint key)] of a node's own variables, canonical order first."""
        found = [(name, self.keys[child]) for name, child in self.children[node].items()
                 if self.keys[child] is not None]
        return sorted(found, key=lambda item: _VARIABLE_RANK.get(item[0].lstrip("_"), 3))

    def holds_variables(self, node: int) -> bool:
        """Whether a variable is at most 4 edges below node (optimizer and
        bookkeeping children aside)."""
        if self._near_variables is None:  # one search back from every variable: linear
            parents = [[] for _ in self.children]
            for parent, children in enumerate(self.children):
                for name, child in children.items():
                    if name not in _NOT_MODELS:
                        parents[child].append(parent)
            frontier = [n for n, key in enumerate(self.keys) if key is not None]
            near = set(frontier)
            for _ in range(4):
                frontier = [p for n in frontier for p in parents[n] if p not in near]
                near.update(frontier)
            self._near_variables = near
        return node in self._near_variables


def _has_layer_children(graph: ObjectGraph, node: int) -> bool:
    return any(_LAYER_CHILD.match(name) or name == "_operations"
               for name in graph.children[node])


class ObjectGraphWeights:
    """The weights provider for TF checkpoints and SavedModels: a config layer's
    weights are found by the object graph's structure, in the order Keras
    tracks layers (``layer_with_weights-N``, else ``layer-N``), or for a
    subclassed model's checkpoint by attribute name (= the config's layer name)."""

    def __init__(self, bundle: TensorBundle, graph: ObjectGraph, path, model_config: dict):
        self.bundle, self.graph, self.path = bundle, graph, path
        cls, layers, _ = _normalise_layers(model_config, path)
        self.model = self._find_model_node()
        children = graph.children[self.model]
        counted = [layer for layer in layers
                   if not (cls == "Sequential" and layer["class_name"] == "InputLayer")]
        weighted = [layer["name"] for layer in layers if has_weights(layer)]
        self.nodes = {}
        if "_operations" in children:  # Keras 3: one entry per config layer, in order
            self.mode = "_operations"
            operations = graph.children[children["_operations"]]
            for index, layer in enumerate(layers):
                self.nodes[layer["name"]] = operations.get(str(index))
        elif any(name.startswith("layer_with_weights-") for name in children):
            self.mode = "layer_with_weights-N"
            for index, name in enumerate(weighted):
                self.nodes[name] = children.get(f"layer_with_weights-{index}")
        elif any(_LAYER_CHILD.match(name) for name in children):
            self.mode = "layer-N"
            for index, layer in enumerate(counted):
                self.nodes[layer["name"]] = children.get(f"layer-{index}")
        else:
            self.mode = "name"
            for name in weighted:
                self.nodes[name] = children.get(name)
        self.used = set()

    def _find_model_node(self) -> int:
        """The model's node: the root (model.save_weights, SavedModel), or the
        object under it that tracks layers (tf.train.Checkpoint(model=...))."""
        graph = self.graph
        seen, frontier = {0}, [0]
        for _ in range(4):
            for node in frontier:
                if _has_layer_children(graph, node):
                    return node
            frontier = list(dict.fromkeys(c for node in frontier
                                          for n, c in graph.children[node].items()
                                          if n not in _NOT_MODELS and c not in seen))
            seen.update(frontier)
        model = graph.child(0, "model")  # tf.train.Checkpoint(model=a subclassed model)
        return model if model is not None else 0

    def _layer_children(self) -> list:
        """(name, node) of the model's children that are layers with variables,
        as this mode names them."""
        found = []
        children = self.graph.children[self.model]
        if self.mode == "_operations":
            children = {f"_operations/{name}": node for name, node in
                        self.graph.children[children["_operations"]].items()}
        for name, node in children.items():
            if name in _NOT_MODELS or node in (0, self.model):  # 'root': a reference back
                continue
            if self.mode == "layer_with_weights-N" and not name.startswith("layer_with_weights-"):
                continue
            if self.mode == "layer-N" and not _LAYER_CHILD.match(name):
                continue
            if self.graph.holds_variables(node):
                found.append((name, node))
        return found

    def _layer_listing(self) -> str:
        """What the checkpoint has, for messages."""
        return ", ".join(name for name, _ in self._layer_children()) or "none"

    def group(self, layer_name: str, class_name: str, position: int) -> int:
        node = self.nodes.get(layer_name)
        if node is None:
            expected = {"layer_with_weights-N": "a layer_with_weights-N object for it (the "
                        "config has more layers with weights than the checkpoint)",
                        "layer-N": "a layer-N object at its position",
                        "_operations": "an _operations entry at its position",
                        "name": f"an object named {layer_name!r}"}[self.mode]
            raise TFModelError(f"{self.path}: no weights for layer #{position} {layer_name!r} "
                               f"({class_name}): expected {expected}; the checkpoint has "
                               f"layers {self._layer_listing()}")
        self.used.add(node)
        return node

    def vars_at(self, node: int, subpath: str) -> list:
        for part in [p for p in subpath.split("/") if p]:
            child = self.graph.child(node, part)
            if child is None:
                if part == "cell":  # CuDNNGRU keeps its variables on the layer itself
                    continue
                return []
            node = child
        return [self._read(key) for _, key in self.graph.variables(node)]

    def _read(self, key: str):
        return self.bundle.array(key)

    def check_all_used(self):
        """Checkpoint layers with weights that no config layer took: an error."""
        left = [name for name, node in self._layer_children() if node not in self.used]
        if left:
            raise TFModelError(f"{self.path}: the checkpoint has weights for objects the config "
                               f"does not use: {', '.join(left)}; is the config that of this "
                               "model?")


# -- reading the files -----------------------------------------------------------------


def _decode_metadata_json(value):
    """Keras' SavedModel metadata JSON writes tuples and TensorShapes as
    {"class_name": "__tuple__" / "TensorShape", "items": [...]}: plain lists."""
    if isinstance(value, dict):
        if set(value) == {"class_name", "items"} and value["class_name"] in (
                "__tuple__", "TensorShape"):
            items = value["items"]
            return None if items is None else [_decode_metadata_json(v) for v in items]
        return {k: _decode_metadata_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_metadata_json(v) for v in value]
    return value


def _root_metadata(directory: str) -> tuple:
    """(metadata dict of the root Keras object, where it was found) or (None, reason)."""
    metadata_path = os.path.join(directory, "keras_metadata.pb")
    text = None
    if os.path.isfile(metadata_path):
        with open(metadata_path, "rb") as f:
            data = f.read()
        refuse_lfs_pointer(metadata_path, data)
        try:
            nodes = decode(data, SAVED_METADATA)["nodes"]
        except ProtobufError as error:
            raise TFModelError(f"{metadata_path}: malformed ({error})") from None
        root = [n for n in nodes if n["node_path"] == "root"]
        if not root:
            raise TFModelError(f"{metadata_path}: no metadata for the root object")
        text, where = root[0]["metadata"], metadata_path
    else:
        saved_model = os.path.join(directory, "saved_model.pb")
        if not os.path.isfile(saved_model):
            return None, ("it has no saved_model.pb (only saved_model.pbtxt?) and no "
                          "keras_metadata.pb")
        with open(saved_model, "rb") as f:
            data = f.read()
        refuse_lfs_pointer(saved_model, data)
        try:
            graphs = decode(data, SAVED_MODEL)["meta_graphs"]
        except ProtobufError as error:
            raise TFModelError(f"{saved_model}: malformed ({error})") from None
        nodes = graphs[0]["object_graph_def"].get("nodes", []) if graphs else []
        user = nodes[0]["user_object"] if nodes else {}
        if not user.get("identifier", "").startswith("_tf_keras") or not user.get("metadata"):
            return None, ("it was not written by Keras (no keras_metadata.pb, and the root "
                          "object in saved_model.pb is not a Keras model: tf.saved_model.save "
                          "or Keras 3 model.export())")
        text, where = user["metadata"], saved_model
    try:
        metadata = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise TFModelError(f"{where}: the Keras metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise TFModelError(f"{where}: the Keras metadata is not a JSON object")
    return _decode_metadata_json(metadata), where


def _open_bundle(prefix: str, what: str, path) -> tuple:
    """(bundle, object graph) of a checkpoint prefix."""
    bundle = TensorBundle(prefix, what)
    if OBJECT_GRAPH_KEY not in bundle.entries:
        raise TFModelError(f"{path}: the checkpoint has no object graph "
                           f"({OBJECT_GRAPH_KEY}): a TF1 name-based checkpoint (tf.train.Saver), "
                           "which does not say which layer owns which variable; save the Keras "
                           "model as .keras or .h5")
    strings = bundle.strings(OBJECT_GRAPH_KEY)
    if len(strings) != 1:
        raise TFModelError(f"{path}: the object graph entry holds {len(strings)} strings, not 1")
    return bundle, ObjectGraph(strings[0], path)


def _convert(bundle, graph, path, model_config, version: str, fmt: str):
    weights = ObjectGraphWeights(bundle, graph, path, model_config)
    source = {"framework": "keras", "version": version or "2", "format": fmt,
              "file": os.path.basename(os.path.normpath(path))}
    model = model_from_config(model_config, weights, _major(version or "2"), path, source)
    weights.check_all_used()
    return model


def _wrap_errors(function):
    """Every failure as a TFModelError naming the path (FileNotFoundError aside):
    a config that is JSON but not a model config fails inside the builder
    with KeyError, TypeError, ..."""
    def wrapped(path, *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except (TensorBundleError, ProtobufError) as error:
            raise TFModelError(str(error)) from None
        except (GruInferError, FileNotFoundError):  # they say what is wrong already
            raise
        except OSError as error:
            raise TFModelError(f"{path}: cannot read: {error.strerror or error}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                RecursionError) as error:
            raise TFModelError(f"{path}: the model config does not describe a Keras model "
                               f"gru_infer can build ({type(error).__name__}: {error})") from None
    wrapped.__name__, wrapped.__doc__ = function.__name__, function.__doc__
    return wrapped


@_wrap_errors
def convert_savedmodel(path, *, config=None):
    """A Keras model saved as a TF SavedModel directory (model.save("dir") in
    tf.keras 2.x); config= overrides the architecture it records."""
    directory = savedmodel_dir(path) or os.fspath(path)
    prefix = os.path.join(directory, "variables", "variables")
    if not os.path.isfile(prefix + ".index"):
        raise TFModelError(f"{directory}: a SavedModel without variables/variables.index "
                           "(a model without weights, or the folder was copied in part)")
    version = ""
    if config is not None:
        model_config = _load_config(config, directory)
    else:
        metadata, where = _root_metadata(directory)
        if metadata is None:
            raise TFModelError(f"{directory}: a TF SavedModel, but {where}; pass the Keras "
                               "model's JSON config (config=...) to map its variables")
        if "class_name" not in metadata or "config" not in metadata:
            raise TFModelError(f"{where}: the root object has no Keras model config")
        model_config = {"class_name": metadata["class_name"], "config": metadata["config"]}
        version = str(metadata.get("keras_version", ""))
        if model_config["class_name"] not in ("Sequential", "Functional", "Model"):
            raise TFModelError(f"{where}: the model is a subclassed Keras model "
                               f"({model_config['class_name']}), whose SavedModel has no layer "
                               "graph; build the same layers as a Sequential or functional "
                               "model and pass its to_json() as config=")
    bundle, graph = _open_bundle(prefix, "SavedModel's variables", directory)
    return _convert(bundle, graph, directory, model_config, version, "TF SavedModel")


@_wrap_errors
def convert_checkpoint(path, *, config=None):
    """A TF-format checkpoint (model.save_weights("ckpt"), tf.train.Checkpoint,
    ModelCheckpoint(save_weights_only=True)) with the model's JSON config."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise TFModelError(f"{path}: not a TF checkpoint (no .index file for it)")
    if not os.path.isfile(prefix + ".index"):
        raise TFModelError(f"{path}: names the checkpoint {prefix}, but {prefix}.index is "
                           "missing")
    bundle, graph = _open_bundle(prefix, "TF checkpoint", path)
    if config is None:
        candidate = prefix + ".json"
        if not os.path.exists(candidate):
            raise TFModelError(f"{prefix}: a TF checkpoint holds weights only; pass the Keras "
                               "model's JSON config (model.to_json()) as config=..., "
                               f"or put it at {candidate}")
        config = candidate
    model_config = _load_config(config, prefix)
    version = str(model_config.get("keras_version", "")) if isinstance(model_config, dict) else ""
    if not version:  # Keras 3's to_json() names no version
        style = _major_from_config(model_config)
        version = f"{style} (from the config's style)" if style else ""
    return _convert(bundle, graph, prefix, model_config, version, "TF checkpoint")


# -- telling them apart ------------------------------------------------------------------

_DATA_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', re.MULTILINE)


def savedmodel_dir(path):
    """The SavedModel directory that path is or names a file of, else None."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path if any(os.path.isfile(os.path.join(path, n)) for n in (
            "saved_model.pb", "saved_model.pbtxt")) else None
    base = os.path.basename(path)
    directory = os.path.dirname(path) or "."
    if base in ("saved_model.pb", "saved_model.pbtxt", "keras_metadata.pb", "fingerprint.pb"):
        return savedmodel_dir(directory)
    # its variables/variables.index or data shard
    if os.path.basename(directory) == "variables" and base.startswith("variables."):
        return savedmodel_dir(os.path.dirname(directory) or ".")
    return None


def _state_file_prefix(state_path: str):
    """The latest checkpoint named by a 'checkpoint' state file, or None."""
    try:
        with open(state_path, "rb") as f:
            text = f.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return None
    match = _STATE_LINE.search(text)
    if not match:
        return None
    name = match.group(1).encode("latin-1", "backslashreplace").decode("unicode_escape")
    folder = os.path.dirname(state_path)
    if not os.path.isabs(name):
        return os.path.join(folder, name)
    beside = os.path.join(folder, os.path.basename(name))  # an absolute path of the writer's
    return beside if not os.path.isfile(name + ".index") and os.path.isfile(
        beside + ".index") else name


def checkpoint_prefix(path):
    """The checkpoint prefix that path names (the prefix itself, its .index or
    data shard, a 'checkpoint' state file or a directory holding one), or None."""
    path = os.fspath(path)
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.isfile(state):
            return _state_file_prefix(state)
        indexes = [n for n in os.listdir(path) if n.endswith(".index")]
        return os.path.join(path, indexes[0][:-len(".index")]) if len(indexes) == 1 else None
    if path.endswith(".index"):
        return path[:-len(".index")]
    if _DATA_SHARD.search(path):
        return _DATA_SHARD.sub("", path)
    if not os.path.exists(path) and os.path.isfile(path + ".index"):
        return path
    if os.path.basename(path) == "checkpoint" and os.path.isfile(path):
        return _state_file_prefix(path)
    return None
