"""Converters that read framework checkpoints without the frameworks.

convert(src) picks the reader from the file's first bytes: a Keras 3 .keras
archive or HDF5 (.h5, .weights.h5) goes to the Keras reader, a torch.save
file (zip or legacy pickle) to the PyTorch reader.  Each ends in the
canonical form, a gru_infer Model.
"""

from __future__ import annotations

import os
import zipfile


def read_head(path, size: int = 8) -> bytes:
    """The first bytes of a file; a ValueError naming it when it can't be read."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as error:
        raise ValueError(f"{os.fspath(path)}: cannot read: {error.strerror or error}") from None


_NOT_CHECKPOINTS = {
    ".pb": "a TensorFlow SavedModel: save the Keras model as .keras or .h5 instead",
    ".index": "a TensorFlow checkpoint: save the Keras model as .keras or .h5 instead",
    ".weights.json": "the index of sharded Keras weights: gru_infer reads one .weights.h5 "
                     "file; save without max_shard_size",
    ".onnx": "an ONNX model: convert the Keras or PyTorch checkpoint instead",
}


def detect_format(path) -> str:
    """'keras', 'torch' or 'safetensors', from the file's contents (not its name)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "config.json")):
            raise ValueError(f"{path}: an unzipped Keras model folder; gru_infer reads the zipped "
                             ".keras file (model.save('model.keras'))")
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path}: {_NOT_CHECKPOINTS['.pb']}")
        raise ValueError(f"{path}: a folder, not a checkpoint file")
    for suffix, reason in _NOT_CHECKPOINTS.items():
        if path.endswith(suffix):
            raise ValueError(f"{path}: {reason}")
    magic = read_head(path, 9)
    if len(magic) == 9 and magic[8:9] == b"{":  # safetensors: header length, then JSON
        return "safetensors"
    if magic.startswith(b"\x89HDF"):
        return "keras"
    if magic.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise ValueError(f"{path}: a damaged zip file ({error})") from None
        if "config.json" in names:
            return "keras"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if any(n.endswith("archive_format") or "/models/" in n for n in names):
            raise ValueError(f"{path}: a torch.export archive (.pt2), not a torch.save "
                             "checkpoint; save model.state_dict() with torch.save")
        raise ValueError(f"{path}: a zip file that is neither a Keras .keras archive nor a "
                         "torch.save checkpoint")
    # anything else may be a legacy torch.save stream (any pickle protocol);
    # the PyTorch reader checks its magic number and says so if it is not
    return "torch"


def convert(src, *, config=None, **torch_options):
    """A gru_infer Model from a Keras or PyTorch checkpoint.

    config: the model's JSON config for Keras weights-only files (a path, JSON
    text or a dict; by default the .json beside the file).  torch_options go
    to the PyTorch reader (see gru_infer.converters.torch.convert_torch); they
    also apply to a PyTorch state dict saved as safetensors.  A gru_infer
    weight file is simply loaded.
    """
    kind = detect_format(src)
    if kind == "safetensors":
        from ..weights import FORMAT_NAME, load, read_safetensors

        tensors, metadata = read_safetensors(src)
        if metadata.get("format") == FORMAT_NAME:
            return load(src)
        from .torch import convert_safetensors_state_dict

        return convert_safetensors_state_dict(src, tensors, **torch_options)
    if kind == "keras":
        if torch_options:
            raise TypeError(f"options {sorted(torch_options)} apply to PyTorch files only")
        from .keras import convert_keras

        return convert_keras(src, config=config)
    from .torch import convert_torch

    return convert_torch(src, **torch_options)
