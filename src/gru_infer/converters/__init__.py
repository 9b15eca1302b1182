"""Converters: checkpoint files in, ModelSpec out, without the frameworks.

convert_to_spec(src) picks the reader from the file's contents (not its
name): a Keras 3 .keras archive or HDF5 (.h5, .weights.h5) goes to the Keras
reader, a TF SavedModel folder or TF checkpoint (.index + data shards) to the
TF reader (tf_savedmodel.py, tf_bundle.py), a torch.save file (zip or legacy
pickle) to the PyTorch reader, a torch.export.save archive (.pt2) to the
torch.export reader, a safetensors file to the weight-file reader (a gru_infer
model) or, for a PyTorch state dict saved with safetensors, to the PyTorch
reader.  ONNX files (protobuf has no magic number) are known by their .onnx
suffix and go to the ONNX reader.  Converters
import the spec layer only, never the runtime.
"""

from __future__ import annotations

import os
import zipfile

from ..errors import FormatError
from ._files import read_head

_NOT_CHECKPOINTS = {
    ".pb": "a TensorFlow graph (.pb), not a SavedModel folder: pass the folder that holds "
           "saved_model.pb and variables/, or save the Keras model as .keras or .h5",
    ".weights.json": "the index of sharded Keras weights: gru_infer reads one .weights.h5 "
                     "file; save without max_shard_size",
}
SNIFF_BYTES = 512


class NotACheckpointError(FormatError):
    """A path that is no checkpoint gru_infer reads, with what it is instead."""


def _refuse_text(path, head: bytes):
    """A clear error for files that are text, not a checkpoint: Git LFS
    pointers, web pages saved by mistake, configs and other text."""
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        raise NotACheckpointError(f"{path}: a Git LFS pointer, not the model: run `git lfs pull` "
                                  "in the repository (or download the file itself)")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")) or b"<html" in text:
        raise NotACheckpointError(f"{path}: an HTML page, not a checkpoint (a web page saved by "
                                  "mistake? download the raw file)")
    if not head or b"\0" in head:
        return
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end
            return
    if any(b < 32 and b not in (9, 10, 13) for b in head):
        return
    if text.startswith((b"{", b"[")):
        raise NotACheckpointError(f"{path}: a JSON text file, not a checkpoint (a model config? "
                                  "pass it as config= together with the weights file)")
    raise NotACheckpointError(f"{path}: a text file, not a checkpoint")


def detect_format(path) -> str:
    """'keras', 'torch', 'torch_export', 'onnx', 'safetensors', 'tf_savedmodel' or
    'tf_checkpoint', from the file's contents (names only where a format has no
    magic number: ONNX by its .onnx suffix, TensorFlow's files by their layout)."""
    from .tf_bundle import FOOTER_BYTES, TABLE_MAGIC
    from .tf_savedmodel import checkpoint_prefix, savedmodel_dir

    path = os.fspath(path)
    if savedmodel_dir(path) is not None:
        return "tf_savedmodel"
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "config.json")):
            raise NotACheckpointError(f"{path}: an unzipped Keras model folder; gru_infer reads "
                                      "the zipped .keras file (model.save('model.keras'))")
        if checkpoint_prefix(path) is not None:
            return "tf_checkpoint"
        indexes = sorted(n for n in os.listdir(path) if n.endswith(".index"))
        if indexes:
            raise NotACheckpointError(f"{path}: holds {len(indexes)} TF checkpoints "
                                      f"({', '.join(indexes[:5])}) and no 'checkpoint' file "
                                      "naming the latest: pass one of them")
        raise NotACheckpointError(f"{path}: a folder, not a checkpoint file (nor a SavedModel "
                                  "folder or a folder with a TF checkpoint)")
    prefix = checkpoint_prefix(path)
    if prefix is not None:
        index = prefix + ".index"
        try:
            with open(index, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() >= FOOTER_BYTES:
                    f.seek(-8, os.SEEK_END)
                    if int.from_bytes(f.read(8), "little") == TABLE_MAGIC:
                        return "tf_checkpoint"
        except OSError:
            if os.path.basename(path) == "checkpoint" or not path.endswith(".index"):
                raise NotACheckpointError(f"{path}: names the TF checkpoint {prefix}, but {index} "
                                          "is missing") from None
        if path.endswith(".index"):
            _refuse_text(path, read_head(path, SNIFF_BYTES))
            raise NotACheckpointError(f"{path}: named .index, but not a TensorFlow checkpoint "
                                      "index (no table magic number at its end; truncated?)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    for suffix, reason in _NOT_CHECKPOINTS.items():
        if path.endswith(suffix):
            raise NotACheckpointError(f"{path}: {reason}")
    head = read_head(path, SNIFF_BYTES)
    magic = head[:9]
    if path.endswith(".onnx") and not magic.startswith((b"PK", b"\x89HDF")):
        _refuse_text(path, head)  # a Git LFS pointer or a web page named .onnx
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
            raise NotACheckpointError(f"{path}: a damaged zip file ({error})") from None
        if "config.json" in names:
            return "keras"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if any(n.endswith("archive_format") or "/models/" in n for n in names):
            return "torch_export"
        raise NotACheckpointError(f"{path}: a zip file that is neither a Keras .keras archive nor "
                                  "a torch.save checkpoint")
    _refuse_text(path, head)
    # anything else may be a legacy torch.save stream (any pickle protocol);
    # the PyTorch reader checks its magic number and says so if it is not
    return "torch"


def convert_to_spec(src, *, config=None, **torch_options):
    """The ModelSpec of a Keras or PyTorch checkpoint, or of a gru_infer weight file.

    config: the model's JSON config (model.to_json()) for Keras weights-only
    files and TF checkpoints (a path, JSON text or a dict; by default the
    .json beside the file); for a SavedModel it replaces the recorded
    architecture.  torch_options go to the PyTorch reader (see
    converters.torch.convert_torch); they also apply to a PyTorch state dict
    saved as safetensors.
    """
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(f"convert takes a file path (str or os.PathLike), got "
                        f"{type(src).__name__}")
    kind = detect_format(src)
    if kind in ("tf_savedmodel", "tf_checkpoint"):
        if torch_options:
            raise TypeError(f"options {sorted(torch_options)} apply to PyTorch files only")
        from .tf_savedmodel import convert_checkpoint, convert_savedmodel

        if kind == "tf_savedmodel":
            return convert_savedmodel(src, config=config)
        return convert_checkpoint(src, config=config)
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
