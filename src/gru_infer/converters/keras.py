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
import json
import os
import zipfile

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
    except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError,
            zipfile.BadZipFile, json.JSONDecodeError) as error:  # h5py: RuntimeError too
        raise KerasFileError(f"{path}: corrupt or unreadable Keras file "
                             f"({type(error).__name__}: {error})") from None
    raise KerasFileError(f"{path}: not a Keras file (neither a .keras zip nor HDF5)")


def _convert_keras_archive(path):
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
        _, layers, _ = normalise_layers(config, path)
        weights = Keras3Weights(root, path, layers)
        return model_from_config(config, weights, major(version), path, source)


def _convert_h5(path, config):
    h5py = _h5py()
    with h5py.File(path, "r") as root:
        version = text(root.attrs.get("keras_version", ""))
        if "model_config" in root.attrs:  # legacy full model, by Keras 2 or Keras 3
            model_config = json.loads(text(root.attrs["model_config"]))
            if "model_weights" not in root:
                raise KerasFileError(f"{path}: has a model config but no model_weights group")
            weights = LegacyWeights(root["model_weights"], path)
            fmt = ".h5"
        else:  # weights only
            model_config = _load_config(config, path)
            style = major_from_config(model_config)
            version = version or str(model_config.get("keras_version", "")) or (
                f"{style} (from the config's style)" if style else "")
            if "layer_names" in root.attrs or "layer_names0" in root.attrs:
                weights = LegacyWeights(root, path)
                weights.match_layers(normalise_layers(model_config, path)[1])
                version = version or "2"
                fmt = ".h5 weights"
            elif "layers" in root or has_windows_paths(root):
                _, layers, _ = normalise_layers(model_config, path)
                weights = Keras3Weights(root, path, layers)
                version = version or "3"
                fmt = ".weights.h5"
            else:
                raise KerasFileError(f"{path}: HDF5, but neither a Keras model nor Keras weights")
        source = {"framework": "keras", "version": version or "unknown", "format": fmt,
                  "file": os.path.basename(path)}
        return model_from_config(model_config, weights, major(version or "2"), path, source)
