"""Keras checkpoints -> ModelSpec, with h5py only (no TensorFlow/Keras).

Reads Keras 3 ``.keras`` archives (config.json + metadata.json +
model.weights.h5), legacy full-model ``.h5`` files written by tf.keras 2 or by
Keras 3, and weights-only files (Keras 3 ``.weights.h5``, Keras 2
``save_weights('x.h5')``) together with the model's JSON config.  Where each
layer's weights sit: keras_weights.py; the config's graph: keras_graph.py;
each Keras class: keras_layers.py.
"""

from __future__ import annotations

import io
import os
import zipfile

from ..errors import FormatError
from . import _limits
from ._files import read_head
from .keras_graph import major, major_from_config, model_from_config, normalise_layers
from .keras_weights import Keras3Weights, KerasFileError, LegacyWeights, has_windows_paths, text

__all__ = ["KerasFileError", "convert_keras"]


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras files needs h5py: pip install h5py "
                          "(or pip install 'gru_infer[keras]')") from None
    return h5py


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
                                 f"(config=...), or put it at {candidate}")
        config = candidate
    text = str(config)
    if not text.lstrip().startswith("{"):
        try:
            with open(text, "rb") as f:
                # read(n) sets n bytes aside first: ask for no more than the file holds
                size = os.fstat(f.fileno()).st_size
                text = f.read(min(size, _limits.MAX_JSON_BYTES) + 1)  # load_json refuses more
        except OSError as error:
            raise KerasFileError(f"cannot read the model config {config}: {error}") from error
    try:
        return _limits.load_json(text, f"the model config {str(config)[:200]}")
    except FormatError as error:
        raise KerasFileError(str(error)) from error.__cause__


def convert_keras(path, *, config=None):
    """Read a .keras, .h5 or .weights.h5 file (with config) into a ModelSpec."""
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
    except FormatError as error:
        raise KerasFileError(str(error)) from error.__cause__
    except MemoryError as error:
        raise KerasFileError(f"{path}: reading it ran out of memory: the file is corrupt or "
                             "hostile") from error
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError,
            OverflowError, RecursionError, NotImplementedError, zipfile.BadZipFile) as error:
        # h5py raises most of these (RuntimeError, OverflowError, KeyError) on damaged files
        raise KerasFileError(f"{path}: corrupt or unreadable Keras file "
                             f"({type(error).__name__}: {error})") from error
    raise KerasFileError(f"{path}: not a Keras file (neither a .keras zip nor HDF5)")


def _convert_keras_archive(path):
    h5py = _h5py()
    with _limits.open_zip(path) as archive:
        names = archive.namelist()
        for needed in ("config.json", "model.weights.h5"):
            if needed not in names:
                raise KerasFileError(f"{path}: a zip without {needed}: not a Keras 3 .keras file")
        config = _limits.load_json(
            _limits.read_zip_member(archive, "config.json", path, limit=_limits.MAX_JSON_BYTES),
            f"{path}: config.json")
        metadata = _limits.load_json(
            _limits.read_zip_member(archive, "metadata.json", path, limit=_limits.MAX_JSON_BYTES),
            f"{path}: metadata.json") if "metadata.json" in names else {}
        weights_bytes = _limits.read_zip_member(archive, "model.weights.h5", path)
    if not isinstance(metadata, dict):
        raise KerasFileError(f"{path}: metadata.json must be a JSON object")
    version = str(metadata.get("keras_version", "3"))
    source = {"framework": "keras", "version": version, "format": ".keras",
              "file": os.path.basename(path)}
    with h5py.File(io.BytesIO(weights_bytes), "r") as root:
        _, layers, _ = normalise_layers(config, path)
        weights = Keras3Weights(root, path, layers, _limits.ArrayBudget(len(weights_bytes), path))
        return model_from_config(config, weights, major(version), path, source)


def _convert_h5(path, config):
    h5py = _h5py()
    with h5py.File(path, "r") as root:
        version = text(root.attrs.get("keras_version", ""))
        budget = _limits.ArrayBudget(os.path.getsize(path), path)
        full_model = "model_config" in root.attrs  # legacy full model, by Keras 2 or Keras 3
        if full_model:
            model_config = _limits.load_json(text(root.attrs["model_config"]),
                                             f"{path}: the model_config attribute")
        else:  # weights only
            model_config = _load_config(config, path)
        if not isinstance(model_config, dict):
            raise KerasFileError(f"{path}: the model config must be a JSON object, got "
                                 f"{type(model_config).__name__}")
        if full_model:
            if "model_weights" not in root:
                raise KerasFileError(f"{path}: has a model config but no model_weights group")
            weights = LegacyWeights(root["model_weights"], path, budget)
            fmt = ".h5"
        else:
            style = major_from_config(model_config)
            version = version or str(model_config.get("keras_version", "")) or (
                f"{style} (from the config's style)" if style else "")
            if "layer_names" in root.attrs or "layer_names0" in root.attrs:
                weights = LegacyWeights(root, path, budget)
                weights.match_layers(normalise_layers(model_config, path)[1])
                version = version or "2"
                fmt = ".h5 weights"
            elif "layers" in root or has_windows_paths(root):
                _, layers, _ = normalise_layers(model_config, path)
                weights = Keras3Weights(root, path, layers, budget)
                version = version or "3"
                fmt = ".weights.h5"
            else:
                raise KerasFileError(f"{path}: HDF5, but neither a Keras model nor Keras weights")
        source = {"framework": "keras", "version": version or "unknown", "format": fmt,
                  "file": os.path.basename(path)}
        return model_from_config(model_config, weights, major(version or "2"), path, source)
