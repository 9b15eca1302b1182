"""Keras layers -> layer specs, one Keras class at a time.

KERAS_LAYERS maps each supported Keras class name to a function
(builder, layer config dict, position, constants) -> a spec layer (or None
for InputLayer).  Weights come from the builder's weights provider, which
knows where the file keeps them (keras_weights.py).
"""

from __future__ import annotations

import numpy as np

from ..spec import activations
from ..spec.extra_layers import (
    BatchNormalization,
    Conv1D,
    Flatten,
    GlobalPooling1D,
    LayerNormalization,
    Permute,
    Pooling1D,
    RepeatVector,
    Reshape,
)
from ..spec.layers import (
    Activation,
    Concatenate,
    Dense,
    Embedding,
    ExpandDims,
    FillLike,
    GRUCell,
    Identity,
    Logical,
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
        self.mask_semantics = "keras2" if keras_major < 3 else "keras3"

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
        if use_bias and arrays[2].shape == (6 * units,):  # written by CuDNNGRU
            if reset_after is False:
                raise KerasFileError(f"{where}: CuDNNGRU weights (bias of shape (6*units,)) "
                                     "are not compatible with GRU(reset_after=False)")
            kernel, recurrent, bias = _from_cudnn(kernel, recurrent, arrays[2])
            arrays = [kernel, recurrent, bias]
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
        # Keras 3 writes tensor operations of functional graphs (mask arithmetic) as op
        # nodes; one of them shares its class name with a layer (Concatenate).
        is_op = ".ops." in str(layer.get("module") or "") or (
            layer["class_name"] in KERAS_OPS and layer["class_name"] not in KERAS_LAYERS)
        make = (KERAS_OPS if is_op else KERAS_LAYERS).get(layer["class_name"])
        if make is None:
            hint = " (its code is not in the file; gru_infer never runs code from a file)" \
                if layer["class_name"] == "Lambda" else ""
            known = KERAS_OPS if is_op else KERAS_LAYERS
            raise KerasFileError(f"{where} is not supported by gru_infer{hint}; supported "
                                 f"{'ops' if is_op else 'layers'}: {', '.join(sorted(known))}")
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
            if sub["class_name"] not in ("GRU", "GRUV2", "CuDNNGRU"):
                raise KerasFileError(f"{where}: Bidirectional({sub['class_name']}) is not "
                                     "supported; only Bidirectional(GRU)")
        fc, bc = _gru_config(forward_config), _gru_config(backward_config)
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


def _gru_config(layer: dict) -> dict:
    """A GRU layer's config; CuDNNGRU (Keras 2's GPU-only layer) as the GRU it
    computes: reset_after, sigmoid gate, tanh candidate, with biases."""
    config = layer["config"]
    if layer["class_name"] == "CuDNNGRU":
        config = dict(config, reset_after=True, recurrent_activation="sigmoid",
                      activation="tanh", use_bias=True)
    return config


def _from_cudnn(kernel, recurrent, bias) -> tuple:
    """GRU(reset_after=True) weights from CuDNNGRU ones, as Keras 2 converts
    them on load (saving.legacy.hdf5_format._convert_rnn_weights): per gate
    (z, r, h), the input kernel block holds cuDNN's (units, input) matrix
    read in the other memory order, the recurrent block is transposed; the
    (6u,) bias is [input bias | recurrent bias]."""
    kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, 3)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent, 3)])
    return kernel, recurrent, bias.reshape(2, -1)


def _gru(b: Builder, layer, position, constants, where):
    config = _gru_config(layer)
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
    return Concatenate(layer["name"], per_row_axis(layer["config"].get("axis", -1), where),
                       b.mask_semantics)


def _merge(b: Builder, layer, position, constants, where):
    return Merge(layer["name"], MERGE_CLASSES[layer["class_name"]], b.mask_semantics)


def _one(value, where: str, what: str) -> int:
    """A Keras size given as an int or a one-element list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise KerasFileError(f"{where}: {what} {value} is not one number")
        value = value[0]
    return int(value)


def _channels_last(config: dict, where: str) -> None:
    if config.get("data_format", "channels_last") not in (None, "channels_last"):
        raise KerasFileError(f"{where}: data_format {config['data_format']!r} is not supported; "
                             "only channels_last")


def _last_axis(config: dict, where: str) -> None:
    """Normalisation over the last axis only (Keras 2 writes it as a resolved
    index list such as [2], Keras 3 as -1 or [-1])."""
    axis = config.get("axis", -1)
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if len(axes) != 1 or not isinstance(axes[0], int) or axes[0] == 0:
        raise KerasFileError(f"{where}: normalisation over axis {axis} is not supported; only "
                             "over the last axis")


def _conv1d(b: Builder, layer, position, constants, where):
    config = layer["config"]
    _channels_last(config, where)
    arrays = b.arrays(layer, position)
    use_bias = config.get("use_bias", True)
    if len(arrays) != (2 if use_bias else 1):
        raise KerasFileError(f"{where}: expected {'kernel and bias' if use_bias else 'kernel'}, "
                             f"found {len(arrays)} weights{_EXTRA_WEIGHTS_HINT}")
    return Conv1D(layer["name"], arrays[0], arrays[1] if use_bias else None,
                  strides=_one(config.get("strides", 1), where, "strides"),
                  padding=config.get("padding", "valid"),
                  dilation=_one(config.get("dilation_rate", 1), where, "dilation_rate"),
                  groups=int(config.get("groups", 1)),
                  activation=b.activation(config.get("activation", "linear"), where))


def _pooling(b: Builder, layer, position, constants, where):
    config = layer["config"]
    _channels_last(config, where)
    size = _one(config.get("pool_size", 2), where, "pool_size")
    strides = config.get("strides")
    return Pooling1D(layer["name"], "max" if layer["class_name"].startswith("Max") else "average",
                     size, size if strides is None else _one(strides, where, "strides"),
                     config.get("padding", "valid"))


def _global_pooling(b: Builder, layer, position, constants, where):
    config = layer["config"]
    _channels_last(config, where)
    maximum = layer["class_name"].startswith("GlobalMax")
    # GlobalMaxPooling1D takes the max over every step, masked or not (both Keras versions)
    return GlobalPooling1D(layer["name"], "max" if maximum else "average", mask_aware=not maximum,
                           keepdims=bool(config.get("keepdims", False)))


def _batch_normalization(b: Builder, layer, position, constants, where):
    config = layer["config"]
    _last_axis(config, where)
    arrays = list(b.arrays(layer, position))
    center, scale = config.get("center", True), config.get("scale", True)
    if len(arrays) != 2 + center + scale:
        raise KerasFileError(f"{where}: expected {2 + center + scale} weights, found {len(arrays)}")
    gamma = arrays.pop(0) if scale else None
    beta = arrays.pop(0) if center else None
    return BatchNormalization(layer["name"], arrays[0], arrays[1], gamma, beta,
                              float(config.get("epsilon", 1e-3)))


def _layer_normalization(b: Builder, layer, position, constants, where):
    config = layer["config"]
    _last_axis(config, where)
    arrays = list(b.arrays(layer, position))
    rms = bool(config.get("rms_scaling", False))
    center, scale = config.get("center", True) and not rms, config.get("scale", True)
    if len(arrays) != center + scale:
        raise KerasFileError(f"{where}: expected {center + scale} weights, found {len(arrays)}")
    gamma = arrays.pop(0) if scale else None
    beta = arrays.pop(0) if center else None
    return LayerNormalization(layer["name"], gamma, beta, float(config.get("epsilon", 1e-3)),
                              mode="rms_scaling" if rms else "standard")


def _rms_normalization(b: Builder, layer, position, constants, where):
    config = layer["config"]
    _last_axis(config, where)
    arrays = b.arrays(layer, position)
    if len(arrays) != 1:
        raise KerasFileError(f"{where}: expected one scale, found {len(arrays)} weights")
    return LayerNormalization(layer["name"], arrays[0], None, float(config.get("epsilon", 1e-6)),
                              mode="rms")


KERAS_LAYERS = {
    "InputLayer": lambda b, layer, position, constants, where: None,
    "GRU": _gru,
    "GRUV2": _gru,
    "CuDNNGRU": _gru,
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
    "Concatenate": _concatenate,
    **{cls: _merge for cls in MERGE_CLASSES},
    "Conv1D": _conv1d,
    "MaxPooling1D": _pooling,
    "AveragePooling1D": _pooling,
    "GlobalAveragePooling1D": _global_pooling,
    "GlobalMaxPooling1D": _global_pooling,
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _layer_normalization,
    "RMSNormalization": _rms_normalization,
    "Flatten": lambda b, layer, position, constants, where: (
        _channels_last(layer["config"], where), Flatten(layer["name"]))[1],
    "Reshape": lambda b, layer, position, constants, where: Reshape(
        layer["name"], tuple(layer["config"]["target_shape"])),
    "Permute": lambda b, layer, position, constants, where: Permute(
        layer["name"], tuple(layer["config"]["dims"])),
    "RepeatVector": lambda b, layer, position, constants, where: RepeatVector(
        layer["name"], int(layer["config"]["n"])),
    **{cls: (lambda b, layer, position, constants, where: Identity(layer["name"],
                                                                   layer["class_name"]))
       for cls in IDENTITY_CLASSES},
}

# Keras 3 op nodes (module keras.src.ops.*): the tensor operations Keras 3
# writes for masks in functional graphs.
KERAS_OPS = {
    "NotEqual": lambda b, layer, position, constants, where: NotEqual(
        layer["name"], constants[0] if constants else layer["config"].get("y", 0)),
    "Any": lambda b, layer, position, constants, where: ReduceAny(
        layer["name"], per_row_axis(layer["config"].get("axis", -1), where),
        layer["config"].get("keepdims", False)),
    "ExpandDims": lambda b, layer, position, constants, where: ExpandDims(
        layer["name"], per_row_axis(layer["config"].get("axis", -1), where)),
    "ZerosLike": lambda b, layer, position, constants, where: FillLike(
        layer["name"], 0.0, layer["config"].get("dtype") or "bool"),
    "OnesLike": lambda b, layer, position, constants, where: FillLike(
        layer["name"], 1.0, layer["config"].get("dtype") or "bool"),
    "LogicalOr": lambda b, layer, position, constants, where: Logical(layer["name"], "or"),
    "LogicalAnd": lambda b, layer, position, constants, where: Logical(layer["name"], "and"),
    "Concatenate": lambda b, layer, position, constants, where: Concatenate(
        layer["name"], per_row_axis(layer["config"].get("axis", -1), where)),
}
