"""The weight file: one safetensors file holds a whole model.

safetensors is the ML ecosystem's safe, memory-mappable tensor container: an
8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then raw little-endian data.  Nothing in it can run
code.  The model config (layers, sizes, activations, variants, source) is
JSON in the header's __metadata__.  Reader and writer are a few lines of
NumPy, so the file needs no extra package.
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

from .layers import MODEL_LAYERS
from .model import INPUT, Model, Node

FORMAT_NAME = "gru_infer"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 100 << 20

_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1",
           "I8": "i1", "BOOL": "?"}
_CODES = {np.dtype(v).newbyteorder("<").str: k for k, v in _DTYPES.items()}


class WeightFileError(ValueError):
    """A weight file that is truncated, malformed, or does not fit its config."""


# -- safetensors container ------------------------------------------------------


def write_safetensors(path, tensors: dict, metadata: dict) -> None:
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        code = _CODES.get(little.dtype.str)
        if code is None:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} cannot be stored")
        data = little.tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-aligned
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path) -> tuple:
    """(tensors by name, metadata) after checking every byte range."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightFileError(f"{path}: truncated: {size} bytes, not even a header length")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise WeightFileError(f"{path}: header length {header_len} does not fit in a "
                                      f"file of {size} bytes (truncated or not safetensors)")
            try:
                header = json.loads(f.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
                raise WeightFileError(f"{path}: header is not valid JSON ({error})") from None
    except OSError as error:
        raise WeightFileError(f"{path}: cannot read: {error.strerror or error}") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: header must be a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict):
        raise WeightFileError(f"{path}: __metadata__ must be a JSON object")
    data_start, data_size = 8 + header_len, size - 8 - header_len
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_size,)) \
        if data_size > 0 else np.zeros(0, np.uint8)
    tensors = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise WeightFileError(f"{path}: tensor {name!r} has a malformed entry {info!r}") from None
        count = math.prod(shape)  # Python ints: no overflow
        if min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != count * dtype.itemsize:
            raise WeightFileError(f"{path}: tensor {name!r}: byte range [{begin}, {end}) does not "
                                  f"match shape {shape} of {dtype}")
        if end > data_size:
            raise WeightFileError(f"{path}: truncated: tensor {name!r} needs bytes up to {end}, "
                                  f"the file holds {data_size} data bytes")
        tensors[name] = np.array(data[begin:end].view(dtype).reshape(shape))
    del data
    return tensors, metadata


# -- models --------------------------------------------------------------------


def save_model(model: Model, path) -> None:
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "input": {"name": model.input_name, "shape": list(model.input_shape),
                  "dtype": model.input_dtype.name},
        "layers": [{"name": n.layer.name, "kind": n.layer.kind,
                    "inputs": [list(i) for i in n.inputs], "config": n.layer.config(),
                    "mask_input": list(n.mask_input) if n.mask_input else None}
                   for n in model.nodes],
        "outputs": [list(o) for o in model.outputs],
        "time_major": model.time_major,
        "source": model.source,
    }
    tensors = {f"{n.layer.name}/{key}": value
               for n in model.nodes for key, value in n.layer.tensors().items()
               if value is not None}
    write_safetensors(path, tensors, {"format": FORMAT_NAME,
                                      "format_version": str(FORMAT_VERSION),
                                      "config": json.dumps(config)})


def _refuse_checkpoints(path):
    """load() reads gru_infer's own files; say so when given a checkpoint."""
    from .converters import detect_format, read_head

    try:
        kind = detect_format(path)
    except ValueError as error:  # a folder, an LFS pointer, an HTML page, ...
        if os.path.exists(path):
            raise WeightFileError(str(error)) from None
        return  # the reader says it is missing
    what = {"keras": "a Keras file", "tf_savedmodel": "a TensorFlow SavedModel",
            "tf_checkpoint": "a TensorFlow checkpoint"}.get(kind)
    if kind == "torch" and read_head(path, 2)[:1] in (b"\x80", b"P"):  # pickle or zip
        what = "a PyTorch checkpoint (torch.save)"
    if what:
        raise WeightFileError(f"{path}: {what}, not a gru_infer model file: use "
                              "gru_infer.convert() to read it (gru-infer convert writes a model "
                              "file once)")


def load(path) -> Model:
    """Read a model written by Model.save / gru-infer convert."""
    _refuse_checkpoints(os.fspath(path))
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise WeightFileError(f"{path}: a safetensors file, but not a gru_infer model "
                              "(no gru_infer config in its metadata)")
    try:
        config = json.loads(metadata["config"])
        version = int(config["format_version"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise WeightFileError(f"{path}: the model config in the metadata is malformed") from None
    if version > FORMAT_VERSION:
        raise WeightFileError(f"{path}: written in gru_infer format version {version}; this "
                              f"gru_infer reads up to version {FORMAT_VERSION}: upgrade gru_infer")
    try:
        nodes = []
        for entry in config["layers"]:
            name, kind = entry["name"], entry["kind"]
            if kind not in MODEL_LAYERS:
                raise WeightFileError(f"{path}: layer {name!r} has unknown kind {kind!r}")
            prefix = f"{name}/"
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                layer = MODEL_LAYERS[kind].from_saved(name, entry["config"], own)
            except (ValueError, TypeError, KeyError) as error:
                raise WeightFileError(f"{path}: layer {name!r} ({kind}) does not fit its "
                                      f"tensors: {error}") from None
            mask_input = entry.get("mask_input")
            nodes.append(Node(layer, [tuple(i) for i in entry["inputs"]],
                              tuple(mask_input) if mask_input else None))
        return Model(nodes, [tuple(o) for o in config["outputs"]],
                     input_shape=tuple(config["input"]["shape"]),
                     input_dtype=config["input"]["dtype"], source=config.get("source"),
                     input_name=config["input"].get("name", INPUT),
                     time_major=bool(config.get("time_major", False)))
    except WeightFileError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise WeightFileError(f"{path}: the model config is malformed: {error}") from None
