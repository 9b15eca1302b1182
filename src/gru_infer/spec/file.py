"""The weight file: one safetensors file holds a whole ModelSpec.

safetensors is the field's safe, memory-mappable tensor container (an 8-byte
header length, a JSON header naming each tensor's dtype, shape and byte range,
then raw data; nothing in it can run code), read and written through the
`safetensors` package.  The model's description is JSON in the header's
__metadata__ ("config"); each layer's tensors are stored as
"<layer name>/<tensor name>".  The package checks the container; this module
checks what it does not: that the config is a well-formed model and that the
tensors are exactly those the config needs, in the shapes it needs - before
reading any tensor data.

A model with reduced-precision weights (precision "bfloat16" or "int8") stores
its GRU and Dense weights reduced, so the file shrinks (2x, 4x): bfloat16 as
uint16 bit patterns; int8 as int8 plus "<tensor>.scale", float32, one scale
per output row (spec/precision.py).  The config's "tensor_encoding" names
each reduced tensor and its encoding; reading decodes them back to float32,
the exact values the kernels run (the model's canonical weights).  Such files
are format version 3; every other file is still written as version 2, which
older readers read.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from typing import Optional

import numpy as np

from ..errors import FormatError
from . import activations, precision
from .graph import INPUT, Input, ModelSpec, Node
from .kinds import LAYER_KINDS

FORMAT_NAME = "gru_infer"
FORMAT_VERSION = 3  # the newest this reads
PLAIN_VERSION = 2  # what files without reduced tensors are written as
ENCODINGS = precision.REDUCED  # tensor_encoding values
MAX_LAYERS = 10_000
MAX_CONFIG_BYTES = 64 << 20
MAX_JSON_DEPTH = 64
MAX_SHAPE_RANK = 8
MAX_DIMENSION = 1 << 31


def save(spec: ModelSpec, path) -> None:
    """Write spec to path atomically (a temporary file, then a rename)."""
    from safetensors.numpy import save_file

    tensors, encoding = stored_tensors(spec)
    config = describe(spec, encoding)
    metadata = {"format": FORMAT_NAME, "format_version": str(config["format_version"]),
                "config": json.dumps(config)}
    path = os.fspath(path)
    fd, tmp = temporary_file_beside(path, ".gru_infer-")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        publish(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def temporary_file_beside(path: str, prefix: str) -> tuple:
    """(fd, name) of a new hidden file in path's folder, to be written, then
    published over path."""
    return tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))


def publish(tmp: str, path: str) -> None:
    """Rename the written tmp over path, with the permissions a plain open() would have
    given it (mkstemp's and safetensors' are 0600: a model saved for a service that runs
    as another user would not be readable)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting
    and restoring it would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def stored_tensors(spec: ModelSpec) -> tuple:
    """({stored name: array}, {stored name: encoding} of the reduced ones)."""
    tensors, encoding = {}, {}
    reduce = spec.precision in precision.REDUCED
    for node in spec.nodes:
        for key, value in node.layer.tensors().items():
            name = f"{node.layer.name}/{key}"
            axis = precision.scale_axis(node.layer.kind, key) if reduce else None
            if axis is None:
                tensors[name] = np.ascontiguousarray(value)
            elif spec.precision == "bfloat16":
                tensors[name] = precision.bf16_bits(value)
            else:
                tensors[name], tensors[f"{name}.scale"] = precision.int8_quantise(value, axis)
            if axis is not None:
                encoding[name] = spec.precision
    return tensors, encoding


def describe(spec: ModelSpec, encoding: Optional[dict] = None) -> dict:
    """The JSON-able description of spec (its tensors apart); encoding: the
    reduced tensors stored (stored_tensors), which make it version 3."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION if encoding else PLAIN_VERSION,
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in spec.inputs],
        "layers": [{"name": n.layer.name, "kind": n.layer.kind,
                    "inputs": [list(i) for i in n.inputs],
                    "mask_input": list(n.mask_input) if n.mask_input else None,
                    "config": n.layer.config()} for n in spec.nodes],
        "outputs": [list(o) for o in spec.outputs],
        "time_major": spec.time_major,
        "precision": spec.precision,
        **({"tensor_encoding": dict(encoding)} if encoding else {}),
        "source": spec.source,
    }


def read_metadata(path) -> dict:
    """The header metadata of a safetensors file (no tensor data read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="np") as f:
            return dict(f.metadata() or {})
    except SafetensorError as error:
        raise FormatError(f"not a valid safetensors file ({error})") from error


def load(path) -> ModelSpec:
    """The ModelSpec in a gru_infer weight file; FormatError naming the file and
    what is wrong."""
    path = os.fspath(path)
    try:
        return _load(path)
    except FormatError as error:
        raise FormatError(f"{path}: {error}") from error.__cause__
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError,
            RecursionError) as error:
        # what _check_structure and the layers' own checks did not foresee
        raise FormatError(f"{path}: the model config is malformed "
                          f"({type(error).__name__}: {error})") from error


def _load(path) -> ModelSpec:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            metadata = dict(f.metadata() or {})
            config = _config_of(metadata)
            required, optional = _tensor_names(config)
            encoding = _encoding_of(config, required | optional)
            required |= {f"{name}.scale" for name, how in encoding.items() if how == "int8"}
            present = set(f.keys())
            missing, extra = sorted(required - present), sorted(present - required - optional)
            if missing or extra:
                raise FormatError(
                    "the tensors do not match the model config"
                    + (f"; missing: {missing[:8]}" if missing else "")
                    + (f"; not in the config: {extra[:8]}" if extra else ""))
            tensors = {name: f.get_tensor(name) for name in sorted(present)}
    except SafetensorError as error:
        raise FormatError(f"not a valid safetensors file ({error})") from error
    return from_description(config, _decoded(config, tensors, encoding))


def _encoding_of(config: dict, names: set) -> dict:
    """The config's tensor_encoding, checked: reduced tensors the config has,
    of layers whose kernels read them reduced."""
    encoding = config.get("tensor_encoding", {})
    if not isinstance(encoding, dict):
        raise FormatError("the model config's tensor_encoding must be an object")
    kinds = {entry["name"]: entry.get("kind") for entry in config["layers"]}
    for name, how in encoding.items():
        layer, _, key = str(name).partition("/")
        if how not in ENCODINGS:
            raise FormatError(f"tensor {name!r}: unknown encoding {how!r}; this gru_infer "
                              f"reads {list(ENCODINGS)}")
        if name not in names or precision.scale_axis(kinds.get(layer), key) is None:
            raise FormatError(f"tensor {name!r} is stored as {how}, but it is not a GRU or "
                              "Dense weight of the model config")
    return encoding


def _decoded(config: dict, tensors: dict, encoding: dict) -> dict:
    """tensors with the reduced ones back in float32 (dtypes and shapes checked)."""
    kinds = {entry["name"]: entry.get("kind") for entry in config["layers"]}
    out = dict(tensors)
    for name, how in encoding.items():
        layer, _, key = name.partition("/")
        stored = tensors[name]
        if how == "bfloat16":
            if stored.dtype != np.uint16:
                raise FormatError(f"tensor {name!r} is stored as bfloat16 and must be uint16 "
                                  f"bit patterns, got {stored.dtype}")
            out[name] = precision.from_bf16_bits(stored)
            continue
        scale = out.pop(f"{name}.scale")
        axis = precision.scale_axis(kinds[layer], key)
        want = stored.shape[:axis] + stored.shape[axis + 1:]
        if stored.dtype != np.int8 or stored.ndim != 2 or scale.dtype != np.float32 \
                or scale.shape != want:
            raise FormatError(f"tensor {name!r} is stored as int8: it must be a 2-D int8 array "
                              f"with float32 scales of shape {want}, got {stored.dtype} "
                              f"{stored.shape} and {scale.dtype} {scale.shape}")
        out[name] = precision.int8_dequantise(stored, scale, axis)
    return out


def _config_of(metadata: dict) -> dict:
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise FormatError("a safetensors file, but not a gru_infer model (no gru_infer "
                            "config in its metadata)")
    text = metadata["config"]
    if len(text) > MAX_CONFIG_BYTES:
        raise FormatError(f"the model config is {len(text)} bytes, over the limit of "
                            f"{MAX_CONFIG_BYTES}")
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise FormatError(f"the model config is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise FormatError("the model config must be a JSON object")
    if json_depth(config) > MAX_JSON_DEPTH:
        raise FormatError(f"the model config nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        version = int(config.get("format_version", metadata.get("format_version")))
    except (TypeError, ValueError, OverflowError):
        raise FormatError("the model config has no valid format_version") from None
    if version < 1:
        raise FormatError(f"the model config has format_version {version}; versions start at 1")
    if version > FORMAT_VERSION:
        raise FormatError(f"written in gru_infer format version {version}; this gru_infer "
                            f"reads up to version {FORMAT_VERSION}: upgrade gru_infer")
    layers = config.get("layers")
    if not isinstance(layers, list) or not all(isinstance(e, dict) for e in layers):
        raise FormatError("the model config's layers must be a list of objects")
    if len(layers) > MAX_LAYERS:
        raise FormatError(f"the model config has {len(layers)} layers, over the limit of "
                            f"{MAX_LAYERS}")
    names = [e.get("name") for e in layers]
    if not all(isinstance(n, str) and n for n in names):
        raise FormatError("every layer in the model config needs a name")
    if len(set(names)) != len(names):
        twice = sorted(n for n, count in collections.Counter(names).items() if count > 1)
        raise FormatError(f"layer names are used twice: {twice[:8]}")
    if version == 1:
        config = _upgrade_v1(config)
    _check_structure(config)
    return config


def _is_ref(value) -> bool:
    """A (source name, output index) reference as JSON: [str, int]."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool)
            and 0 <= value[1] < MAX_LAYERS)


def _check_structure(config: dict) -> None:
    """The JSON types of every part of a config, before anything is built from it."""
    inputs = config.get("inputs")
    if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_LAYERS:
        raise FormatError("the model config's inputs must be a non-empty list")
    for i in inputs:
        if not (isinstance(i, dict) and isinstance(i.get("name", INPUT), str)
                and isinstance(i.get("dtype"), str) and isinstance(i.get("shape"), list)
                and 1 <= len(i["shape"]) <= MAX_SHAPE_RANK
                and all(s is None or (isinstance(s, int) and not isinstance(s, bool)
                                      and 0 < s <= MAX_DIMENSION) for s in i["shape"])):
            raise FormatError(f"the model config has a malformed input: {str(i)[:200]}")
    for entry in config["layers"]:
        where = f"layer {entry['name']!r}"
        if not isinstance(entry.get("kind"), str) or not isinstance(entry.get("config"), dict):
            raise FormatError(f"{where}: needs a kind (a string) and a config (an object)")
        refs = entry.get("inputs")
        if not isinstance(refs, list) or len(refs) > MAX_LAYERS or not all(map(_is_ref, refs)):
            raise FormatError(f"{where}: its inputs must be a list of [source, index] pairs")
        mask = entry.get("mask_input")
        if mask is not None and not _is_ref(mask):
            raise FormatError(f"{where}: its mask_input must be a [source, index] pair or null")
    outputs = config.get("outputs")
    if not isinstance(outputs, list) or not outputs or not all(map(_is_ref, outputs)):
        raise FormatError("the model config's outputs must be a non-empty list of [source, index] "
                          "pairs")
    if not isinstance(config.get("time_major", False), bool):
        raise FormatError("the model config's time_major must be true or false")
    if not isinstance(config.get("precision", "native"), str):
        raise FormatError("the model config's precision must be a string")
    if not isinstance(config.get("source") or {}, dict):
        raise FormatError("the model config's source must be an object")


def json_depth(value, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """Nesting depth of a parsed JSON value, counted iteratively (stops past limit);
    the converters bound the JSON in checkpoints with it too."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [v for item in level if isinstance(item, (dict, list))
                 for v in (item.values() if isinstance(item, dict) else item)]
    return depth


def _tensor_names(config: dict) -> tuple:
    """(required, optional) tensor names of the config's layers, from each
    kind's declared fields."""
    required, optional = set(), set()
    for entry in config["layers"]:
        kind, layer_config = entry.get("kind"), entry.get("config")
        if kind not in LAYER_KINDS:
            raise FormatError(f"layer {entry['name']!r} has unknown kind {kind!r}")
        if not isinstance(layer_config, dict):
            raise FormatError(f"layer {entry['name']!r}: its config must be an object")
        try:
            need, may = LAYER_KINDS[kind].tensor_names(layer_config)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
            raise FormatError(f"layer {entry['name']!r}: malformed config "
                              f"({type(error).__name__}: {error})") from None
        required.update(f"{entry['name']}/{key}" for key in need)
        optional.update(f"{entry['name']}/{key}" for key in may)
    return required, optional


def _upgrade_v1(config: dict) -> dict:
    """Format version 1 (one input, hard_sigmoid beside the activation name,
    sizes repeated in configs) in version 2's terms."""
    config = dict(config)
    single = config.pop("input", None)
    if isinstance(single, dict):
        config["inputs"] = [single]
    layers = []
    for entry in config["layers"]:
        entry = dict(entry)
        layer_config = entry.get("config") or {}
        if not isinstance(layer_config, dict):
            raise FormatError(f"layer {entry['name']!r}: its config must be an object")
        layer_config = dict(layer_config)
        hard_sigmoid = layer_config.pop("hard_sigmoid", "keras3")
        if "activation" in layer_config and isinstance(layer_config["activation"], str):
            layer_config["activation"] = activations.resolve(layer_config["activation"],
                                                             hard_sigmoid)
        if entry.get("kind") == "dense":
            layer_config.pop("units", None)
            layer_config.pop("use_bias", None)
        if entry.get("kind") == "embedding":
            layer_config.pop("input_dim", None)
            layer_config.pop("output_dim", None)
        entry["config"] = layer_config
        layers.append(entry)
    config["layers"] = layers
    return config


def from_description(config: dict, tensors: dict) -> ModelSpec:
    """A ModelSpec from describe()'s JSON and the tensors by stored name."""
    try:
        inputs = tuple(Input(name=str(i.get("name", INPUT)), shape=tuple(i["shape"]),
                             dtype=str(i["dtype"])) for i in config["inputs"])
        nodes = []
        for entry in config["layers"]:
            name, kind = entry["name"], entry["kind"]
            prefix = f"{name}/"
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                layer = LAYER_KINDS[kind].from_config(name, entry["config"], own)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError,
                    OverflowError) as error:
                raise FormatError(f"layer {name!r} ({kind}) does not fit its config and "
                                    f"tensors: {error}") from None
            mask_input = entry.get("mask_input")
            nodes.append(Node(layer, tuple(tuple(i) for i in entry["inputs"]),
                              tuple(mask_input) if mask_input else None))
        return ModelSpec(inputs, tuple(nodes), tuple(tuple(o) for o in config["outputs"]),
                         time_major=bool(config.get("time_major", False)),
                         source=dict(config.get("source") or {}),
                         precision=str(config.get("precision", "native")))
    except FormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
        raise FormatError(f"the model config is malformed: {type(error).__name__}: "
                            f"{error}") from None
