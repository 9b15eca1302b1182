"""Keras layers -> layer specs, one Keras class at a time.

KERAS_LAYERS maps each supported Keras class name to a function
(builder, layer config dict, position, constants) -> a spec layer (or None
for InputLayer).  Weights come from the builder's weights provider, which
knows where the file keeps them (keras_weights.py).
"""

from __future__ import annotations

import numpy as np

from ..spec import activations
from ..spec.layers import (
    Activation,
    Concatenate,
    Dense,
    Embedding,
    GRUCell,
    Identity,
    Masking,
    Merge,
    NotEqual,
    Recurrent,
    ReduceAny,
)
from .keras_weights import KerasFileError, LegacyWeights

IDENTITY_CLASSES = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                    "AlphaDropout", "ActivityRegularization")
MERGE_CLASSES = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply",
                 "Average": "average", "Maximum": "maximum", "Minimum": "minimum"}
_EXTRA_WEIGHTS_HINT = " (quantized or LoRA-enabled layers are not supported: convert the float model)"


def activation_name(value, where: str) -> str:
    """The name of an activation as Keras serialises it: a string, a
    function reference, or an activation layer object (ReLU, Softmax, ...)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        cls = value.get("class_name")
        if cls in ("ReLU", "Softmax", "Activation") and isinstance(inner, dict):
            if cls == "Activation":
                return activation_name(inner.get("activation"), where)
            if cls == "Softmax" and inner.get("axis", -1) in (-1, [-1]):
                return "softmax"
            if cls == "ReLU" and not inner.get("negative_slope") and not inner.get("threshold") \
                    and inner.get("max_value") in (None, 6, 6.0):
                return "relu" if inner.get("max_value") is None else "relu6"
            raise KerasFileError(f"{where}: activation {cls} with {inner} is not supported")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str) and cls in (None, "function"):
            return inner["name"]
        if isinstance(cls, str):  # ELU(alpha=...), LeakyReLU, PReLU: parameters we do not carry
            raise KerasFileError(f"{where}: activation layer object {cls} is not supported; "
                                 "use a named activation or an Activation layer")
    raise KerasFileError(f"{where}: cannot read activation {value!r}")


def per_row_axis(axis: int, where: str) -> int:
    """A Keras axis (counting the batch) as a per-row axis (not counting it)."""
    if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
        raise KerasFileError(f"{where}: axis {axis!r} is not supported (the batch axis, or "
                             "not one axis)")
    return axis - 1 if axis > 0 else axis


class Builder:
    """Builds the spec layer of each Keras layer of one file."""

    def __init__(self, path, weights, keras_major: int):
        self.path = path
        self.weights = weights
        self.hard_sigmoid = "keras2" if keras_major < 3 else "keras3"

    def activation(self, value, where: str, *, gate: bool = False) -> str:
        try:
            return activations.check(activation_name(value, where), where, gate=gate,
                                     hard_sigmoid=self.hard_sigmoid)
        except ValueError as error:
            raise KerasFileError(str(error)) from None

    def arrays(self, layer: dict, position: int, subpath: str = "") -> list:
        if isinstance(self.weights, LegacyWeights):
            return self.weights.arrays(layer["name"], layer["class_name"], position)
        group = self.weights.group(layer["name"], layer["class_name"], position)
        return self.weights.vars_at(group, subpath)

    def gru_cell(self, config: dict, arrays: list, where: str) -> GRUCell:
        if config.get("time_major"):
            raise KerasFileError(f"{where}: time_major=True is not supported")
        use_bias = config.get("use_bias", True)
        if len(arrays) != (3 if use_bias else 2):
            raise KerasFileError(f"{where}: expected {'3' if use_bias else '2'} GRU weights "
                                 f"(kernel, recurrent_kernel{', bias' if use_bias else ''}), "
                                 f"found {len(arrays)}{_EXTRA_WEIGHTS_HINT if arrays else ''}")
        kernel, recurrent = arrays[0], arrays[1]
        units = int(config["units"])
        if kernel.ndim != 2 or kernel.shape[1] != 3 * units or recurrent.shape != (units, 3 * units):
            raise KerasFileError(f"{where}: GRU({units}) weights have shapes {kernel.shape}, "
                                 f"{recurrent.shape}; expected (input, {3 * units}), "
                                 f"({units}, {3 * units})")
        reset_after = config.get("reset_after")
        B = None
        if use_bias:
            bias = arrays[2]
            if reset_after is None:
                reset_after = bias.ndim == 2  # pre-2.3 configs lack the key; the bias shape tells
            if reset_after and bias.shape == (2, 3 * units):
                B = np.concatenate([bias[0], bias[1]])
            elif not reset_after and bias.shape == (3 * units,):
                B = np.concatenate([bias, np.zeros_like(bias)])
            else:
                raise KerasFileError(f"{where}: GRU bias has shape {bias.shape}, which does not "
                                     f"match reset_after={reset_after}")
        acts = (self.activation(config.get("recurrent_activation", "sigmoid"), where, gate=True),
                self.activation(config.get("activation", "tanh"), where, gate=True))
        return GRUCell(kernel.T, recurrent.T, B, linear_before_reset=bool(
            True if reset_after is None else reset_after), activations=acts)

    def dense(self, name: str, config: dict, arrays: list, where: str) -> Dense:
        use_bias = config.get("use_bias", True)
        if len(arrays) != (2 if use_bias else 1):
            raise KerasFileError(f"{where}: expected {'kernel and bias' if use_bias else 'kernel'}"
                                 f", found {len(arrays)} weights{_EXTRA_WEIGHTS_HINT}")
        return Dense(name, arrays[0], arrays[1] if use_bias else None,
                     self.activation(config.get("activation", "linear"), where))

    def layer(self, layer: dict, position: int, constants=()):
        """The spec layer for one Keras layer (None for InputLayer)."""
        where = f"{self.path}: layer #{position} {layer['name']!r} ({layer['class_name']})"
        make = KERAS_LAYERS.get(layer["class_name"])
        if make is None:
            hint = " (its code is not in the file; gru_infer never runs code from a file)" \
                if layer["class_name"] == "Lambda" else ""
            raise KerasFileError(f"{where} is not supported by gru_infer{hint}; supported "
                                 f"layers: {', '.join(sorted(KERAS_LAYERS))}")
        try:
            return make(self, layer, position, constants, where)
        except KerasFileError:
            raise
        except (ValueError, TypeError, KeyError) as error:  # a layer refusing its weights or options
            raise KerasFileError(f"{where}: {type(error).__name__}: {error}") from None

    def bidirectional(self, layer: dict, position: int, where: str) -> Recurrent:
        config = layer["config"]
        forward_config = config["layer"]
        backward_config = config.get("backward_layer") or forward_config
        for sub in (forward_config, backward_config):
            if sub["class_name"] not in ("GRU", "GRUV2"):
                raise KerasFileError(f"{where}: Bidirectional({sub['class_name']}) is not "
                                     "supported; only Bidirectional(GRU)")
        fc, bc = forward_config["config"], backward_config["config"]
        backward_goes_back = bc.get("go_backwards", True) if "backward_layer" in config \
            else not fc.get("go_backwards", False)
        if fc.get("go_backwards", False) or not backward_goes_back:
            raise KerasFileError(f"{where}: a Bidirectional over a go_backwards=True GRU (its "
                                 "forward half runs backwards) is not supported")
        if isinstance(self.weights, LegacyWeights):
            forward_arrays = self.weights.arrays(layer["name"], "Bidirectional", position,
                                                 "forward")
            backward_arrays = self.weights.arrays(layer["name"], "Bidirectional", position,
                                                  "backward")
            if not forward_arrays:  # names without forward_/backward_: by position
                arrays = self.arrays(layer, position)
                n_forward = 3 if fc.get("use_bias", True) else 2
                forward_arrays, backward_arrays = arrays[:n_forward], arrays[n_forward:]
        else:
            group = self.weights.group(layer["name"], "Bidirectional", position)
            forward_arrays = self.weights.vars_at(group, "forward_layer/cell")
            backward_arrays = self.weights.vars_at(group, "backward_layer/cell")
        cells = (self.gru_cell(fc, forward_arrays, where + " forward"),
                 self.gru_cell(bc, backward_arrays, where + " backward"))
        return_sequences = fc.get("return_sequences", False)
        # Keras sets zero_output_for_mask = return_sequences on both sublayers.
        return Recurrent(layer["name"], cells, return_sequences=return_sequences,
                         merge_mode=config.get("merge_mode", "concat"),
                         zero_masked_outputs=return_sequences,
                         return_state=bool(fc.get("return_state", False)))


# -- one function per Keras class ------------------------------------------------------


def _gru(b: Builder, layer, position, constants, where):
    config = layer["config"]
    cell = b.gru_cell(config, b.arrays(layer, position, "cell"), where)
    return Recurrent(layer["name"], (cell,), return_sequences=config.get("return_sequences", False),
                     go_backwards=config.get("go_backwards", False),
                     zero_masked_outputs=config.get("zero_output_for_mask", False),
                     return_state=bool(config.get("return_state", False)))


def _time_distributed(b: Builder, layer, position, constants, where):
    inner = layer["config"]["layer"]
    if inner["class_name"] != "Dense":
        raise KerasFileError(f"{where}: TimeDistributed({inner['class_name']}) is not "
                             "supported; only TimeDistributed(Dense)")
    return b.dense(layer["name"], inner["config"], b.arrays(layer, position, "layer"), where)


def _embedding(b: Builder, layer, position, constants, where):
    arrays = b.arrays(layer, position)
    if len(arrays) != 1:
        raise KerasFileError(f"{where}: expected one embeddings table, found "
                             f"{len(arrays)}{_EXTRA_WEIGHTS_HINT}")
    return Embedding(layer["name"], arrays[0], layer["config"].get("mask_zero", False))


def _relu(b: Builder, layer, position, constants, where):
    config = layer["config"]
    plain = not config.get("negative_slope") and not config.get("threshold")
    if plain and config.get("max_value") in (None, 6, 6.0):
        return Activation(layer["name"], "relu" if config.get("max_value") is None else "relu6")
    raise KerasFileError(f"{where}: ReLU with negative_slope/threshold/max_value "
                         f"{config.get('negative_slope')}/{config.get('threshold')}/"
                         f"{config.get('max_value')} is not supported")


def _softmax(b: Builder, layer, position, constants, where):
    if layer["config"].get("axis", -1) not in (-1, [-1]):
        raise KerasFileError(f"{where}: Softmax over axis {layer['config'].get('axis')} is not "
                             "supported; only the last axis")
    return Activation(layer["name"], "softmax")


def _concatenate(b: Builder, layer, position, constants, where):
    return Concatenate(layer["name"], per_row_axis(layer["config"].get("axis", -1), where))


def _merge(b: Builder, layer, position, constants, where):
    return Merge(layer["name"], MERGE_CLASSES[layer["class_name"]])


KERAS_LAYERS = {
    "InputLayer": lambda b, layer, position, constants, where: None,
    "GRU": _gru,
    "GRUV2": _gru,
    "Bidirectional": lambda b, layer, position, constants, where: b.bidirectional(
        layer, position, where),
    "Dense": lambda b, layer, position, constants, where: b.dense(
        layer["name"], layer["config"], b.arrays(layer, position), where),
    "TimeDistributed": _time_distributed,
    "Embedding": _embedding,
    "Masking": lambda b, layer, position, constants, where: Masking(
        layer["name"], layer["config"].get("mask_value", 0.0)),
    "Activation": lambda b, layer, position, constants, where: Activation(
        layer["name"], b.activation(layer["config"]["activation"], where)),
    "ReLU": _relu,
    "Softmax": _softmax,
    "NotEqual": lambda b, layer, position, constants, where: NotEqual(
        layer["name"], constants[0] if constants else layer["config"].get("y", 0)),
    "Any": lambda b, layer, position, constants, where: ReduceAny(
        layer["name"], per_row_axis(layer["config"].get("axis", -1), where),
        layer["config"].get("keepdims", False)),
    "Concatenate": _concatenate,
    **{cls: _merge for cls in MERGE_CLASSES},
    **{cls: (lambda b, layer, position, constants, where: Identity(layer["name"],
                                                                   layer["class_name"]))
       for cls in IDENTITY_CLASSES},
}
