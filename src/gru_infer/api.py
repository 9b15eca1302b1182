"""The entry points that join the converters and the runtime: convert, load,
from_torch.  (Converters make ModelSpecs; the runtime runs them; only this
module knows both.)"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from .converters import convert_to_spec, detect_format
from .converters._files import read_head
from .errors import FormatError, InputTypeError
from .runtime.model import Model
from .spec import file as spec_file

PathLike = Union[str, "os.PathLike[str]"]


def _check_path(value, what: str) -> None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InputTypeError(f"{what} takes a file path (str or os.PathLike), got "
                        f"{type(value).__name__}: to read a checkpoint held in memory, write "
                        "it to a file first (tempfile.NamedTemporaryFile)")
    if not isinstance(value, (str, os.PathLike)):
        raise InputTypeError(f"{what} takes a file path (str or os.PathLike), got "
                        f"{type(value).__name__}")


def _with_precision(model: Model, precision: Optional[str]) -> Model:
    return model if precision is None else model.with_precision(precision)


def convert(src: PathLike, *, config: Union[PathLike, Dict[str, Any], None] = None,
            precision: Optional[str] = None, **options: Any) -> Model:
    """A Model from a checkpoint: Keras (.keras, .h5, .weights.h5 + config; a
    TF SavedModel folder; a TF checkpoint + config),
    PyTorch (.pt state dict, checkpoint or whole module; a state dict saved as
    safetensors), or a gru_infer weight file.  config: the JSON config of a
    Keras weights-only file or TF checkpoint (a path, JSON text or a dict; by
    default the .json beside it).  precision: "bfloat16" or "int8" to store GRU and
    Dense weights reduced (Model.with_precision; "native" for full precision; None:
    as the file says).  options: what a PyTorch state dict cannot say (see
    gru_infer.converters.torch.convert_state_dict)."""
    _check_path(src, "convert")
    return _with_precision(Model(convert_to_spec(src, config=config, **options)), precision)


def load(path: PathLike, *, precision: Optional[str] = None) -> Model:
    """A Model from a gru_infer weight file (written by Model.save or
    gru-infer convert).  precision: as for convert (None: the file's own)."""
    _check_path(path, "load")
    kind = detect_format(path)  # FileNotFoundError, folders, and what the file really is
    what = {"keras": "a Keras file", "tf_savedmodel": "a TensorFlow SavedModel",
            "tf_checkpoint": "a TensorFlow checkpoint", "onnx": "an ONNX model",
            "torch_export": "a torch.export archive"}.get(kind)
    if kind == "torch" and read_head(path, 2)[:1] in (b"\x80", b"P"):  # a pickle or a zip
        what = "a PyTorch checkpoint (torch.save)"
    if what:
        raise FormatError(f"{os.fspath(path)}: {what}, not a gru_infer weight file: use "
                          "gru_infer.convert() to read it")
    if kind != "safetensors":
        raise FormatError(f"{os.fspath(path)}: not a gru_infer weight file: it does not start "
                          "like a safetensors file (truncated, or another format; "
                          "gru_infer.convert() reads Keras and PyTorch checkpoints)")
    return _with_precision(Model(spec_file.load(path)), precision)


def from_torch(module: Any, example_input: Any = None, **options: Any) -> Model:
    """A Model from a live torch.nn.Module, without saving it first.  With
    example_input (a tensor, or a tuple of forward()'s arguments) torch.export
    traces forward(), so what it computes is known, not guessed; without it
    (or when export fails) the module's structure is read, with a
    GruInferWarning showing the forward assumed (forward=[...] states it)."""
    from .converters.torch import from_torch as spec_from_torch

    return Model(spec_from_torch(module, example_input, **options))
