"""Converters: checkpoint files in, ModelSpec out, without the frameworks.

convert_to_spec(src) picks the reader from the file's contents (not its
name): a Keras 3 .keras archive or HDF5 (.h5, .weights.h5) goes to the Keras
reader, a torch.save file (zip or legacy pickle) to the PyTorch reader, a
torch.export.save archive (.pt2) to the torch.export reader, a safetensors
file to the weight-file reader (a gru_infer model) or, for a PyTorch state
dict saved with safetensors, to the PyTorch reader.  ONNX files (protobuf has
no magic number) are known by their .onnx suffix and go to the ONNX reader.  Converters
import the spec layer only, never the runtime.
"""

from __future__ import annotations

import os
import zipfile

from ..errors import FormatError
from ._files import read_head

_NOT_CHECKPOINTS = {
    ".pb": "a TensorFlow SavedModel: save the Keras model as .keras or .h5 instead",
    ".index": "a TensorFlow checkpoint: save the Keras model as .keras or .h5 instead",
    ".weights.json": "the index of sharded Keras weights: gru_infer reads one .weights.h5 "
                     "file; save without max_shard_size",
}


def detect_format(path) -> str:
    """'keras', 'torch', 'torch_export', 'onnx' or 'safetensors', from the file's
    contents (not its name; ONNX by its .onnx suffix)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "config.json")):
            raise FormatError(f"{path}: an unzipped Keras model folder; gru_infer reads the "
                              "zipped .keras file (model.save('model.keras'))")
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            raise FormatError(f"{path}: {_NOT_CHECKPOINTS['.pb']}")
        raise FormatError(f"{path}: a folder, not a checkpoint file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    for suffix, reason in _NOT_CHECKPOINTS.items():
        if path.endswith(suffix):
            raise FormatError(f"{path}: {reason}")
    magic = read_head(path, 9)
    if path.endswith(".onnx") and not magic.startswith((b"PK", b"\x89HDF")):
        return "onnx"
    if len(magic) == 9 and magic[8:9] == b"{":  # safetensors: header length, then JSON
        return "safetensors"
    if magic.startswith(b"\x89HDF"):
        return "keras"
    if magic.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError) as error:
            raise FormatError(f"{path}: a damaged zip file ({error})") from None
        if "config.json" in names:
            return "keras"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if any(n.endswith("archive_format") or "/models/" in n for n in names):
            return "torch_export"
        raise FormatError(f"{path}: a zip file that is neither a Keras .keras archive nor a "
                          "torch.save checkpoint")
    # anything else may be a legacy torch.save stream (any pickle protocol);
    # the PyTorch reader checks its magic number and says so if it is not
    return "torch"


def convert_to_spec(src, *, config=None, **torch_options):
    """The ModelSpec of a Keras or PyTorch checkpoint, or of a gru_infer weight file.

    config: the model's JSON config for Keras weights-only files (a path, JSON
    text or a dict; by default the .json beside the file).  torch_options go
    to the PyTorch reader (see converters.torch.convert_torch); they also
    apply to a PyTorch state dict saved as safetensors.
    """
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(f"convert takes a file path (str or os.PathLike), got "
                        f"{type(src).__name__}")
    kind = detect_format(src)
    if kind == "safetensors":
        from ..spec import file

        metadata = file.read_metadata(src)
        if metadata.get("format") == file.FORMAT_NAME:
            return file.load(src)
        from .torch import convert_safetensors_state_dict

        return convert_safetensors_state_dict(src, **torch_options)
    if kind in ("torch_export", "onnx"):
        unknown = sorted(set(torch_options) - ({"model_name"} if kind == "torch_export" else set()))
        if unknown or config is not None:
            raise TypeError(f"options {unknown or ['config']} do not apply to "
                            f"{'torch.export archives' if kind == 'torch_export' else 'ONNX files'}"
                            " (the graph says everything)")
        if kind == "onnx":
            from .onnx import convert_onnx

            return convert_onnx(src)
        from .torch_export import convert_torch_export

        return convert_torch_export(src, **torch_options)
    if kind == "keras":
        if torch_options:
            raise TypeError(f"options {sorted(torch_options)} apply to PyTorch files only")
        from .keras import convert_keras

        return convert_keras(src, config=config)
    from .torch import convert_torch

    return convert_torch(src, **torch_options)
