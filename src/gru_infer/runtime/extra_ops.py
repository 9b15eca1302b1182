"""Ops for the layers around GRUs (spec/extra_layers.py): NumPy over the
program's fixed buffers, writing with out= where NumPy can.  They sit outside
the per-step hot path of streams (most need whole sequences), so NumPy's
speed is theirs; reshapes are views and cost nothing.
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
    Select,
)
from . import _core
from .values import Value


def numpy_activation(name: str, buffer: np.ndarray):
    """An op applying a table activation in place with its NumPy function."""
    function = activations.ACTIVATIONS[name].function

    def run():
        np.copyto(buffer, function(buffer), casting="unsafe")
    return _core.PyOp(run)


def _op(b, run):
    b.add(_core.PyOp(run))


def build_flatten(layer: Flatten, inputs, b):
    x = inputs[0].buffer
    return [Value(x.reshape(x.shape[0], -1))]  # a view: buffers are C-contiguous


def build_reshape(layer: Reshape, inputs, b):
    x = inputs[0].buffer
    return [Value(x.reshape((x.shape[0],) + tuple(layer.target_shape)))]


def build_permute(layer: Permute, inputs, b):
    x = inputs[0].buffer
    view = x.transpose((0,) + layer.dims)
    out = np.empty(view.shape, x.dtype)
    _op(b, lambda: np.copyto(out, view))
    return [Value(out)]


def build_repeat_vector(layer: RepeatVector, inputs, b):
    x = inputs[0].buffer
    out = np.empty((x.shape[0], layer.n, x.shape[1]), x.dtype)
    _op(b, lambda: np.copyto(out, x[:, None, :]))
    return [Value(out)]


def build_global_pooling(layer: GlobalPooling1D, inputs, b):
    x, mask = inputs[0].buffer, inputs[0].mask
    out = np.empty((x.shape[0],) + ((1,) if layer.keepdims else ()) + (x.shape[2],), x.dtype)
    target = out.reshape(x.shape[0], x.shape[2])
    if mask is not None and layer.mask_aware:
        weights = mask.view(np.uint8)

        def run():
            m = weights[..., None].astype(x.dtype)
            if layer.mode == "average":  # Keras: sum(x * mask) / sum(mask); 0/0 stays NaN
                with np.errstate(invalid="ignore", divide="ignore"):
                    np.divide((x * m).sum(axis=1), m.sum(axis=1), out=target)
            else:
                np.copyto(target, np.where(m > 0, x, -np.inf).max(axis=1))
    else:
        reduce = np.mean if layer.mode == "average" else np.max

        def run():
            if x.shape[1]:
                reduce(x, axis=1, out=target)
            else:
                target[...] = np.nan if layer.mode == "average" else -np.inf
    _op(b, run)
    return [Value(out)]


def build_pooling(layer: Pooling1D, inputs, b):
    x = inputs[0].buffer
    steps = x.shape[1]
    length = layer.output_length(steps)
    out = np.empty((x.shape[0], length, x.shape[2]), x.dtype)
    # "same": windows may run past the end; the pad is left out (max ignores
    # it, the average counts only real steps), as Keras does.
    total = max(0, (length - 1) * layer.strides + layer.pool_size - steps) if layer.padding == "same" else 0
    start = -(total // 2)
    windows = [(max(0, start + i * layer.strides), min(steps, start + i * layer.strides + layer.pool_size))
               for i in range(length)]
    reduce = np.max if layer.mode == "max" else np.mean

    def run():
        for i, (lo, hi) in enumerate(windows):
            reduce(x[:, lo:hi], axis=1, out=out[:, i])
    _op(b, run)
    return [Value(out)]


def build_batch_normalization(layer: BatchNormalization, inputs, b):
    x = inputs[0]
    scale, shift = (a.astype(b.dtype) for a in layer.scale_and_shift())
    out = np.empty_like(x.buffer)

    def run():
        np.multiply(x.buffer, scale, out=out)
        np.add(out, shift, out=out)
    _op(b, run)
    return [Value(out, x.mask)]


def build_layer_normalization(layer: LayerNormalization, inputs, b):
    x = inputs[0]
    out = np.empty_like(x.buffer)
    gamma = None if layer.gamma is None else layer.gamma.astype(b.dtype)
    beta = None if layer.beta is None else layer.beta.astype(b.dtype)

    def run():
        if layer.mode == "rms":
            np.divide(x.buffer, np.sqrt(np.mean(x.buffer * x.buffer, axis=-1, keepdims=True)
                                        + layer.epsilon), out=out)
        else:
            centred = x.buffer - x.buffer.mean(axis=-1, keepdims=True)
            variance = np.mean(centred * centred, axis=-1, keepdims=True)
            scaled = x.buffer if layer.mode == "rms_scaling" else centred
            np.divide(scaled, np.sqrt(variance + layer.epsilon), out=out)
        if gamma is not None:
            np.multiply(out, gamma, out=out)
        if beta is not None:
            np.add(out, beta, out=out)
    _op(b, run)
    return [Value(out, x.mask)]


def build_conv1d(layer: Conv1D, inputs, b):
    x = inputs[0].buffer
    batch, steps, _ = x.shape
    kernel = layer.kernel.astype(b.dtype)
    size, per_group, filters = kernel.shape
    groups, dilation, strides = layer.groups, layer.dilation, layer.strides
    left, right = layer.pads(steps)
    length = layer.output_length(steps)
    padded = np.zeros((batch, steps + left + right, x.shape[2]), x.dtype)
    out = np.empty((batch, length, filters), x.dtype)
    bias = None if layer.bias is None else layer.bias.astype(b.dtype)
    per_out = filters // groups
    # In a stream a causal convolution reads its earlier inputs from a kept
    # history (time, batch, channels: batch second, like GRU states).
    history = None
    if layer.step_refusal is None and left:
        history = b.state_buffer(layer, 0, (left, batch, x.shape[2]))

    def run():
        padded[:, left:left + steps] = x
        if history is not None:
            padded[:, :left] = history.transpose(1, 0, 2)
            history[...] = padded[:, steps:steps + left].transpose(1, 0, 2)
        out[...] = 0 if bias is None else bias
        for k in range(size if length else 0):  # one matmul per kernel tap: y += x[t*s + k*d] @ kernel[k]
            taps = padded[:, k * dilation: k * dilation + strides * (length - 1) + 1: strides]
            for g in range(groups):
                out[..., g * per_out:(g + 1) * per_out] += \
                    taps[..., g * per_group:(g + 1) * per_group] @ kernel[k, :, g * per_out:(g + 1) * per_out]
    _op(b, run)
    code = activations.ACTIVATIONS[layer.activation]
    if layer.activation != "linear":
        if code.core:
            b.add(_core.ActivationOp(out, out, _core.activation_code(layer.activation)))
        else:
            b.add(numpy_activation(layer.activation, out))
    return [Value(out)]


def build_select(layer: Select, inputs, b):
    x = inputs[0].buffer
    view = np.take(x, layer.index, axis=layer.axis + 1 if layer.axis >= 0 else layer.axis)
    out = np.empty(view.shape, x.dtype)
    axis = layer.axis + 1 if layer.axis >= 0 else layer.axis
    index = layer.index
    _op(b, lambda: np.copyto(out, np.take(x, index, axis=axis)))
    return [Value(out)]


EXTRA_BUILDERS = {
    "flatten": build_flatten,
    "reshape": build_reshape,
    "permute": build_permute,
    "repeat_vector": build_repeat_vector,
    "global_pooling_1d": build_global_pooling,
    "pooling_1d": build_pooling,
    "batch_normalization": build_batch_normalization,
    "layer_normalization": build_layer_normalization,
    "conv1d": build_conv1d,
    "select": build_select,
}
